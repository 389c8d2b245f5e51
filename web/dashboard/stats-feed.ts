/**
 * AdminService.WatchStats, kept open: a snapshot a second, reconnecting with
 * backoff when the call fails for a reason that may pass (the server
 * restarting, the network), and giving up on one that will not (a refused key).
 */
import { Code } from "@connectrpc/connect";
import type { Stats } from "../../gen/streamgate/v1/admin_service_pb.js";
import type { Clients } from "./client.js";
import { describeError, isAbort, type ShownError } from "./errors.js";

/** Milliseconds between snapshots. */
const INTERVAL_MS = 1000;
/** Backoff between attempts: doubling from the first to the most, with jitter. */
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 15_000;

/** Errors retrying cannot cure: the key or the request itself is wrong. */
const PERMANENT = new Set([Code.Unauthenticated, Code.PermissionDenied, Code.InvalidArgument, Code.Unimplemented]);

/** Where the feed stands. */
export type FeedStatus =
  | { state: "connecting" }
  | { state: "live" }
  | { state: "reconnecting"; error: ShownError }
  | { state: "failed"; error: ShownError };

/** What the feed reports. */
export interface FeedHandlers {
  stats(stats: Stats): void;
  status(status: FeedStatus): void;
}

/** Runs the feed until `signal` aborts or a permanent error ("failed", reported). */
export async function runStatsFeed(admin: Clients["admin"], on: FeedHandlers, signal: AbortSignal): Promise<void> {
  let retryMs = FIRST_RETRY_MS;
  on.status({ state: "connecting" });
  while (!signal.aborted) {
    try {
      for await (const response of admin.watchStats({ intervalMs: INTERVAL_MS }, { signal })) {
        if (!response.stats) continue;
        on.status({ state: "live" });
        retryMs = FIRST_RETRY_MS;
        on.stats(response.stats);
      }
      // The server only ends the call when it stops; it may come back.
      if (signal.aborted) return;
      on.status({ state: "reconnecting", error: describeError(new Error("the server ended the stats stream")) });
    } catch (error) {
      if (isAbort(error, signal)) return;
      const shown = describeError(error);
      if (PERMANENT.has(shown.code)) {
        on.status({ state: "failed", error: shown });
        return;
      }
      on.status({ state: "reconnecting", error: shown });
    }
    await pause(retryMs * (0.8 + Math.random() * 0.4), signal);
    retryMs = Math.min(MAX_RETRY_MS, retryMs * 2);
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}
