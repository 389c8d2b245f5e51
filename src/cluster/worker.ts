/**
 * One worker of a cluster (WORKERS > 1): a whole streamgate on the port the
 * workers share, started by the primary (primary.ts). It tells the primary
 * when it listens, asks it for every worker's metrics when GET /metrics
 * reaches it, and answers its readiness questions. The first SIGTERM or
 * SIGINT drains it; later ones are ignored (src/app/drain-on-signal.ts).
 */
import { startApp } from "../app/app.js";
import { drainOnSignal } from "../app/drain-on-signal.js";
import type { Readiness } from "../app/probes.js";
import type { Config } from "../config/config.js";
import type { Logger } from "../observe/logger.js";
import { startTracing } from "../observe/tracing.js";
import { IpcQuestions } from "./ipc-questions.js";
import {
  GENERATED_KEY_VARIABLE,
  isStreamgateMessage,
  type PrimaryMessage,
  type Scrape,
  WORKER_INDEX_VARIABLE,
  type WorkerMessage,
} from "./messages.js";

/** How long a GET /metrics waits for the primary's gathering (which waits up to 5 s for each worker). */
const SCRAPE_TIMEOUT_MS = 10_000;

/** This worker's number, 1 to WORKERS, as its primary started it. */
export function workerIndex(env: NodeJS.ProcessEnv = process.env): number {
  const index = Number(env[WORKER_INDEX_VARIABLE]);
  if (!Number.isSafeInteger(index) || index < 1) throw new Error(`${WORKER_INDEX_VARIABLE} is not set by a primary`);
  return index;
}

/** Starts this worker's streamgate and serves until the primary stops it. */
export async function runWorker(config: Config, logger: Logger): Promise<void> {
  const index = workerIndex();
  const generatedApiKey = process.env[GENERATED_KEY_VARIABLE];
  // Read once; nothing this process starts needs it in its environment.
  delete process.env[GENERATED_KEY_VARIABLE];
  const send = (message: WorkerMessage) => process.send?.(message);
  const scrapes = new IpcQuestions<Extract<PrimaryMessage, { type: "streamgate:scraped" }>>(SCRAPE_TIMEOUT_MS);
  let readiness: Readiness | undefined;

  process.on("message", (message) => {
    if (!isStreamgateMessage<PrimaryMessage>(message)) return;
    if (message.type === "streamgate:scraped") {
      scrapes.answer(message.id, message);
      return;
    }
    const { id } = message;
    void Promise.resolve(readiness ? readiness() : "starting").then(
      (notReady) => send({ type: "streamgate:readiness", id, notReady: notReady ?? null }),
      () => send({ type: "streamgate:readiness", id, notReady: "draining" }),
    );
  });

  const scrape = async (): Promise<Scrape> => {
    const answer = await scrapes.ask((id) => send({ type: "streamgate:scrape", id }), "metrics of every worker");
    if (!answer.scrape) throw new Error(answer.error ?? "the primary gathered no metrics");
    return answer.scrape;
  };
  // Each worker exports its own spans (README "Traces"), as a separate instance would.
  const tracing = await startTracing(logger);
  // METRICS_PORT is the primary's: it serves every worker's metrics there.
  const app = await startApp({ ...config, metricsPort: undefined }, logger, undefined, undefined, {
    index,
    generatedApiKey,
    scrape,
  });
  readiness = app.readiness;
  send({ type: "streamgate:listening", port: app.port });
  logger.info({ port: app.port }, `worker ${index} serving port ${app.port}`);

  drainOnSignal(app, tracing, logger, "ignore");
}
