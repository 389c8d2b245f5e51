/**
 * The processing throttle (src/processing/pacer.ts), on an injected manual
 * clock (test/support/manual-clock.ts) that moves only when the test moves it:
 * tasks run one at a time in the order given, each starting at its slot (1/rate
 * after the previous one's), never more than a millisecond early, so `count`
 * tasks span (count - 1) / rate of the clock and no window holds more than its
 * share; at a rate whose gaps are shorter than a timer can wait it still starts
 * exactly `rate` tasks a second; an idle pacer saves nothing up; a stop drops
 * the tasks not yet started. Every time here is the injected clock's: no
 * assertion depends on how fast the machine runs.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { Pacer, PacerStoppedError } from "../src/processing/pacer.js";
import { ManualClock } from "./support/manual-clock.js";

let clock: ManualClock;
beforeEach(() => {
  // Not at 0: the pacer's first slot must come from the clock, not from its own initial value.
  clock = new ManualClock(10_000);
});

/** Gives `pacer` `count` tasks that record when (on the clock) each started; `done` resolves when all settled. */
function feed(pacer: Pacer, count: number) {
  const started: number[] = [];
  const order: number[] = [];
  let running = 0;
  let overlapped = false;
  const done = Promise.allSettled(
    Array.from({ length: count }, (_, i) =>
      pacer.run(async () => {
        overlapped ||= running > 0;
        running++;
        started.push(clock.now());
        order.push(i);
        await Promise.resolve();
        running--;
      }),
    ),
  );
  return { started, order, done, overlapped: () => overlapped };
}

describe("Pacer", () => {
  it("starts tasks in order, one at a time, 1/rate apart", async () => {
    const origin = clock.now();
    const tasks = feed(new Pacer(10, clock), 5);
    await clock.advance(1000);
    await tasks.done;
    expect(tasks.order).toEqual([0, 1, 2, 3, 4]);
    expect(tasks.overlapped()).toBe(false);
    expect(tasks.started.map((at) => at - origin)).toEqual([0, 100, 200, 300, 400]);
  });

  it("starts no task before its slot: at 20 a second, the k-th task not before (k - 1) × 50 ms", async () => {
    // What test/processing.test.ts once measured on the wall clock, end to end: 10 records at
    // ratePerSecond 20 span at least 9 × 50 ms. Here every 50 ms window is stepped through.
    const origin = clock.now();
    const tasks = feed(new Pacer(20, clock), 10);
    await clock.advance(0);
    expect(tasks.started).toHaveLength(1);
    for (let k = 1; k < 10; k++) {
      await clock.advance(49);
      expect(tasks.started, `${k * 50 - 1} ms in`).toHaveLength(k);
      await clock.advance(1);
      expect(tasks.started, `${k * 50} ms in`).toHaveLength(k + 1);
    }
    await tasks.done;
    expect(tasks.order).toEqual(Array.from({ length: 10 }, (_, i) => i));
    expect(tasks.started.map((at) => at - origin)).toEqual(Array.from({ length: 10 }, (_, i) => i * 50));
    expect(tasks.started[9]! - tasks.started[0]!).toBe((9 * 1000) / 20);
  });

  it("holds a rate whose gaps are shorter than a timer can wait", async () => {
    const origin = clock.now();
    const tasks = feed(new Pacer(10_000, clock), 1000);
    await clock.advance(50);
    // Half of the 100 ms the 1,000 tasks take at 10,000 a second: 500, and up
    // to a millisecond's worth (10) more, since a slot under 1 ms away is not waited for.
    expect(tasks.started.length).toBeGreaterThanOrEqual(500);
    expect(tasks.started.length).toBeLessThanOrEqual(511);
    await clock.advance(60);
    await tasks.done;
    expect(tasks.started).toHaveLength(1000);
    expect(tasks.order).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    // No task started more than a millisecond before its slot.
    tasks.started.forEach((at, i) => expect(at - origin).toBeGreaterThanOrEqual(i / 10 - 1));
  });

  it("saves nothing up while idle", async () => {
    const pacer = new Pacer(10, clock);
    await feed(pacer, 1).done;
    await clock.advance(5000);
    const origin = clock.now();
    const later = feed(pacer, 3);
    await clock.advance(1000);
    await later.done;
    expect(later.started.map((at) => at - origin)).toEqual([0, 100, 200]);
  });

  it("drops the tasks not yet started when stopped", async () => {
    const pacer = new Pacer(1, clock);
    const results = Array.from({ length: 3 }, (_, i) => pacer.run(async () => i));
    await clock.advance(0);
    pacer.stop();
    expect(await results[0]).toBe(0);
    await expect(results[1]).rejects.toBeInstanceOf(PacerStoppedError);
    await expect(results[2]).rejects.toBeInstanceOf(PacerStoppedError);
    await expect(pacer.run(async () => "after")).rejects.toBeInstanceOf(PacerStoppedError);
    // The stopped task's timer is gone with it.
    expect(clock.pending).toBe(0);
  });

  it("runs on the real clock when none is given", async () => {
    // The default needs no injection; its timing is not asserted (test/processing.test.ts runs it end to end).
    const tasks = feed(new Pacer(1000), 3);
    await tasks.done;
    expect(tasks.order).toEqual([0, 1, 2]);
  });
});
