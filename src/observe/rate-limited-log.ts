/**
 * Warn lines that a client can cause at will (refused calls and connections,
 * failed records, unreadable results), at most `perSecond` a second. A client
 * refused thousands of times a second must not make the server write
 * thousands of log lines: the lines past the rate are counted, and the next
 * line written says how many were suppressed since the one before it.
 */
import type { Logger } from "./logger.js";

/** Writes a warn line, or counts it when over the rate. */
export type RateLimitedLog = (fields: Record<string, unknown>, message: string) => void;

/** Warn lines straight to `logger`, unlimited: for a component given no rate-limited log (tests). */
export function warnTo(logger: Logger): RateLimitedLog {
  return (fields, message) => logger.warn(fields, message);
}

/** A rate-limited warn log writing through `logger`; `perSecond` 0 writes none (all are counted as suppressed). */
export function createRateLimitedLog(logger: Logger, perSecond: number, now: () => number = Date.now): RateLimitedLog {
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
