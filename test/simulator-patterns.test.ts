/**
 * The traffic simulator's pure parts (simulator/): each pattern's rate at
 * chosen times, that each pattern's running total is the integral of its
 * rate, that the open-loop schedule hands out the calls of any window within
 * one of that integral however it is polled, that calls over the in-flight cap
 * are counted as skipped (never queued), and the latency histogram's
 * percentiles.
 */
import { describe, expect, it } from "vitest";
import { LatencyHistogram } from "../simulator/histogram.js";
import { burst, makePattern, OpenLoopSchedule, type Pattern, steady, wave } from "../simulator/patterns.js";

/** The integral of `pattern.rate` from `a` to `b` by the midpoint rule (1 ms steps): independent of `total`. */
function integral(pattern: Pattern, a: number, b: number): number {
  const step = 0.001;
  let sum = 0;
  for (let t = a + step / 2; t < b; t += step) sum += pattern.rate(t) * Math.min(step, b - (t - step / 2));
  return sum;
}

describe("patterns", () => {
  it("steady offers its rate all the time", () => {
    const pattern = steady(20);
    expect([0, 0.5, 7, 1000].map(pattern.rate)).toEqual([20, 20, 20, 20]);
  });

  it("burst offers the full rate for the first second of each period, 10 % otherwise", () => {
    const pattern = burst(100, 5);
    expect([0, 0.5, 0.99, 1.01, 3, 4.99, 5, 5.5, 6.5, 10.2].map(pattern.rate)).toEqual([
      100, 100, 100, 10, 10, 10, 100, 100, 10, 100,
    ]);
    expect(makePattern("burst", 100).rate(4)).toBe(10); // default period 5 s
    expect(makePattern("burst", 100, 2).rate(2.5)).toBe(100);
  });

  it("wave rises from 0 to the rate at half a period and back", () => {
    const pattern = wave(40, 20);
    expect(pattern.rate(0)).toBe(0);
    expect(pattern.rate(5)).toBeCloseTo(20, 9);
    expect(pattern.rate(10)).toBeCloseTo(40, 9);
    expect(pattern.rate(15)).toBeCloseTo(20, 9);
    expect(pattern.rate(20)).toBeCloseTo(0, 9);
    expect(pattern.rate(30)).toBeCloseTo(40, 9);
    for (let t = 0; t < 40; t += 0.37) {
      expect(pattern.rate(t)).toBeGreaterThanOrEqual(0);
      expect(pattern.rate(t)).toBeLessThanOrEqual(40);
    }
  });

  it.each([
    ["steady", steady(37)],
    ["burst", burst(200, 5)],
    ["burst, 2 s period", burst(50, 2)],
    ["wave", wave(90, 20)],
    ["wave, 3 s period", wave(10, 3)],
  ])("%s: the running total is the integral of the rate", (_, pattern) => {
    for (const [a, b] of [
      [0, 1],
      [0, 7.3],
      [2.2, 2.9],
      [4.5, 13],
    ] as const) {
      expect(pattern.total(b) - pattern.total(a)).toBeCloseTo(integral(pattern, a, b), 2);
    }
  });
});

describe("open-loop schedule", () => {
  /** Polls `schedule` at the times `times` with nothing in flight; returns when each started call was handed out. */
  function poll(schedule: OpenLoopSchedule, times: number[]): number[] {
    const startedAt: number[] = [];
    for (const t of times) {
      const due = schedule.due(t, 0);
      expect(due.skipped).toBe(0);
      for (let i = 0; i < due.start; i++) startedAt.push(t);
    }
    return startedAt;
  }

  it.each([
    ["steady", steady(60)],
    ["burst", burst(300, 5)],
    ["wave", wave(120, 4)],
  ])("%s: the calls handed out in any window are its integral within one", (_, pattern) => {
    const windows = [
      [0, 12],
      [0, 1],
      [1, 2],
      [3.3, 5.1],
      [5, 10],
      [11.5, 12],
    ] as const;
    // Irregular polling, as timers fire (steps from 0.3 to 23 ms), and at the windows' edges.
    const times: number[] = windows.flat();
    for (let t = 0, i = 0; t <= 12; i++) {
      times.push(t);
      t += 0.0003 + ((i * 7919) % 23) / 1000;
    }
    const startedAt = poll(
      new OpenLoopSchedule(pattern, Infinity),
      [...new Set(times)].sort((x, y) => x - y),
    );
    for (const [a, b] of windows) {
      const handedOut = startedAt.filter((t) => t > a && t <= b).length;
      expect(Math.abs(handedOut - integral(pattern, a, b)), `window ${a}-${b}`).toBeLessThanOrEqual(1);
    }
    // Never early: by any moment, at most the calls due by then.
    startedAt.forEach((t, i) => expect(i + 1).toBeLessThanOrEqual(pattern.total(t) + 1e-9));
  });

  it("hands each call out once, however often it is asked", () => {
    const schedule = new OpenLoopSchedule(steady(10), 100);
    expect(schedule.due(1, 0)).toEqual({ start: 10, skipped: 0 });
    expect(schedule.due(1, 0)).toEqual({ start: 0, skipped: 0 });
    expect(schedule.due(1.05, 0)).toEqual({ start: 0, skipped: 0 });
    expect(schedule.due(1.1, 0)).toEqual({ start: 1, skipped: 0 });
  });

  it("skips the calls due beyond the in-flight cap instead of queueing them", () => {
    const schedule = new OpenLoopSchedule(steady(1000), 10);
    expect(schedule.due(0.05, 0)).toEqual({ start: 10, skipped: 40 });
    // Ten still in flight: every call due is skipped.
    expect(schedule.due(0.06, 10)).toEqual({ start: 0, skipped: 10 });
    // Four of them ended: room for six.
    expect(schedule.due(0.08, 4)).toEqual({ start: 6, skipped: 14 });
    // Skipped calls are not sent later: only the newly due ones are.
    expect(schedule.due(0.081, 0)).toEqual({ start: 1, skipped: 0 });
  });

  it("says when to look again: when the next call is due, within the longest wait", () => {
    const schedule = new OpenLoopSchedule(steady(20), 100);
    expect(schedule.nextDueIn(0, 1)).toBeCloseTo(0.05, 9);
    expect(schedule.nextDueIn(0, 0.02)).toBe(0.02);
    schedule.due(0.06, 0); // one call handed out; the second is due at 0.1
    expect(schedule.nextDueIn(0.06, 1)).toBeCloseTo(0.04, 9);
    // A wave starts at rate 0: nothing is due soon, so the longest wait.
    expect(new OpenLoopSchedule(wave(10), 100).nextDueIn(0, 0.02)).toBe(0.02);
  });
});

describe("latency histogram", () => {
  it("reads percentiles within 1 % and the maximum exactly", () => {
    const histogram = new LatencyHistogram();
    for (let ms = 1; ms <= 1000; ms++) histogram.record(ms);
    expect(histogram.count).toBe(1000);
    expect(histogram.max).toBe(1000);
    for (const [q, expected] of [
      [0.5, 500],
      [0.95, 950],
      [0.99, 990],
    ] as const) {
      const value = histogram.percentile(q);
      expect(value).toBeGreaterThanOrEqual(expected);
      expect(value).toBeLessThanOrEqual(expected * 1.01);
    }
    expect(histogram.percentile(1)).toBe(1000);
    expect(new LatencyHistogram().percentile(0.5)).toBe(0);
  });

  it("merges the samples of another", () => {
    const fast = new LatencyHistogram();
    const slow = new LatencyHistogram();
    for (let i = 0; i < 90; i++) fast.record(2);
    for (let i = 0; i < 10; i++) slow.record(300);
    fast.merge(slow);
    expect(fast.count).toBe(100);
    expect(fast.percentile(0.9)).toBeLessThanOrEqual(2.02);
    expect(fast.percentile(0.91)).toBeGreaterThanOrEqual(300);
    expect(fast.max).toBe(300);
  });
});
