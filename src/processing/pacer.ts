/**
 * A stream's processing throttle: runs tasks one at a time, in the order they
 * were given, starting at most `ratePerSecond` of them a second.
 *
 * Each task has a start slot 1/rate after the previous task's slot (or now,
 * if that slot has passed: an idle pacer saves nothing up). A task waits for
 * its slot only when the slot is at least a millisecond away; a shorter gap
 * than a timer can wait is taken at once, and since slots advance by exactly
 * 1/rate whatever the timers do, the rate holds on average at any rate.
 * (bottleneck, used here first, spaced jobs with a timer each and managed
 * about 365 a second here whatever rate above that it was given.)
 */

/**
 * The clock and timers a {@link Pacer} runs on. The real ones by default
 * ({@link REAL_CLOCK}); tests inject a manual clock so that a throttle's slots
 * are proven on a clock they step, not on how long a loaded machine took
 * (test/pacer.test.ts), and so that a throttled stream can be held at a known
 * record (test/processor.test.ts, test/consumer-lag.test.ts).
 */
export interface PacerClock {
  /** Milliseconds on a monotonic clock (only differences matter). */
  now(): number;
  /** Calls `callback` once, `ms` milliseconds from now; returns a handle for {@link clearTimeout}. */
  setTimeout(callback: () => void, ms: number): unknown;
  /** Cancels a callback {@link setTimeout} set that has not run yet. */
  clearTimeout(handle: unknown): void;
}

/** The process's own clock and timers: `performance.now()`, `setTimeout`, `clearTimeout`. */
export const REAL_CLOCK: PacerClock = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** Thrown to the tasks still waiting when the pacer is stopped. */
export class PacerStoppedError extends Error {
  constructor() {
    super("the pacer was stopped before this task started");
    this.name = "PacerStoppedError";
  }
}

/** See the module comment. */
export class Pacer {
  private tail: Promise<unknown> = Promise.resolve();
  private nextSlot = 0;
  private stopped = false;
  private readonly waiting = new Set<() => void>();

  /** `clock`: where slots are read and waited for (see {@link PacerClock}); the real clock unless a test injects one. */
  constructor(
    private readonly ratePerSecond: number,
    private readonly clock: PacerClock = REAL_CLOCK,
  ) {}

  /** Runs `task` in its turn and slot; rejects with {@link PacerStoppedError} if stopped first. */
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(() => this.untilSlot()).then(task);
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Drops the tasks not yet started; a task already running finishes. */
  stop(): void {
    this.stopped = true;
    for (const wake of this.waiting) wake();
  }

  private untilSlot(): Promise<void> | void {
    if (this.stopped) throw new PacerStoppedError();
    const now = this.clock.now();
    const slot = Math.max(this.nextSlot, now);
    this.nextSlot = slot + 1000 / this.ratePerSecond;
    if (slot - now < 1) return;
    return new Promise<void>((resolve, reject) => {
      const wake = () => {
        this.clock.clearTimeout(timer);
        this.waiting.delete(wake);
        if (this.stopped) reject(new PacerStoppedError());
        else resolve();
      };
      const timer = this.clock.setTimeout(wake, slot - now);
      this.waiting.add(wake);
    });
  }
}
