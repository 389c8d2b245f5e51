/**
 * What the primary and its workers tell each other over the cluster's IPC
 * channel, and the variables a worker is started with. Each question carries
 * an id its answer repeats (see ipc-questions.ts).
 */
import type { NotReady } from "../app/probes.js";

/** The worker's number, "1" to WORKERS: stable across restarts, so its metrics keep their `worker` label. */
export const WORKER_INDEX_VARIABLE = "STREAMGATE_WORKER_INDEX";
/** The key the primary generated when no credential is configured: every worker must accept the same one. */
export const GENERATED_KEY_VARIABLE = "STREAMGATE_GENERATED_API_KEY";

/** The exposition text of every worker's metrics, as GET /metrics answers it. */
export interface Scrape {
  contentType: string;
  body: string;
}

/** A worker to the primary. */
export type WorkerMessage =
  /** Started: it listens on `port` (the port every worker shares). */
  | { type: "streamgate:listening"; port: number }
  /** A GET /metrics on the service port: the primary answers for all workers. */
  | { type: "streamgate:scrape"; id: number }
  /** The answer to a readiness question. */
  | { type: "streamgate:readiness"; id: number; notReady: NotReady | null };

/** The primary to a worker. */
export type PrimaryMessage =
  /** The answer to a scrape question: the metrics, or why there are none. */
  | { type: "streamgate:scraped"; id: number; scrape: Scrape | null; error: string | null }
  /** Asks whether the worker is ready (GET /readyz on METRICS_PORT). */
  | { type: "streamgate:ready?"; id: number };

/** Whether `message` (anything received over IPC: prom-client has its own messages too) is one of streamgate's. */
export function isStreamgateMessage<T extends { type: string }>(message: unknown): message is T {
  return (
    typeof message === "object" &&
    message !== null &&
    typeof (message as { type?: unknown }).type === "string" &&
    (message as { type: string }).type.startsWith("streamgate:")
  );
}
