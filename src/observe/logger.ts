/**
 * Structured JSON logs (pino). Credentials never reach a log: the redact list
 * covers the places request metadata could carry them.
 */
import { type Logger as PinoLogger, pino } from "pino";

/** The logger type used across streamgate. */
export type Logger = PinoLogger;

/** Creates the process logger at `level`, writing JSON lines to stdout. */
export function createLogger(level: string): Logger {
  return pino({
    name: "streamgate",
    level,
    redact: {
      paths: ["headers.authorization", "headers['x-api-key']", "*.authorization", "*['x-api-key']"],
      censor: "[redacted]",
    },
  });
}
