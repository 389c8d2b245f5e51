/**
 * The code a call ended with, as its client saw it, for the interceptors that
 * record it (metrics and logs, traces): one answer however the call ended.
 * `undefined` is OK.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { abortedByClient } from "../errors.js";
import type { TapEnd } from "./tap.js";

/**
 * A call that failed with `error`. A client that went away is CANCELED
 * whatever its going away made fail: it resets its stream with a code of its
 * choosing, and INTERNAL is ours (errors.ts).
 */
export function failedCode(error: unknown, signal: AbortSignal): Code {
  return abortedByClient(signal) ? Code.Canceled : ConnectError.from(error).code;
}

/**
 * A call answered (a unary response, or a stream's last message): OK, unless
 * it was answered after the client went away (e.g. a client stream it reset,
 * which Node ends as if complete), whose answer the client never sees.
 */
export function answeredCode(signal: AbortSignal): Code | undefined {
  return abortedByClient(signal) ? Code.Canceled : undefined;
}

/** A response stream that ended `how` (a tap's end, or the call's abort as `done`). */
export function streamEndCode(how: TapEnd, signal: AbortSignal): Code | undefined {
  if (how.kind === "error") return failedCode(how.error, signal);
  // Stopped early by the transport: the client is gone.
  if (how.kind === "stopped") return Code.Canceled;
  // A stream that ends because the client went away (or its deadline passed) did not end OK.
  if (!signal.aborted) return undefined;
  return abortedByClient(signal) ? Code.Canceled : Code.DeadlineExceeded;
}
