/**
 * Log lines for refusals (failed authentication, refused connections, peers
 * over their limit), at most `perSecond` a second. A client that is refused
 * thousands of times a second must not make the server write thousands of log
 * lines: the lines past the rate are counted, and the next line written says
 * how many were suppressed since the one before it.
 */
import type { Logger } from "./logger.js";

/** Writes a refusal's warn line, or counts it when over the rate. */
export type RefusalLog = (fields: Record<string, unknown>, message: string) => void;

/** A refusal log writing through `logger`; `perSecond` 0 writes none (all are counted as suppressed). */
export function createRefusalLog(logger: Logger, perSecond: number, now: () => number = Date.now): RefusalLog {
  let windowStart = 0;
  let written = 0;
  let suppressed = 0;
  return (fields, message) => {
    const time = now();
    if (time - windowStart >= 1000) {
      windowStart = time;
      written = 0;
    }
    if (written >= perSecond) {
      suppressed++;
      return;
    }
    written++;
    if (suppressed > 0) {
      logger.warn({ ...fields, suppressed }, `${message} (${suppressed} similar lines suppressed before this one)`);
      suppressed = 0;
    } else {
      logger.warn(fields, message);
    }
  };
}
