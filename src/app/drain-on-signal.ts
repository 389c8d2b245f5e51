/**
 * How a serving process stops: the first SIGTERM or SIGINT drains the app
 * (README "Shutdown"), then sends the spans still buffered, and exits 0 (1 if
 * the drain failed). One process alone exits at once on a second signal; a
 * cluster's worker ignores it, since its primary decides when to kill (a
 * terminal's Ctrl-C reaches the whole process group, the primary passes
 * SIGTERM on too).
 */
import type { Logger } from "../observe/logger.js";
import type { Tracing } from "../observe/tracing.js";
import type { App } from "./app.js";

/** Installs the SIGTERM and SIGINT handlers; `again`: what a later signal does. */
export function drainOnSignal(
  app: Pick<App, "close">,
  tracing: Tracing,
  logger: Logger,
  again: "exit" | "ignore",
): void {
  let draining = false;
  const stop = (signal: NodeJS.Signals) => {
    if (draining) {
      if (again === "exit") process.exit(1);
      return;
    }
    draining = true;
    logger.info({ signal }, "draining");
    app.close().then(
      async () => {
        await tracing.shutdown(); // the spans still buffered, last
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
