/**
 * One ingest partition's progress (src/processing/partition-progress.ts), on a
 * fake clock: the span runs from the oldest unfinished record to the newest
 * read and the lag from there to the highest high watermark seen, however
 * records finish; a first batch places the partition before its records
 * begin; a forgotten partition counts no lag; backpressure waiters go once
 * the span is below their limit, or on release; commits never pass the
 * oldest unfinished record, come within COMMIT_INTERVAL_MS (or in the next
 * turn once `commitEvery` finished records wait), are made at once by flush,
 * are never repeated or lowered, and a failed one is reported and made again
 * by the next.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { COMMIT_INTERVAL_MS, PartitionProgress } from "../src/processing/partition-progress.js";

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setImmediate", "clearImmediate"] });
});
afterEach(() => {
  vi.useRealTimers();
});

/** A progress whose commits are recorded (and fail while `failing` is set), and whose commit errors are gathered. */
function tracked(commitEvery = 1000) {
  const commits: number[] = [];
  const errors: unknown[] = [];
  const state = { failing: undefined as Error | undefined };
  const progress = new PartitionProgress(
    async (nextOffset) => {
      commits.push(nextOffset);
      if (state.failing) throw state.failing;
    },
    (error) => errors.push(error),
    commitEvery,
  );
  return { progress, commits, errors, state };
}

/** Begins the records `from` to `to - 1`, in offset order. */
function beginRange(progress: PartitionProgress, from: number, to: number): void {
  for (let offset = from; offset < to; offset++) progress.begin(offset);
}

describe("span and lag", () => {
  it("count from the oldest unfinished record, whatever order records finish in", () => {
    const { progress } = tracked();
    progress.arrived(10, 20);
    beginRange(progress, 10, 13);
    expect([progress.span, progress.lag]).toEqual([3, 10]);
    progress.end(11); // a later record finishing first moves neither
    expect([progress.span, progress.lag]).toEqual([3, 10]);
    progress.end(10); // now 12 is the oldest unfinished
    expect([progress.span, progress.lag]).toEqual([1, 8]);
    progress.end(12);
    // Nothing unfinished: no span, and the lag counts from the next record to read.
    expect([progress.span, progress.lag]).toEqual([0, 7]);
  });

  it("place a partition's first batch before any of its records begins", () => {
    const { progress } = tracked();
    expect([progress.span, progress.lag]).toEqual([0, 0]);
    progress.arrived(100, 150);
    expect([progress.span, progress.lag]).toEqual([0, 50]);
  });

  it("keep the highest high watermark seen: a lower one later does not lower the lag", () => {
    const { progress } = tracked();
    progress.arrived(100, 150);
    progress.arrived(100, 120);
    expect(progress.lag).toBe(50);
    progress.arrived(100, 180);
    expect(progress.lag).toBe(80);
  });

  it("are not moved by a batch arriving while records are unfinished", () => {
    const { progress } = tracked();
    progress.arrived(0, 10);
    beginRange(progress, 0, 2);
    progress.arrived(5, 10);
    expect([progress.span, progress.lag]).toEqual([2, 10]);
  });

  it("count no lag once the watermark is forgotten, until a batch arrives again", () => {
    const { progress } = tracked();
    progress.arrived(0, 50);
    progress.begin(0);
    expect(progress.lag).toBe(50);
    progress.forgetWatermark();
    expect(progress.lag).toBe(0);
    expect(progress.span).toBe(1);
    progress.arrived(1, 30);
    expect(progress.lag).toBe(30);
  });
});

describe("below", () => {
  it("resolves at once when the span is already below the limit", async () => {
    const { progress } = tracked();
    progress.arrived(0, 10);
    beginRange(progress, 0, 2);
    await expect(progress.below(3)).resolves.toBeUndefined();
  });

  it("resolves only once records finish and the span drops below the limit", async () => {
    const { progress } = tracked();
    progress.arrived(0, 10);
    beginRange(progress, 0, 5);
    let released = false;
    const waiting = progress.below(3).then(() => {
      released = true;
    });
    progress.end(4); // the newest finishing does not shorten the span
    progress.end(0); // span 4
    await Promise.resolve();
    expect(released).toBe(false);
    progress.end(1); // span 3: not below 3
    await Promise.resolve();
    expect(released).toBe(false);
    progress.end(2); // 3 is the oldest unfinished: span 2
    await waiting;
    expect(released).toBe(true);
    expect(progress.span).toBe(2);
  });

  it("lets every waiter go on release, whatever the span", async () => {
    const { progress } = tracked();
    progress.arrived(0, 10);
    beginRange(progress, 0, 5);
    const settled: number[] = [];
    const waits = [progress.below(2).then(() => settled.push(2)), progress.below(4).then(() => settled.push(4))];
    await Promise.resolve();
    expect(settled).toEqual([]);
    progress.release();
    await Promise.all(waits);
    expect(settled.sort()).toEqual([2, 4]);
    expect(progress.span).toBe(5);
  });
});

describe("commits", () => {
  it("never commit past the oldest unfinished record", async () => {
    const { progress, commits } = tracked();
    progress.arrived(0, 10);
    beginRange(progress, 0, 3);
    progress.end(0);
    progress.end(2);
    await progress.flush();
    expect(commits).toEqual([1]); // 1 is unfinished: nothing from it on is committed
    progress.end(1);
    await progress.flush();
    expect(commits).toEqual([1, 3]);
  });

  it("are made within COMMIT_INTERVAL_MS when few records finished", async () => {
    const { progress, commits } = tracked(100);
    progress.arrived(0, 10);
    beginRange(progress, 0, 2);
    progress.end(0);
    await vi.advanceTimersByTimeAsync(COMMIT_INTERVAL_MS / 2);
    progress.end(1); // a second record does not restart the interval
    await vi.advanceTimersByTimeAsync(COMMIT_INTERVAL_MS / 2 - 1);
    expect(commits).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(commits).toEqual([2]);
    await vi.advanceTimersByTimeAsync(COMMIT_INTERVAL_MS * 3);
    expect(commits).toEqual([2]);
  });

  it("are made in the next turn once `commitEvery` finished records wait, then counted from that commit", async () => {
    const { progress, commits } = tracked(3);
    progress.arrived(0, 10);
    beginRange(progress, 0, 4);
    progress.end(0);
    progress.end(1);
    await vi.advanceTimersByTimeAsync(0);
    expect(commits).toEqual([]); // two waiting: the interval's commit
    progress.end(2);
    expect(commits).toEqual([]); // not synchronously: in the next turn
    await vi.advanceTimersByTimeAsync(0);
    expect(commits).toEqual([3]);
    // The interval's commit that was scheduled is not made as well.
    await vi.advanceTimersByTimeAsync(COMMIT_INTERVAL_MS * 2);
    expect(commits).toEqual([3]);
    // One more finished record after that commit waits for the interval again.
    progress.end(3);
    await vi.advanceTimersByTimeAsync(0);
    expect(commits).toEqual([3]);
    await vi.advanceTimersByTimeAsync(COMMIT_INTERVAL_MS);
    expect(commits).toEqual([3, 4]);
  });

  it("are made at once by flush, which cancels the one scheduled", async () => {
    const { progress, commits } = tracked(100);
    progress.arrived(0, 10);
    progress.begin(0);
    progress.end(0);
    await progress.flush();
    expect(commits).toEqual([1]);
    await vi.advanceTimersByTimeAsync(COMMIT_INTERVAL_MS * 2);
    expect(commits).toEqual([1]);
  });

  it("are not made when nothing new is committable", async () => {
    const { progress, commits } = tracked(1);
    await progress.flush(); // nothing read yet
    expect(commits).toEqual([]);
    progress.arrived(0, 10);
    progress.begin(0);
    progress.end(0);
    await vi.advanceTimersByTimeAsync(0);
    expect(commits).toEqual([1]);
    await progress.flush(); // already committed
    // A record finishing behind an unfinished one adds nothing committable.
    beginRange(progress, 1, 3);
    progress.end(2);
    await vi.advanceTimersByTimeAsync(COMMIT_INTERVAL_MS * 2);
    await progress.flush();
    expect(commits).toEqual([1]);
  });

  it("never go back below what was committed when a batch is delivered again", async () => {
    const { progress, commits } = tracked(100);
    progress.arrived(0, 10);
    beginRange(progress, 0, 5);
    for (let offset = 0; offset < 5; offset++) progress.end(offset);
    await progress.flush();
    expect(commits).toEqual([5]);
    // Redelivered from offset 3 (as after a failed batch): committing 3 would move the group back.
    progress.arrived(3, 10);
    await progress.flush();
    progress.begin(3);
    progress.end(3);
    await vi.advanceTimersByTimeAsync(COMMIT_INTERVAL_MS * 2);
    await progress.flush();
    expect(commits).toEqual([5]);
  });

  it("report a failed scheduled commit and make it again with the next flush", async () => {
    const { progress, commits, errors, state } = tracked(100);
    const outage = new Error("broker away");
    state.failing = outage;
    progress.arrived(0, 10);
    progress.begin(0);
    progress.end(0);
    await vi.advanceTimersByTimeAsync(COMMIT_INTERVAL_MS);
    expect(commits).toEqual([1]);
    expect(errors).toEqual([outage]);
    state.failing = undefined;
    await progress.flush();
    expect(commits).toEqual([1, 1]); // tried again: the failed one did not count as made
    await progress.flush();
    expect(commits).toEqual([1, 1]);
    expect(errors).toEqual([outage]);
  });

  it("cover a commit that failed in flush with the next scheduled one", async () => {
    const { progress, commits, errors, state } = tracked(100);
    const outage = new Error("broker away");
    state.failing = outage;
    progress.arrived(0, 10);
    beginRange(progress, 0, 2);
    progress.end(0);
    await expect(progress.flush()).rejects.toBe(outage);
    expect(errors).toEqual([]); // flush's caller hears of it, not onCommitError
    state.failing = undefined;
    await vi.advanceTimersByTimeAsync(COMMIT_INTERVAL_MS * 2);
    expect(commits).toEqual([1]); // the scheduled commit was cancelled by the flush
    progress.end(1);
    await vi.advanceTimersByTimeAsync(COMMIT_INTERVAL_MS);
    expect(commits).toEqual([1, 2]);
  });
});
