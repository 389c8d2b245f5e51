/**
 * One WatchResults call's live buffer (src/fanout/watcher.ts): results are
 * taken in the order pushed; a push past the buffer ends the watcher with
 * "overflow", a RESOURCE_EXHAUSTED error naming the cursor to resume from (the
 * last result passed, else the request's own, else none: repeat the request);
 * "shutdown" is UNAVAILABLE the same way and "removed" is NOT_FOUND; the
 * window's snapshot does not count toward the buffer; the first interruption
 * is the one kept; a drop empties the buffer; a wait ends on a push, an
 * interruption or an abort (at once when already aborted) and leaves no
 * abort listener behind.
 */
import { Code } from "@connectrpc/connect";
import { describe, expect, it, vi } from "vitest";
import { ResumeInfoSchema } from "../gen/streamgate/v1/stream_service_pb.js";
import type { StoredRecord } from "../src/broker/broker.js";
import { ResultEntry } from "../src/fanout/result-entry.js";
import { Watcher } from "../src/fanout/watcher.js";
import { toConnectError } from "../src/rpc/errors.js";

/** A result of stream "t/s" at `offset` of results partition 2. */
function entry(offset: number): ResultEntry {
  const record: StoredRecord = {
    topic: "results",
    partition: 2,
    offset,
    key: "t/s",
    value: new TextEncoder().encode("{}"),
    headers: {},
    timestamp: 0,
  };
  return new ResultEntry(record);
}

/** Takes everything buffered, as offsets. */
function drain(watcher: Watcher): number[] {
  const taken: number[] = [];
  for (let next = watcher.take(); next; next = watcher.take()) taken.push(next.offset);
  return taken;
}

/** Whether `promise` has settled once pending callbacks ran. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(() => {
    done = true;
  });
  await new Promise<void>((resolve) => setImmediate(resolve));
  return done;
}

/**
 * The error as the client sees it (mapped at the edge by toConnectError): its
 * code, message and ResumeInfo cursor; the watcher's own error says the same.
 */
function described(error: Error) {
  const connect = toConnectError(error);
  expect(connect.rawMessage).toBe(error.message.replace(/^\[\w+\] /, ""));
  const resume = connect.findDetails(ResumeInfoSchema)[0]?.cursor;
  return { code: connect.code, message: connect.rawMessage, resume };
}

describe("Watcher buffer", () => {
  it("gives results back in the order pushed", () => {
    const watcher = new Watcher(5, "", "s");
    expect(watcher.take()).toBeUndefined();
    for (const offset of [3, 7, 8]) watcher.push(entry(offset));
    expect(drain(watcher)).toEqual([3, 7, 8]);
    expect(watcher.interruption).toBeUndefined();
  });

  it("ends with overflow on a push past its limit, dropping what it buffered and ignoring later pushes", () => {
    const watcher = new Watcher(2, "", "s");
    watcher.push(entry(0));
    watcher.push(entry(1));
    expect(watcher.interruption).toBeUndefined();
    watcher.push(entry(2));
    expect(watcher.interruption).toBe("overflow");
    expect(watcher.queue).toEqual([]);
    watcher.push(entry(3));
    expect(watcher.queue).toEqual([]);
  });

  it("has room for its limit again once results are taken", () => {
    const watcher = new Watcher(2, "", "s");
    watcher.push(entry(0));
    watcher.push(entry(1));
    watcher.take();
    watcher.push(entry(2));
    expect(watcher.interruption).toBeUndefined();
    expect(drain(watcher)).toEqual([1, 2]);
  });

  it("does not count the window's snapshot toward its limit", () => {
    const watcher = new Watcher(2, "", "s");
    watcher.enqueue([entry(0), entry(1), entry(2)]);
    watcher.push(entry(3));
    watcher.push(entry(4));
    expect(watcher.interruption).toBeUndefined();
    expect(watcher.queue).toHaveLength(5);
    watcher.push(entry(5)); // a third live result is one too many
    expect(watcher.interruption).toBe("overflow");
  });

  it("gives a snapshot entry's room back when it is taken, leaving room for `limit` live results", () => {
    const watcher = new Watcher(2, "", "s");
    watcher.enqueue([entry(0), entry(1), entry(2)]);
    expect([watcher.take()?.offset, watcher.take()?.offset]).toEqual([0, 1]);
    watcher.push(entry(3));
    watcher.push(entry(4));
    expect(watcher.interruption).toBeUndefined();
    watcher.push(entry(5));
    expect(watcher.interruption).toBe("overflow");
  });

  it("empties its buffer on drop", () => {
    const watcher = new Watcher(5, "", "s");
    watcher.enqueue([entry(0)]);
    watcher.push(entry(1));
    watcher.drop();
    expect(watcher.take()).toBeUndefined();
    expect(watcher.interruption).toBeUndefined();
  });

  it("keeps the first interruption's reason", () => {
    const watcher = new Watcher(1, "", "s");
    watcher.push(entry(0));
    watcher.push(entry(1));
    watcher.interrupt("shutdown");
    watcher.interrupt("removed");
    expect(watcher.interruption).toBe("overflow");
    expect(described(watcher.error()).code).toBe(Code.ResourceExhausted);
  });
});

describe("Watcher error", () => {
  it("for overflow is RESOURCE_EXHAUSTED and names the cursor of the last result passed", () => {
    const watcher = new Watcher(2, "r-2-1", "s");
    watcher.passed(entry(5));
    watcher.passed(entry(9));
    watcher.interrupt("overflow");
    const { code, message, resume } = described(watcher.error());
    expect(code).toBe(Code.ResourceExhausted);
    expect(message).toContain("more than 2 results");
    expect(message).toContain("resume with afterCursor=r-2-9");
    expect(resume).toBe("r-2-9");
  });

  it("names the request's own cursor when no result was passed", () => {
    const watcher = new Watcher(2, "r-2-1", "s");
    watcher.interrupt("overflow");
    const { message, resume } = described(watcher.error());
    expect(message).toContain("resume with afterCursor=r-2-1");
    expect(resume).toBe("r-2-1");
  });

  it("says to repeat the request when there is no cursor to resume from", () => {
    const watcher = new Watcher(2, "", "s");
    watcher.interrupt("overflow");
    const { message, resume } = described(watcher.error());
    expect(message).toContain("repeat the request to resume");
    expect(message).not.toContain("afterCursor");
    expect(resume).toBe("");
  });

  it("for shutdown is UNAVAILABLE and names the resume cursor", () => {
    const watcher = new Watcher(2, "", "s");
    watcher.passed(entry(4));
    watcher.interrupt("shutdown");
    const { code, message, resume } = described(watcher.error());
    expect(code).toBe(Code.Unavailable);
    expect(message).toBe("server is shutting down; resume with afterCursor=r-2-4");
    expect(resume).toBe("r-2-4");
  });

  it("for a removed stream is NOT_FOUND, naming the stream as the client named it", () => {
    const watcher = new Watcher(2, "", "my-stream");
    watcher.passed(entry(4));
    watcher.interrupt("removed");
    const { code, message } = described(watcher.error());
    expect(code).toBe(Code.NotFound);
    expect(message).toBe('stream "my-stream" not found: it was deleted');
  });
});

describe("Watcher wait", () => {
  it("ends on a push", async () => {
    const watcher = new Watcher(5, "", "s");
    const waiting = watcher.wait(new AbortController().signal);
    expect(await settled(waiting)).toBe(false);
    watcher.push(entry(0));
    expect(await settled(waiting)).toBe(true);
  });

  it("ends on an interruption", async () => {
    const watcher = new Watcher(5, "", "s");
    const waiting = watcher.wait(new AbortController().signal);
    watcher.interrupt("shutdown");
    expect(await settled(waiting)).toBe(true);
  });

  it("ends on an overflow", async () => {
    const watcher = new Watcher(1, "", "s");
    watcher.push(entry(0));
    const waiting = watcher.wait(new AbortController().signal);
    watcher.push(entry(1));
    expect(await settled(waiting)).toBe(true);
    expect(watcher.interruption).toBe("overflow");
  });

  it("ends on an abort, after which a push wakes nothing left behind", async () => {
    const watcher = new Watcher(5, "", "s");
    const controller = new AbortController();
    const waiting = watcher.wait(controller.signal);
    controller.abort();
    expect(await settled(waiting)).toBe(true);
    watcher.push(entry(0));
    expect(drain(watcher)).toEqual([0]);
  });

  it("ends at once for a signal already aborted", async () => {
    const watcher = new Watcher(5, "", "s");
    const waiting = watcher.wait(AbortSignal.abort());
    expect(await settled(waiting)).toBe(true);
  });

  it("leaves no abort listener behind, however it ended, and a later abort does no harm", async () => {
    const watcher = new Watcher(5, "", "s");
    const controller = new AbortController();
    const { signal } = controller;
    const added = vi.spyOn(signal, "addEventListener");
    const removed = vi.spyOn(signal, "removeEventListener");

    const first = watcher.wait(signal);
    watcher.push(entry(0));
    await first;
    const second = watcher.wait(signal);
    watcher.interrupt("shutdown");
    await second;
    expect(added).toHaveBeenCalledTimes(2);
    expect(removed).toHaveBeenCalledTimes(2);
    for (const [index, call] of added.mock.calls.entries()) {
      expect(call[0]).toBe("abort");
      expect(removed.mock.calls[index]!.slice(0, 2)).toEqual(call.slice(0, 2));
    }

    controller.abort();
    // A wait after the abort ends at once, and the watcher still works.
    await watcher.wait(signal);
    expect(watcher.interruption).toBe("shutdown");
    expect(added).toHaveBeenCalledTimes(2);
  });

  it("can be woken again by a later push after one push ended the previous wait", async () => {
    const watcher = new Watcher(5, "", "s");
    const signal = new AbortController().signal;
    const first = watcher.wait(signal);
    watcher.push(entry(0));
    await first;
    watcher.push(entry(1)); // no one waiting: nothing to wake
    const second = watcher.wait(signal);
    expect(await settled(second)).toBe(false);
    watcher.push(entry(2));
    expect(await settled(second)).toBe(true);
    expect(drain(watcher)).toEqual([0, 1, 2]);
  });
});
