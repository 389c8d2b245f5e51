/**
 * The broker's own errors, whichever broker it is: the RPC layer maps them
 * (src/rpc/errors.ts) without the broker knowing of RPC codes.
 */

/** A failure of the broker (unreachable, refusing, timing out): an RPC maps it to UNAVAILABLE, never INTERNAL. */
export class BrokerError extends Error {
  constructor(
    message: string,
    /** Whether retrying the same operation may succeed. */
    readonly retriable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "BrokerError";
  }
}

/**
 * The broker refused a record as larger than it accepts (Kafka's
 * message.max.bytes): retrying cannot store it, so a writer that retries
 * (the processor) gives up on that record instead of retrying forever.
 */
export class RecordTooLargeError extends BrokerError {
  constructor(options?: { cause?: unknown }) {
    super("the record is larger than the broker accepts", false, options);
    this.name = "RecordTooLargeError";
  }
}
