/**
 * The errors of streamgate's own domain (streams, records, results,
 * expressions), said in its own words: what went wrong, never which RPC code
 * that is. The RPC layer maps each kind to its code in one place
 * (src/rpc/errors.ts, DESIGN.md's table), so the same domain code could
 * answer any protocol.
 */

/** What kind of failure: each maps to one RPC code. */
export type DomainErrorKind =
  /** Bad input: a malformed field, a bad CEL expression, a payload too large. */
  | "invalid"
  /** No such stream (in the caller's tenant), or no longer. */
  | "not_found"
  /** The stream is closed: it takes no more records. */
  | "closed"
  /** A stream with the id exists with other options. */
  | "exists"
  /** A tenant's quota (streams, watchers) is used up. */
  | "quota"
  /** A watcher fell too far behind its buffer; it may resume from its cursor. */
  | "fell_behind"
  /** The server is stopping; the watcher may resume elsewhere from its cursor. */
  | "stopping";

/** A failure the client caused or can act on; its message says what and what to do. */
export class DomainError extends Error {
  constructor(
    readonly kind: DomainErrorKind,
    message: string,
    /** For "fell_behind" and "stopping": the cursor to resume from ("" to repeat the request). */
    readonly resumeCursor?: string,
  ) {
    super(message);
    this.name = "DomainError";
  }
}

/** Names a client-supplied value in a message without echoing kilobytes of it. */
export function quote(value: string): string {
  return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
}

/** Bad input: a missing or badly formed field, a bad CEL expression. */
export function invalidInput(message: string): DomainError {
  return new DomainError("invalid", message);
}

/** A payload over MAX_PAYLOAD_BYTES; the message states the limit. */
export function payloadTooLarge(size: number, limit: number): DomainError {
  return invalidInput(`payload is ${size} bytes, over the limit of ${limit} bytes (MAX_PAYLOAD_BYTES)`);
}

/** The stream id names no stream. */
export function streamNotFound(streamId: string): DomainError {
  return new DomainError("not_found", `stream ${quote(streamId)} not found`);
}

/** The stream was deleted, or removed as closed long enough ago, while it was watched. */
export function streamRemoved(streamId: string): DomainError {
  return new DomainError("not_found", `stream ${quote(streamId)} not found: it was deleted`);
}

/** The stream exists but is closed, so it accepts no more records. */
export function streamClosed(streamId: string): DomainError {
  return new DomainError("closed", `stream ${quote(streamId)} is closed`);
}

/** A stream with this id exists with other labels or processing options. */
export function streamExists(streamId: string): DomainError {
  return new DomainError(
    "exists",
    `stream ${quote(streamId)} already exists with different labels or processing options`,
  );
}

/** The tenant already has TENANT_MAX_STREAMS streams. */
export function streamQuotaReached(max: number): DomainError {
  return new DomainError(
    "quota",
    `the tenant has ${max} streams, its quota (TENANT_MAX_STREAMS): delete a stream (DeleteStream) to start another`,
  );
}

/** The tenant already has TENANT_MAX_WATCHERS open watchers on this instance. */
export function watcherQuotaReached(max: number): DomainError {
  return new DomainError(
    "quota",
    `the tenant has ${max} open watchers here, its quota (TENANT_MAX_WATCHERS): close one first`,
  );
}

/**
 * A watcher ended early (it fell behind its buffer, or the server is
 * draining), with the cursor to resume from, also in the message, so that no
 * result is silently skipped.
 */
export function watchInterrupted(reason: "overflow" | "shutdown", cursor: string, buffer: number): DomainError {
  const resume = cursor === "" ? "repeat the request to resume" : `resume with afterCursor=${cursor}`;
  return reason === "overflow"
    ? new DomainError("fell_behind", `watcher fell behind by more than ${buffer} results; ${resume}`, cursor)
    : new DomainError("stopping", `server is shutting down; ${resume}`, cursor);
}
