/**
 * Cursors: stateless positions on a log, valid on every instance. A cursor
 * names the log (ingest or results), the partition and the offset, so any
 * instance can resume from it with no shared state. Clients treat it as opaque.
 */
import { invalidInput } from "../common/domain-error.js";

/** Which log a cursor points into. */
export type CursorLog = "ingest" | "results";

/** A decoded cursor. */
export interface Cursor {
  log: CursorLog;
  partition: number;
  offset: number;
}

const PREFIX: Record<CursorLog, string> = { ingest: "i", results: "r" };
const PATTERN = /^([ir])-(0|[1-9]\d{0,5})-(0|[1-9]\d{0,15})$/;

/** Encodes a position as a cursor string, e.g. "r-3-1024". */
export function encodeCursor(log: CursorLog, partition: number, offset: number): string {
  return `${PREFIX[log]}-${partition}-${offset}`;
}

/**
 * Decodes a cursor of the expected log, or throws INVALID_ARGUMENT naming the
 * field, so that a cursor from SendData given to WatchResults is refused clearly.
 */
export function decodeCursor(value: string, expected: CursorLog, field: string): Cursor {
  const match = PATTERN.exec(value);
  if (!match) throw invalidInput(`${field} is not a streamgate cursor`);
  const log: CursorLog = match[1] === "i" ? "ingest" : "results";
  if (log !== expected) {
    throw invalidInput(
      expected === "results"
        ? `${field} must be a result's cursor (Result.cursor), not a SendData cursor`
        : `${field} must be a SendData cursor`,
    );
  }
  const offset = Number(match[3]);
  if (!Number.isSafeInteger(offset)) throw invalidInput(`${field} is not a streamgate cursor`);
  return { log, partition: Number(match[2]), offset };
}
