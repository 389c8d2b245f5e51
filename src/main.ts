/**
 * Entry point: load the configuration, start the service, and drain on
 * SIGTERM/SIGINT (a second signal exits at once). With WORKERS > 1 this
 * process is the primary of a cluster, or one of its workers (src/cluster/).
 */
import cluster from "node:cluster";
import { startApp } from "./app/app.js";
import { drainOnSignal } from "./app/drain-on-signal.js";
import { startPrimary } from "./cluster/primary.js";
import { runWorker, workerIndex } from "./cluster/worker.js";
import { type Config, ConfigError, loadConfig } from "./config/config.js";
import { createLogger, type Logger } from "./observe/logger.js";
import { startTracing } from "./observe/tracing.js";

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`streamgate: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(config.logLevel);
  if (config.workers > 1) {
    if (cluster.isWorker) return runWorker(config, logger.child({ worker: workerIndex() }));
    return runPrimary(config, logger);
  }
  const tracing = await startTracing(logger); // before the app: its chain and record path see whether it is on
  const app = await startApp(config, logger);
  announceGeneratedKey(app.generatedApiKey);
  logger.info(
    { port: app.port, broker: app.broker.kind, tls: config.tls !== undefined, node: process.version },
    `streamgate listening on port ${app.port} (gRPC, gRPC-Web, Connect; dashboard at /dashboard/) on Node.js ${process.version}`,
  );

  drainOnSignal(app, tracing, logger, "exit");
}

/** The primary of WORKERS processes: starts them, and on SIGTERM/SIGINT has them drain (a second signal kills them). */
async function runPrimary(config: Config, logger: Logger): Promise<void> {
  if (config.redis === undefined) {
    logger.warn(
      { workers: config.workers },
      "WORKERS > 1 without REDIS_URL: each worker keeps its own rate-limit buckets, so every limit applies per worker",
    );
  }
  const primary = await startPrimary(config, logger);
  announceGeneratedKey(primary.generatedApiKey);
  logger.info(
    {
      port: primary.port,
      metricsPort: primary.metricsPort,
      workers: config.workers,
      broker: "kafka",
      node: process.version,
    },
    `streamgate listening on port ${primary.port} with ${config.workers} workers (gRPC, gRPC-Web, Connect; dashboard at /dashboard/) on Node.js ${process.version}`,
  );
  let signalled = false;
  const stop = (signal: NodeJS.Signals) => {
    if (signalled) {
      primary.kill();
      process.exit(1);
    }
    signalled = true;
    logger.info({ signal }, "draining the workers");
    void primary.stop().then((clean) => {
      logger.info({ clean }, "stopped");
      process.exit(clean ? 0 : 1);
    });
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

/** Prints the key generated because no credential is configured, once. */
function announceGeneratedKey(key: string | undefined): void {
  if (key === undefined) return;
  // Straight to stderr, once, not through the JSON logger: a key must not travel to log pipelines.
  process.stderr.write(
    `streamgate: no credentials configured; generated API key for this run: ${key} (set API_KEYS to choose your own)\n`,
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`streamgate: failed to start: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
