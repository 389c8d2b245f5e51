/**
 * The credential check at the edge, from a request's path and headers, before
 * connect reads its body (connect reads a unary body whole before any
 * interceptor runs): a call without a valid credential is answered
 * UNAUTHENTICATED at once, and its body is never read; so is a valid
 * credential that may not make the call (PERMISSION_DENIED: an admin service
 * without the admin role, a method without its scope, another tenant).
 *
 * Calls that fail authentication and calls to the open services (health,
 * reflection), which have no client to charge, take a token from their peer
 * address's bucket (PEER_RATE_LIMIT_RPS/BURST, in this process); with the
 * bucket empty they are answered RESOURCE_EXHAUSTED with RetryInfo. Calls with
 * a valid credential never touch that bucket: clients behind one address (a
 * NAT, a proxy) are limited by their own buckets, not by a stranger's
 * failures. Refusals are counted (streamgate_refusals_total, and
 * grpc_server_handled_total for a known procedure) and logged through the
 * rate-limited refusal log, never with the credential.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { DescFile } from "@bufbuild/protobuf";
import { Code, type ConnectError } from "@connectrpc/connect";
import type { BucketConfig } from "../config/config.js";
import type { GrpcType, Metrics, RefusalReason } from "../observe/metrics.js";
import type { RateLimitedLog } from "../observe/rate-limited-log.js";
import { peerGroup } from "../rpc/connection-admission.js";
import { wireOf, writeEdgeError } from "../rpc/edge-response.js";
import { invalidCredential, missingCredential, rateLimited } from "../rpc/errors.js";
import { authorize, credentialOf, type Identify } from "../rpc/interceptors/auth.js";
import { clientGone } from "../rpc/listener.js";
import { TENANT_HEADER } from "../rpc/request-context.js";
import type { Principal } from "./auth/api-keys.js";
import type { Buckets } from "./limits/limits.js";

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;

/** A served procedure's metric labels. */
export interface Procedure {
  grpc_service: string;
  grpc_method: string;
  grpc_type: GrpcType;
}

const GRPC_TYPE: Record<string, GrpcType> = {
  unary: "unary",
  client_streaming: "client_stream",
  server_streaming: "server_stream",
  bidi_streaming: "bidi_stream",
};

/** The procedures of the services in `files`, by request path (`/<service>/<method>`). */
export function proceduresOf(files: DescFile[]): Map<string, Procedure> {
  const procedures = new Map<string, Procedure>();
  for (const service of files.flatMap((file) => file.services)) {
    for (const method of service.methods) {
      procedures.set(`/${service.typeName}/${method.name}`, {
        grpc_service: service.typeName,
        grpc_method: method.name,
        grpc_type: GRPC_TYPE[method.methodKind] ?? "unary",
      });
    }
  }
  return procedures;
}

/**
 * Takes a token from a peer address's bucket: 0 when one was there, else the
 * milliseconds until one will be.
 */
export type PeerTokens = (peer: string) => Promise<number>;

/** Peer tokens from `buckets` under `rule` (PEER_RATE_LIMIT_RPS/BURST). */
export function peerTokens(buckets: Buckets, rule: BucketConfig): PeerTokens {
  return async (peer) => {
    const { refusedAt, retryMs } = await buckets.take([{ key: `peer:${peerGroup(peer)}`, bucket: rule }]);
    return refusedAt === -1 ? 0 : retryMs;
  };
}

/** What the edge check needs. */
export interface EdgeAuthOptions {
  /** The served procedures: only these are checked (connect answers any other path 404 from its headers). */
  procedures: ReadonlyMap<string, Procedure>;
  /** Services callable without a credential (limited by peer address instead). */
  openServices: ReadonlySet<string>;
  /** Services only the admin role may call: a valid credential without it is refused here too, unread. */
  adminServices: ReadonlySet<string>;
  /** The principal of a credential: synchronous for API keys, a promise for JWTs. */
  identify: Identify;
  /** The buckets of peer addresses (PEER_RATE_LIMIT_RPS/BURST). */
  takePeerToken: PeerTokens;
  metrics: Metrics;
  refusalLog: RateLimitedLog;
}

/** Who is calling, as the HTTP layer knows it. */
export interface Caller {
  peer: string;
  requestId: string;
}

/**
 * The edge's decision on a call: `false` when it has answered the call itself
 * (refused), else the verified principal and the tenant it acts in (both
 * undefined for an open service, or a path the edge leaves to connect) for
 * the interceptors.
 */
export type EdgeDecision = false | { principal: Principal | undefined; tenant?: string };

const PASS: EdgeDecision = { principal: undefined };

/**
 * Creates the edge check. Its result is synchronous when no bucket or JWT is
 * involved (a call with a valid API key), so the common call waits for nothing.
 */
export function createEdgeAuth(
  options: EdgeAuthOptions,
): (request: Request, response: Response, caller: Caller) => EdgeDecision | Promise<EdgeDecision> {
  const { procedures, openServices, adminServices, identify, takePeerToken, metrics, refusalLog } = options;

  const refuse = (
    request: Request,
    response: Response,
    caller: Caller,
    procedure: Procedure,
    reason: RefusalReason,
    error: ConnectError,
  ): false => {
    metrics.refused(reason);
    // Counted as calls of the procedure (its labels are bounded: a known path), as connect would have.
    metrics.started.inc(procedure);
    metrics.handled.inc({ ...procedure, grpc_code: Code[error.code] });
    refusalLog(
      {
        reason,
        procedure: `${procedure.grpc_service}/${procedure.grpc_method}`,
        peer: caller.peer,
        request_id: caller.requestId,
      },
      "call refused at the edge",
    );
    const wire = wireOf(request);
    // A client gone while a JWT was verified or a bucket consulted gets no answer.
    if (wire && !clientGone(request)) writeEdgeError(request, response, wire, error);
    return false;
  };

  /** Refuses a failed authentication: UNAUTHENTICATED while the peer has tokens, then RESOURCE_EXHAUSTED. */
  const failed = async (
    request: Request,
    response: Response,
    caller: Caller,
    procedure: Procedure,
    error: ConnectError,
  ) => {
    const retryMs = await takePeerToken(caller.peer);
    return retryMs === 0
      ? refuse(request, response, caller, procedure, "unauthenticated", error)
      : refuse(request, response, caller, procedure, "peer_rate_limit", rateLimited("peer", retryMs));
  };

  return (request, response, caller) => {
    const url = request.url ?? "";
    const query = url.indexOf("?");
    const procedure = procedures.get(query === -1 ? url : url.slice(0, query));
    // An unknown path, or a protocol connect does not serve: connect refuses it from its headers.
    if (!procedure || !wireOf(request)) return PASS;

    if (openServices.has(procedure.grpc_service)) {
      return takePeerToken(caller.peer).then((retryMs) =>
        retryMs === 0
          ? PASS
          : refuse(request, response, caller, procedure, "peer_rate_limit", rateLimited("peer", retryMs)),
      );
    }

    const { headers } = request;
    const credential = credentialOf(first(headers["x-api-key"]), headers.authorization);
    if (!credential) return failed(request, response, caller, procedure, missingCredential());
    const principal = identify(credential);
    // A valid credential is a client's, who is limited by its own buckets: a
    // wrong role spends no peer token, but its body is not read either.
    const decide = (found: Principal | undefined): EdgeDecision | Promise<EdgeDecision> => {
      if (!found) return failed(request, response, caller, procedure, invalidCredential());
      try {
        const tenant = authorize(
          found,
          procedure.grpc_service,
          procedure.grpc_method,
          adminServices,
          first(headers[TENANT_HEADER]),
        );
        return { principal: found, tenant };
      } catch (error) {
        return refuse(request, response, caller, procedure, "permission_denied", error as ConnectError);
      }
    };
    return principal instanceof Promise ? principal.then(decide) : decide(principal);
  };
}

/** The first value of a header, or null when absent. */
function first(value: string | string[] | undefined): string | null {
  return (Array.isArray(value) ? value[0] : value) ?? null;
}
