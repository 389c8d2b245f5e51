/**
 * Waits that end early and retries (src/common/waits.ts, src/common/backoff.ts),
 * on a fake clock: a wait ends on its wake-up, an abort or its timeout,
 * whichever comes first, and at once when already aborted; it withdraws its
 * wake-up when it ends any other way than by it; it leaves no abort listener
 * and no timer behind, and a wake-up after its end does nothing; a delay is
 * such a wait; backoff doubles from its first wait up to its cap; a retry
 * repeats a failing operation with those waits, telling of each retry, until
 * it succeeds, its attempts are used up or an error says to give up.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { backoffMs, retry } from "../src/common/backoff.js";
import { delay, waitForWake } from "../src/common/waits.js";

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

/** Tracks whether `promise` has settled. */
function track(promise: Promise<unknown>) {
  const state = { settled: false };
  void promise.then(() => {
    state.settled = true;
  });
  return state;
}

/** A wait armed through a recorder: its wake-up, and how often it was withdrawn. */
function armed(options: Parameters<typeof waitForWake>[1] = {}) {
  let wake: (() => void) | undefined;
  const withdraw = vi.fn();
  const arm = vi.fn((given: () => void) => {
    wake = given;
    return withdraw;
  });
  const done = waitForWake(arm, options);
  return { done, state: track(done), wake: () => wake?.(), withdraw, arm };
}

/** An AbortController whose signal's abort listeners are counted. */
function countedSignal() {
  const controller = new AbortController();
  const added = vi.spyOn(controller.signal, "addEventListener");
  const removed = vi.spyOn(controller.signal, "removeEventListener");
  /** Listeners added and not removed since. */
  const listening = () => added.mock.calls.length - removed.mock.calls.length;
  return { controller, signal: controller.signal, added, removed, listening };
}

describe("waitForWake", () => {
  it("ends on its wake-up, without withdrawing it, leaving no listener or timer", async () => {
    const { signal, listening, added, removed } = countedSignal();
    const wait = armed({ signal, timeoutMs: 1000 });
    await vi.advanceTimersByTimeAsync(999);
    expect(wait.state.settled).toBe(false);
    expect(listening()).toBe(1);
    wait.wake();
    await wait.done;
    expect(wait.withdraw).not.toHaveBeenCalled();
    expect(listening()).toBe(0);
    expect(removed.mock.calls[0]!.slice(0, 2)).toEqual(added.mock.calls[0]!.slice(0, 2));
    expect(vi.getTimerCount()).toBe(0);
  });

  it("ends on an abort, withdrawing its wake-up and clearing its timer", async () => {
    const { controller, signal, listening } = countedSignal();
    const wait = armed({ signal, timeoutMs: 1000 });
    await vi.advanceTimersByTimeAsync(10);
    expect(wait.state.settled).toBe(false);
    controller.abort();
    await wait.done;
    expect(wait.withdraw).toHaveBeenCalledTimes(1);
    expect(listening()).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("ends on its timeout, withdrawing its wake-up and removing its abort listener", async () => {
    const { signal, listening } = countedSignal();
    const wait = armed({ signal, timeoutMs: 100 });
    await vi.advanceTimersByTimeAsync(99);
    expect(wait.state.settled).toBe(false);
    expect(wait.withdraw).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(wait.state.settled).toBe(true);
    expect(wait.withdraw).toHaveBeenCalledTimes(1);
    expect(listening()).toBe(0);
  });

  it("waits for its wake-up alone when given neither signal nor timeout", async () => {
    const wait = armed();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(wait.state.settled).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
    wait.wake();
    await wait.done;
    expect(wait.withdraw).not.toHaveBeenCalled();
  });

  it("ends at once for a signal already aborted, registering nothing", async () => {
    const { controller, signal, added } = countedSignal();
    controller.abort();
    const wait = armed({ signal, timeoutMs: 1000 });
    await wait.done;
    expect(wait.arm).not.toHaveBeenCalled();
    expect(added).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);
  });

  it("ends at once, registering nothing else, when woken while it arms", async () => {
    const { signal, added } = countedSignal();
    const withdraw = vi.fn();
    await waitForWake(
      (wake) => {
        wake();
        return withdraw;
      },
      { signal, timeoutMs: 1000 },
    );
    expect(withdraw).not.toHaveBeenCalled();
    expect(added).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);
  });

  it("ignores a wake-up after it ended, and an abort after it was woken", async () => {
    const { controller, signal } = countedSignal();
    const timedOut = armed({ signal, timeoutMs: 10 });
    await vi.advanceTimersByTimeAsync(10);
    await timedOut.done;
    timedOut.wake();
    timedOut.wake();
    expect(timedOut.withdraw).toHaveBeenCalledTimes(1);

    const woken = armed({ signal });
    woken.wake();
    await woken.done;
    controller.abort();
    expect(woken.withdraw).not.toHaveBeenCalled();
  });

  it("lets its timer hold the process open unless keepAlive is false", async () => {
    const setTimer = vi.spyOn(globalThis, "setTimeout");
    armed({ timeoutMs: 100 });
    armed({ timeoutMs: 100, keepAlive: false });
    const timers = setTimer.mock.results.map((made) => made.value as NodeJS.Timeout);
    expect(timers.map((timer) => timer.hasRef())).toEqual([true, false]);
    await vi.advanceTimersByTimeAsync(100);
  });
});

describe("delay", () => {
  it("ends after its time", async () => {
    const state = track(delay(500));
    await vi.advanceTimersByTimeAsync(499);
    expect(state.settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(state.settled).toBe(true);
  });

  it("ends as soon as its signal aborts, leaving no timer or listener", async () => {
    const { controller, signal, listening } = countedSignal();
    const waiting = delay(10_000, { signal });
    const state = track(waiting);
    await vi.advanceTimersByTimeAsync(100);
    expect(state.settled).toBe(false);
    controller.abort();
    await waiting;
    expect(vi.getTimerCount()).toBe(0);
    expect(listening()).toBe(0);
  });
});

describe("backoffMs", () => {
  it("waits `firstMs` before the first retry, doubling for each next one, at most `maxMs`", () => {
    const backoff = { firstMs: 100, maxMs: 1000 };
    expect([1, 2, 3, 4, 5, 6, 20].map((retryNumber) => backoffMs(retryNumber, backoff))).toEqual([
      100, 200, 400, 800, 1000, 1000, 1000,
    ]);
    expect(backoffMs(0, backoff)).toBe(100);
  });

  it("is a fixed pause when `firstMs` equals `maxMs`", () => {
    expect([1, 2, 10].map((retryNumber) => backoffMs(retryNumber, { firstMs: 250, maxMs: 250 }))).toEqual([
      250, 250, 250,
    ]);
  });
});

describe("retry", () => {
  it("repeats a failing operation after each backoff until it succeeds, telling of each retry", async () => {
    const failures = [new Error("one"), new Error("two")];
    const attempts: Array<{ attempt: number; at: number }> = [];
    const onRetry = vi.fn();
    const origin = Date.now();
    const outcome = retry(
      async (attempt) => {
        attempts.push({ attempt, at: Date.now() - origin });
        const failure = failures.shift();
        if (failure) throw failure;
        return "stored";
      },
      { firstMs: 100, maxMs: 1000, onRetry },
    );
    const state = track(outcome);
    await vi.advanceTimersByTimeAsync(299);
    expect(state.settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await outcome).toBe("stored");
    expect(attempts).toEqual([
      { attempt: 1, at: 0 },
      { attempt: 2, at: 100 },
      { attempt: 3, at: 300 },
    ]);
    expect(onRetry.mock.calls.map(([error, retryNumber]) => [(error as Error).message, retryNumber])).toEqual([
      ["one", 1],
      ["two", 2],
    ]);
  });

  it("throws the last error once its attempts are used up", async () => {
    let calls = 0;
    const onRetry = vi.fn();
    const outcome = retry(
      async () => {
        calls++;
        throw new Error(`failure ${calls}`);
      },
      { firstMs: 10, maxMs: 10, attempts: 3, onRetry },
    );
    const rejected = expect(outcome).rejects.toThrow("failure 3");
    await vi.advanceTimersByTimeAsync(1000);
    await rejected;
    expect(calls).toBe(3);
    expect(onRetry).toHaveBeenCalledTimes(2);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("throws at once, with no wait and no retry, when `giveUp` says so", async () => {
    const fatal = new Error("fatal");
    const onRetry = vi.fn();
    let calls = 0;
    const outcome = retry(
      async () => {
        calls++;
        throw calls === 1 ? new Error("transient") : fatal;
      },
      { firstMs: 50, maxMs: 50, giveUp: (error) => error === fatal, onRetry },
    );
    const rejected = expect(outcome).rejects.toBe(fatal);
    await vi.advanceTimersByTimeAsync(50);
    await rejected;
    expect(calls).toBe(2);
    expect(onRetry).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(0);
  });
});
