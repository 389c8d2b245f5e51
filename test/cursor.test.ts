/**
 * Cursors round-trip (log, partition, offset) through an opaque string, and a
 * malformed cursor, or one of the other log, is refused with INVALID_ARGUMENT
 * naming the field.
 */

import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { type CursorLog, decodeCursor, encodeCursor } from "../src/streams/cursor.js";
import { refusal } from "./support/refusal.js";

describe("cursor", () => {
  it("decodes what it encodes", () => {
    const positions: Array<[CursorLog, number, number]> = [
      ["results", 0, 0],
      ["results", 5, 1024],
      ["ingest", 3, 7],
      ["ingest", 999_999, Number.MAX_SAFE_INTEGER],
    ];
    for (const [log, partition, offset] of positions) {
      const cursor = encodeCursor(log, partition, offset);
      expect(decodeCursor(cursor, log, "after_cursor")).toEqual({ log, partition, offset });
    }
  });

  it("distinguishes the two logs and every position", () => {
    const cursors = new Set([
      encodeCursor("results", 1, 23),
      encodeCursor("results", 12, 3),
      encodeCursor("ingest", 1, 23),
      encodeCursor("results", 1, 2),
    ]);
    expect(cursors.size).toBe(4);
  });

  it("refuses a SendData cursor where a result's cursor is expected, and the reverse", () => {
    const sendCursor = encodeCursor("ingest", 0, 1);
    const watchError = refusal(() => decodeCursor(sendCursor, "results", "after_cursor"));
    expect(watchError.code).toBe(Code.InvalidArgument);
    expect(watchError.rawMessage).toMatch(/^after_cursor must be a result's cursor/);

    const resultCursor = encodeCursor("results", 0, 1);
    const sendError = refusal(() => decodeCursor(resultCursor, "ingest", "cursor"));
    expect(sendError.code).toBe(Code.InvalidArgument);
    expect(sendError.rawMessage).toMatch(/^cursor must be a SendData cursor/);
  });

  it.each([
    ["empty", ""],
    ["garbage", "not-a-cursor"],
    ["unknown log", "x-1-2"],
    ["missing offset", "r-1"],
    ["negative offset", "r-1--2"],
    ["fractional offset", "r-1-2.5"],
    ["surrounding space", " r-1-2 "],
    ["partition too long", "r-1234567-0"],
    ["offset past 2^53", "r-0-9999999999999999"],
    ["trailing text", "r-1-2-3"],
    ["leading zeros (one position, one spelling)", "r-01-007"],
  ])("refuses a cursor with %s", (_, value) => {
    const error = refusal(() => decodeCursor(value, "results", "after_cursor"));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toBe("after_cursor is not a streamgate cursor");
  });
});
