/**
 * Entry point: load the configuration, start the service, and drain on
 * SIGTERM/SIGINT (a second signal exits at once).
 */
import { startApp } from "./app/app.js";
import { ConfigError, loadConfig } from "./config/config.js";
import { createLogger } from "./observe/logger.js";

async function main(): Promise<void> {
  let config;
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
  const app = await startApp(config, logger);
  if (app.generatedApiKey !== undefined) {
    // Straight to stderr, once, not through the JSON logger: a key must not travel to log pipelines.
    process.stderr.write(
      `streamgate: no credentials configured; generated API key for this run: ${app.generatedApiKey} (set API_KEYS to choose your own)\n`,
    );
  }
  logger.info(
    { port: app.port, broker: app.broker.kind, tls: config.tls !== undefined, node: process.version },
    `streamgate listening on port ${app.port} (gRPC, gRPC-Web, Connect; dashboard at /dashboard/) on Node.js ${process.version}`,
  );

  let signalled = false;
  const stop = (signal: NodeJS.Signals) => {
    if (signalled) process.exit(1);
    signalled = true;
    logger.info({ signal }, "draining");
    app.close().then(
      () => {
        logger.info("stopped");
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((error: unknown) => {
  process.stderr.write(`streamgate: failed to start: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
