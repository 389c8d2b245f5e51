/**
 * The processing throttle (src/processing/pacer.ts), on a fake clock: tasks run one at a
 * time in the order given, each starting at its slot (1/rate after the
 * previous one's), never more than a millisecond early; at a rate whose gaps are shorter than a timer can
 * wait it still starts exactly `rate` tasks a second; an idle pacer saves
 * nothing up; a stop drops the tasks not yet started.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Pacer, PacerStoppedError } from "../src/processing/pacer.js";

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["performance", "setTimeout", "clearTimeout"] });
});
afterEach(() => {
  vi.useRealTimers();
});

/** Gives `pacer` `count` tasks that record when each started and ended; resolves when all settled. */
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
        started.push(performance.now());
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
    const origin = performance.now();
    const tasks = feed(new Pacer(10), 5);
    await vi.advanceTimersByTimeAsync(1000);
    await tasks.done;
    expect(tasks.order).toEqual([0, 1, 2, 3, 4]);
    expect(tasks.overlapped()).toBe(false);
    expect(tasks.started.map((at) => Math.round(at - origin))).toEqual([0, 100, 200, 300, 400]);
  });

  it("holds a rate whose gaps are shorter than a timer can wait", async () => {
    const origin = performance.now();
    const tasks = feed(new Pacer(10_000), 1000);
    await vi.advanceTimersByTimeAsync(50);
    // Half of the 100 ms the 1,000 tasks take at 10,000 a second: 500, and up
    // to a millisecond's worth (10) more, since a slot under 1 ms away is not waited for.
    expect(tasks.started.length).toBeGreaterThanOrEqual(500);
    expect(tasks.started.length).toBeLessThanOrEqual(511);
    await vi.advanceTimersByTimeAsync(60);
    await tasks.done;
    expect(tasks.started).toHaveLength(1000);
    expect(tasks.order).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    // No task started more than a millisecond before its slot.
    tasks.started.forEach((at, i) => expect(at - origin).toBeGreaterThanOrEqual(i / 10 - 1));
  });

  it("saves nothing up while idle", async () => {
    const pacer = new Pacer(10);
    await feed(pacer, 1).done;
    await vi.advanceTimersByTimeAsync(5000);
    const origin = performance.now();
    const later = feed(pacer, 3);
    await vi.advanceTimersByTimeAsync(1000);
    await later.done;
    expect(later.started.map((at) => Math.round(at - origin))).toEqual([0, 100, 200]);
  });

  it("drops the tasks not yet started when stopped", async () => {
    const pacer = new Pacer(1);
    const results = Array.from({ length: 3 }, (_, i) => pacer.run(async () => i));
    await vi.advanceTimersByTimeAsync(0);
    pacer.stop();
    expect(await results[0]).toBe(0);
    await expect(results[1]).rejects.toBeInstanceOf(PacerStoppedError);
    await expect(results[2]).rejects.toBeInstanceOf(PacerStoppedError);
    await expect(pacer.run(async () => "after")).rejects.toBeInstanceOf(PacerStoppedError);
  });
});
