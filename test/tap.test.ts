import { describe, expect, it } from "vitest";
import { type TapEnd, tap } from "../src/rpc/interceptors/tap.js";

/** A source that yields `values`, then fails with `error` if given; records whether it was started and stopped. */
function source(values: number[], error?: Error) {
  const seen = { started: false, finallyRan: false };
  async function* generate() {
    seen.started = true;
    try {
      for (const value of values) yield value;
      if (error) throw error;
    } finally {
      seen.finallyRan = true;
    }
  }
  return { iterable: { [Symbol.asyncIterator]: () => generate() }, seen };
}

describe("tap", () => {
  it("passes every message through, calls the message hook for each, and ends once with done", async () => {
    const { iterable, seen } = source([1, 2, 3]);
    const messages: number[] = [];
    const ends: TapEnd[] = [];
    const tapped = tap(iterable, { message: (m) => messages.push(m), end: (how) => ends.push(how) });
    expect(seen.started).toBe(false);
    const received: number[] = [];
    for await (const value of tapped) received.push(value);
    expect(received).toEqual([1, 2, 3]);
    expect(messages).toEqual([1, 2, 3]);
    expect(ends).toEqual([{ kind: "done" }]);
  });

  it("maps the error the source fails with, and ends once with the mapped error", async () => {
    const original = new Error("broker gone");
    const mapped = new Error("unavailable");
    const { iterable } = source([1], original);
    const ends: TapEnd[] = [];
    const tapped = tap(iterable, { mapError: (e) => (e === original ? mapped : e), end: (how) => ends.push(how) });
    const received: number[] = [];
    await expect(
      (async () => {
        for await (const value of tapped) received.push(value);
      })(),
    ).rejects.toBe(mapped);
    expect(received).toEqual([1]);
    expect(ends).toEqual([{ kind: "error", error: mapped }]);
  });

  it("ends with stopped when the consumer stops early, and stops the source (its finally runs)", async () => {
    const { iterable, seen } = source([1, 2, 3]);
    const ends: TapEnd[] = [];
    const messages: number[] = [];
    const tapped = tap(iterable, { message: (m) => messages.push(m), end: (how) => ends.push(how) });
    for await (const value of tapped) {
      if (value === 2) break;
    }
    expect(messages).toEqual([1, 2]);
    expect(ends).toEqual([{ kind: "stopped" }]);
    expect(seen.finallyRan).toBe(true);
    // Ended: asking again reads nothing more.
    expect(await tapped[Symbol.asyncIterator]().next()).toEqual({ done: true, value: undefined });
  });

  it("fails through mapError when the source cannot even start", async () => {
    const broken = {
      [Symbol.asyncIterator]: (): AsyncIterator<number> => {
        throw new Error("no iterator");
      },
    };
    const ends: TapEnd[] = [];
    const tapped = tap(broken, { mapError: () => new Error("mapped"), end: (how) => ends.push(how) });
    await expect(tapped[Symbol.asyncIterator]().next()).rejects.toThrow("mapped");
    expect(ends).toHaveLength(1);
    expect(ends[0]!.kind).toBe("error");
  });
});
