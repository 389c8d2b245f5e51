/**
 * The fanout's windows of recent results (src/fanout/stream-window.ts): a new
 * window is complete from where reading of its partition started; a window
 * keeps its stream's latest `perStream` results and is complete only from
 * past the ones it dropped; past `total` results in all, the least recently
 * updated windows are emptied first, one with watchers kept (complete from
 * past what it held) and one without dropped, after which a new window of
 * that stream, or of any stream of that partition, is complete only from
 * past the dropped results; a removed stream's window is emptied the same
 * way; `size` counts the results held throughout.
 */
import { describe, expect, it } from "vitest";
import type { StoredRecord } from "../src/broker/broker.js";
import { ResultEntry } from "../src/fanout/result-entry.js";
import { StreamWindows } from "../src/fanout/stream-window.js";
import { Watcher } from "../src/fanout/watcher.js";

/** A result of `key` at `offset` of results partition `partition`. */
function entry(key: string, offset: number, partition = 0): ResultEntry {
  const record: StoredRecord = {
    topic: "results",
    partition,
    offset,
    key,
    value: new TextEncoder().encode("{}"),
    headers: {},
    timestamp: 0,
  };
  return new ResultEntry(record);
}

const offsets = (entries: ResultEntry[]) => entries.map((held) => held.offset);

/** Windows of `perStream` and `total` results whose partitions 0 and 1 were started at offset 0. */
function windows(perStream: number, total: number): StreamWindows {
  const made = new StreamWindows(perStream, total);
  made.startAt(0, 0);
  made.startAt(1, 0);
  return made;
}

describe("StreamWindows", () => {
  it("makes a new window empty and complete from where reading of its partition started", () => {
    const made = new StreamWindows(10, 100);
    made.startAt(0, 40);
    made.startAt(1, 7);
    const window = made.of("t/a", 0);
    expect([window.entries, window.completeFrom, window.partition, window.watchers.size]).toEqual([[], 40, 0, 0]);
    expect(made.of("t/b", 1).completeFrom).toBe(7);
    expect(made.of("t/a", 0)).toBe(window); // the same window, not a new one
    expect(made.size).toBe(0);
  });

  it("keeps a stream's latest `perStream` results, complete only from past the oldest it dropped", () => {
    const made = windows(3, 100);
    for (let offset = 0; offset < 3; offset++) made.append("t/a", 0, entry("t/a", offset));
    expect(made.of("t/a", 0).completeFrom).toBe(0);
    made.append("t/a", 0, entry("t/a", 5));
    const window = made.append("t/a", 0, entry("t/a", 9));
    expect(offsets(window.entries)).toEqual([2, 5, 9]);
    // Offsets 3 and 4 were other streams' results: complete from just past the dropped one.
    expect(window.completeFrom).toBe(2);
    expect(made.size).toBe(3);
  });

  it("empties the least recently updated windows first once more than `total` results are held", () => {
    const made = windows(10, 3);
    made.append("t/a", 0, entry("t/a", 0));
    made.append("t/b", 0, entry("t/b", 1));
    made.append("t/c", 0, entry("t/c", 2));
    const a = made.append("t/a", 0, entry("t/a", 3)); // "t/a" now updated most recently
    expect(made.size).toBe(4); // append alone does not evict
    made.evict();
    expect(made.size).toBe(3);
    expect(made.of("t/a", 0)).toBe(a);
    expect(offsets(a.entries)).toEqual([0, 3]);
    expect(offsets(made.of("t/c", 0).entries)).toEqual([2]);
    // "t/b" was dropped: its stream gets a new, empty window.
    expect(made.of("t/b", 0).entries).toEqual([]);
  });

  it("goes on emptying windows, oldest first, until no more than `total` are held", () => {
    const made = windows(10, 2);
    made.append("t/a", 0, entry("t/a", 0));
    made.append("t/b", 0, entry("t/b", 1));
    made.append("t/b", 0, entry("t/b", 2));
    made.append("t/c", 0, entry("t/c", 3));
    made.append("t/c", 0, entry("t/c", 4));
    made.evict();
    expect(made.size).toBe(2);
    expect(offsets(made.of("t/c", 0).entries)).toEqual([3, 4]);
    expect(made.of("t/a", 0).entries).toEqual([]);
    expect(made.of("t/b", 0).entries).toEqual([]);
  });

  it("keeps an evicted window that has watchers, emptied and complete from past what it held", () => {
    const made = windows(10, 1);
    const a = made.append("t/a", 0, entry("t/a", 0));
    made.append("t/a", 0, entry("t/a", 2));
    const watcher = new Watcher(10, "", "a");
    a.watchers.add(watcher);
    made.append("t/b", 0, entry("t/b", 3));
    made.evict();
    expect(made.size).toBe(1);
    expect(made.of("t/a", 0)).toBe(a); // the watchers' window, not a new one
    expect([a.entries, a.completeFrom, [...a.watchers]]).toEqual([[], 3, [watcher]]);
    // Live results still reach it.
    expect(made.append("t/a", 0, entry("t/a", 4))).toBe(a);
  });

  it("drops an evicted window without watchers: a new window of its partition is complete only from past it", () => {
    const made = windows(10, 1);
    const a = made.append("t/a", 0, entry("t/a", 0));
    made.append("t/a", 0, entry("t/a", 5));
    made.append("t/b", 1, entry("t/b", 8, 1));
    made.evict();
    expect(made.size).toBe(1);
    const again = made.of("t/a", 0);
    expect(again).not.toBe(a);
    expect([again.entries, again.completeFrom]).toEqual([[], 6]);
    // Any stream of that partition that had no window: the dropped results are no longer in memory.
    expect(made.of("t/new", 0).completeFrom).toBe(6);
    // Another partition is unaffected.
    expect(made.of("t/other", 1).completeFrom).toBe(0);
  });

  it("does not lower where new windows are complete from when it drops an older, empty window", () => {
    const made = windows(10, 1);
    made.append("t/a", 0, entry("t/a", 4));
    const empty = made.of("t/empty", 0); // made before "t/a" was dropped: complete from 0, holds nothing
    expect(empty.completeFrom).toBe(0);
    const b = made.append("t/b", 0, entry("t/b", 9));
    made.append("t/b", 0, entry("t/b", 10));
    b.watchers.add(new Watcher(10, "", "b"));
    // Drops "t/a" (through 5), then "t/empty" (complete from 0), then empties the watched "t/b".
    made.evict();
    expect(made.size).toBe(0);
    expect(made.of("t/empty", 0)).not.toBe(empty);
    expect(made.of("t/x", 0).completeFrom).toBe(5);
  });

  it("clears a removed stream's window: returned, emptied, complete from past what it held", () => {
    const made = windows(10, 100);
    made.append("t/a", 0, entry("t/a", 1));
    const a = made.append("t/a", 0, entry("t/a", 3));
    made.append("t/b", 0, entry("t/b", 4));
    const watcher = new Watcher(10, "", "a");
    a.watchers.add(watcher);
    expect(made.size).toBe(3);
    const cleared = made.clear("t/a");
    expect(cleared).toBe(a);
    expect([a.entries, a.completeFrom, [...a.watchers]]).toEqual([[], 4, [watcher]]);
    expect(made.size).toBe(1);
    expect(made.clear("t/none")).toBeUndefined();
    // An empty window keeps where it is complete from.
    const empty = made.of("t/empty", 0);
    expect(made.clear("t/empty")).toBe(empty);
    expect(empty.completeFrom).toBe(0);
    expect(made.size).toBe(1);
  });

  it("counts the results held across appends, per-stream drops, evictions and clears", () => {
    const made = windows(2, 4);
    expect(made.size).toBe(0);
    for (let offset = 0; offset < 3; offset++) made.append("t/a", 0, entry("t/a", offset));
    expect(made.size).toBe(2);
    for (let offset = 3; offset < 6; offset++) made.append("t/b", 0, entry("t/b", offset));
    made.append("t/c", 0, entry("t/c", 6));
    expect(made.size).toBe(5);
    made.evict();
    expect(made.size).toBe(3);
    made.clear("t/b");
    expect(made.size).toBe(1);
    made.evict();
    expect(made.size).toBe(1);
  });
});
