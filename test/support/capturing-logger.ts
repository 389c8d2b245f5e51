/** A logger whose JSON lines a test reads back, for assertions on what was (and was not) logged. */
import { Writable } from "node:stream";
import { pino } from "pino";
import type { Logger } from "../../src/observe/logger.js";

/** An info-level logger, and the lines it has written so far, parsed. */
export function capturingLogger(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  let text = "";
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString("utf8");
      done();
    },
  });
  return {
    logger: pino({ level: "info" }, destination),
    lines: () =>
      text
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}
