/**
 * How the processing of one record fails. Whatever goes wrong with one record
 * (its stream's CEL, a result too large to keep or to serialise, a record a
 * foreign producer wrote that cannot be read, a bug) ends that record as
 * `failed` with one of the reasons below, and its partition moves on: a record
 * that never finished would hold its partition's committed offset and, once
 * PROCESSOR_MAX_IN_FLIGHT records waited behind it, stop every stream on that
 * partition (and do so again after every restart).
 */
import type { JsonValue } from "@bufbuild/protobuf";
import type { RecordFailure } from "../observe/metrics.js";
import { CelEvalError } from "./cel.js";

/** A failure whose reason is known where it is raised (oversize or unserialisable results). */
export class RecordFailedError extends Error {
  override readonly name = "RecordFailedError";
  constructor(
    readonly reason: RecordFailure,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The metric reason of anything thrown while processing one record. */
export function failureReason(error: unknown): RecordFailure {
  if (error instanceof RecordFailedError) return error.reason;
  if (error instanceof CelEvalError) return error.reason;
  return "exception";
}

/** Longest CEL error message logged: it names the expression's problem, and a long one says no more. */
const MAX_LOGGED_MESSAGE = 200;

/**
 * Log fields that describe a failure without the record's payload. CEL errors
 * and this module's own errors say what the expression or the result did
 * wrong. Any other error's message may quote the payload (V8's JSON.parse
 * error does), so only its class and stack frames are kept.
 */
export function failureDetail(error: unknown): Record<string, unknown> {
  if (error instanceof RecordFailedError || error instanceof CelEvalError) {
    return { detail: error.message.slice(0, MAX_LOGGED_MESSAGE) };
  }
  if (error instanceof Error) {
    return { error: error.name, stack: error.stack?.split("\n").slice(1).join("\n") };
  }
  return { error: typeof error };
}

const encoder = new TextEncoder();

/** Throws `result_too_large` when a result of `bytes` bytes is over `maxBytes`. */
export function checkResultSize(bytes: number, maxBytes: number): void {
  if (bytes > maxBytes) {
    throw new RecordFailedError(
      "result_too_large",
      `the result is ${bytes} bytes, over MAX_PAYLOAD_BYTES (${maxBytes})`,
    );
  }
}

/**
 * Serialises a transform's result, refusing one over `maxBytes`: first from a
 * cheap lower bound of its size, so that a transform that multiplies its
 * input (a list of 40 copies of a 16 MB string) is refused before a string of
 * hundreds of MB is built, then exactly. `result_too_large` when over,
 * `serialization` when JSON.stringify or the encoding throws (V8 refuses
 * strings past about 512 MB with a RangeError).
 */
export function serializeResult(value: JsonValue, maxBytes: number): Uint8Array {
  checkResultSize(jsonSizeAtLeast(value, maxBytes), maxBytes);
  let bytes: Uint8Array;
  try {
    bytes = encoder.encode(JSON.stringify(value));
  } catch (error) {
    throw new RecordFailedError("serialization", "the transform's result could not be serialised", { cause: error });
  }
  checkResultSize(bytes.byteLength, maxBytes);
  return bytes;
}

/**
 * A lower bound of the UTF-8 size of `value` as JSON, which stops counting
 * once it is past `limit` (so it costs at most about `limit` steps whatever
 * the value's size). A UTF-16 code unit is at least one UTF-8 byte and JSON
 * only adds quotes, escapes and separators, so string lengths are a lower
 * bound. An explicit stack rather than recursion: no depth can overflow it.
 */
export function jsonSizeAtLeast(value: JsonValue, limit: number): number {
  let size = 0;
  const stack: JsonValue[] = [value];
  while (stack.length > 0 && size <= limit) {
    const next = stack.pop()!;
    if (typeof next === "string") size += next.length + 2;
    else if (next === null || typeof next !== "object") size += 1;
    else if (Array.isArray(next)) {
      size += 1 + next.length;
      if (size <= limit) for (const item of next) stack.push(item);
    } else {
      for (const key in next) {
        size += key.length + 4;
        if (size > limit) break;
        stack.push(next[key]!);
      }
    }
  }
  return size;
}
