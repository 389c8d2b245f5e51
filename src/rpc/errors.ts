/**
 * Every error a client can see, in one place: DESIGN.md's table of causes and
 * codes. The RPC layer (interceptors, edge checks, handlers) throws what these
 * functions return; {@link toConnectError} maps everything else at the edge:
 * the domain's errors (src/common/domain-error.ts) by their kind, the
 * broker's as UNAVAILABLE, anything else (a bug) as INTERNAL, so a client
 * never sees an internal message.
 */

import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { ResumeInfoSchema } from "../../gen/streamgate/v1/stream_service_pb.js";
import { BrokerError, RecordTooLargeError } from "../broker/errors.js";
import { DomainError, type DomainErrorKind, quote } from "../common/domain-error.js";
import { isWellFormed, toWellFormed } from "./utf8.js";

/** A malformed request: a missing or badly formed field of the RPC layer's own (a header, a limit). */
export function invalidArgument(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

/** A health check for a service this server does not know (as the health protocol says). */
export function unknownService(service: string): ConnectError {
  return new ConnectError(`unknown service ${quote(service)}`, Code.NotFound);
}

/** The server is draining after SIGTERM; the call may be retried elsewhere. */
export function shuttingDown(): ConnectError {
  return new ConnectError("server is shutting down; retry on another instance", Code.Unavailable);
}

/** The broker could not store or serve records; nothing was acknowledged. */
export function brokerUnavailable(): ConnectError {
  return new ConnectError("broker unavailable; nothing was stored, retry later", Code.Unavailable);
}

/** The client went away (reset its stream, closed its connection) before its call ended. */
export function clientCanceled(): ConnectError {
  return new ConnectError("the client canceled the call", Code.Canceled);
}

/**
 * Whether a call's `signal` was aborted because the client went away, asked
 * while the call is still running: connect aborts it then only for its
 * deadline (DEADLINE_EXCEEDED) or for the client's request (src/app/app.ts gives
 * connect no shutdownSignal; one would have to be told apart here), whatever the
 * client's HTTP/2 reset code (connect maps INTERNAL_ERROR to INTERNAL, so a
 * client could otherwise inflate the internal-error rate at will).
 */
export function abortedByClient(signal: AbortSignal): boolean {
  if (!signal.aborted) return false;
  const reason: unknown = signal.reason;
  return !(reason instanceof ConnectError && reason.code === Code.DeadlineExceeded);
}

/**
 * Maps anything thrown by a handler to the error the client sees: ConnectErrors
 * pass as they are, broker failures become UNAVAILABLE, and anything else is a
 * bug: INTERNAL with no internals in the message (the caller logs the cause).
 * With the call's `signal`, a call whose client went away is CANCELED,
 * whatever failed because it did.
 */
export function toConnectError(error: unknown, signal?: AbortSignal): ConnectError {
  if (signal !== undefined && abortedByClient(signal)) return clientCanceled();
  if (error instanceof ConnectError) {
    if (isWellFormed(error.rawMessage)) return error;
    // A message echoing a client's invalid text (see utf8.ts) would hang a gRPC call.
    return new ConnectError(toWellFormed(error.rawMessage), error.code, error.metadata, undefined, error);
  }
  if (error instanceof DomainError) return fromDomainError(error);
  // Payload too large (DESIGN "Errors"): a retry could not store it either.
  if (error instanceof RecordTooLargeError) return invalidArgument("the payload is larger than the broker accepts");
  if (error instanceof BrokerError) return brokerUnavailable();
  // The client went away in the middle of its request stream: nothing is wrong here.
  if ((error as { code?: unknown } | undefined)?.code === "ERR_STREAM_PREMATURE_CLOSE") {
    return new ConnectError("the client closed the request stream before its end", Code.Canceled);
  }
  return new ConnectError("internal error", Code.Internal);
}

/** No credential in `x-api-key` or `authorization: Bearer`. */
export function missingCredential(): ConnectError {
  return new ConnectError(
    "missing credential; send x-api-key, or authorization with a Bearer token",
    Code.Unauthenticated,
  );
}

/** A credential that matches no key and is no valid token; never says what was sent. */
export function invalidCredential(): ConnectError {
  return new ConnectError("invalid credential", Code.Unauthenticated);
}

/** A valid credential without the role `service` needs. */
export function permissionDenied(client: string, service: string): ConnectError {
  return new ConnectError(
    `client ${quote(client)} may not call ${service}: it needs the admin role`,
    Code.PermissionDenied,
  );
}

/** A valid credential without the scope a method needs. */
export function scopeMissing(client: string, method: string, scope: string): ConnectError {
  return new ConnectError(
    `client ${quote(client)} may not call ${method}: it needs the scope ${scope}`,
    Code.PermissionDenied,
  );
}

/** A credential naming a tenant other than its own without the admin role. */
export function foreignTenant(client: string): ConnectError {
  return new ConnectError(
    `client ${quote(client)} may not name a tenant in streamgate-tenant: only the admin role may act in another tenant`,
    Code.PermissionDenied,
  );
}

/** How a rate-limit refusal names its limit. */
const RATE_LIMIT_NAMES = {
  global: "the server's rate limit (RATE_LIMIT_RPS)",
  client: "this client's rate limit (CLIENT_RATE_LIMIT_RPS)",
  // Calls without a valid credential and calls to the open services (health, reflection), by address.
  peer: "this address's rate limit for unauthenticated and open-service calls (PEER_RATE_LIMIT_RPS)",
} as const;

/**
 * A request over a rate limit ("global": the instance's bucket, "client": the
 * caller's own, "peer": its address's, for calls without a valid credential
 * and calls to the open services), with when a retry can succeed: a `google.rpc.RetryInfo` detail
 * (`retryMs`) and a `retry-after` header (whole seconds, at least 1). Names the
 * limit and its variables, never the caller's credential.
 */
export function rateLimited(limit: "global" | "client" | "peer", retryMs: number): ConnectError {
  const seconds = Math.max(1, Math.ceil(retryMs / 1000));
  const which = RATE_LIMIT_NAMES[limit];
  return new ConnectError(
    `over ${which}; retry in ${seconds} s`,
    Code.ResourceExhausted,
    { "retry-after": String(seconds) },
    [
      {
        desc: RetryInfoSchema,
        value: create(RetryInfoSchema, { retryDelay: durationFromMs(Math.max(0, Math.ceil(retryMs))) }),
      },
    ],
  );
}

/** A client already holding `max` WatchResults calls opened another. */
export function tooManyWatchers(max: number): ConnectError {
  return new ConnectError(
    `this client already has ${max} open watchers, the most allowed (CLIENT_MAX_WATCHERS); close one first`,
    Code.ResourceExhausted,
  );
}

/** The code of each kind of domain error (DESIGN.md "Errors"). */
const DOMAIN_CODES: Record<DomainErrorKind, Code> = {
  invalid: Code.InvalidArgument,
  not_found: Code.NotFound,
  closed: Code.FailedPrecondition,
  exists: Code.AlreadyExists,
  quota: Code.ResourceExhausted,
  fell_behind: Code.ResourceExhausted,
  stopping: Code.Unavailable,
};

/** A domain error as the client sees it; an interrupted watch carries its resume cursor as a ResumeInfo detail. */
function fromDomainError(error: DomainError): ConnectError {
  const message = isWellFormed(error.message) ? error.message : toWellFormed(error.message);
  const details =
    error.resumeCursor === undefined
      ? undefined
      : [{ desc: ResumeInfoSchema, value: create(ResumeInfoSchema, { cursor: error.resumeCursor }) }];
  return new ConnectError(message, DOMAIN_CODES[error.kind], undefined, details, error);
}

/** A code as Connect and the README name it: "ok" for none, else "invalid_argument", "not_found", ... */
export function codeName(code: Code | undefined): string {
  return code === undefined ? "ok" : codeToString(code);
}
