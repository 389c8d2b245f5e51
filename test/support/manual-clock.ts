/**
 * A clock that moves only when a test moves it, for the processing throttle
 * (src/processing/pacer.ts, PacerClock; the processor's `throttleClock`): a
 * throttled stream then starts a record only when the test has advanced the
 * clock to its slot, so a test can prove the pacing, or hold a stream at a
 * known record, without reading the wall clock or hoping to look in time.
 * Nothing else in the process is faked: brokers, sockets and their timers run
 * as usual.
 */
import type { PacerClock } from "../../src/processing/pacer.js";

interface Timer {
  at: number;
  callback: () => void;
}

/** Lets every task queued so far run (promise reactions, and the turn's I/O callbacks). */
export const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** See the module comment. */
export class ManualClock implements PacerClock {
  private current: number;
  private nextId = 1;
  /** Pending timers by handle; handles grow, so among timers due at once the earlier set runs first. */
  private readonly timers = new Map<number, Timer>();

  constructor(start = 0) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(callback: () => void, ms: number): number {
    const id = this.nextId++;
    this.timers.set(id, { at: this.current + Math.max(0, ms), callback });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Timers set and not yet run nor cleared. */
  get pending(): number {
    return this.timers.size;
  }

  /**
   * Moves the clock `ms` forward, running each timer that falls due on the
   * way at its own time (the clock reads its due time while it runs), in due
   * order; after each, and first of all, it lets the work queued so far run
   * ({@link nextTurn}), so a timer set by that work in the meantime runs too
   * if it falls due. Resolves at `now() + ms`, after a last turn.
   */
  async advance(ms: number): Promise<void> {
    const target = this.current + ms;
    for (;;) {
      await nextTurn();
      const due = this.firstDue(target);
      if (!due) break;
      const [id, timer] = due;
      this.timers.delete(id);
      this.current = Math.max(this.current, timer.at);
      timer.callback();
    }
    this.current = target;
    await nextTurn();
  }

  private firstDue(target: number): [number, Timer] | undefined {
    let first: [number, Timer] | undefined;
    for (const entry of this.timers) {
      if (entry[1].at <= target && (!first || entry[1].at < first[1].at)) first = entry;
    }
    return first;
  }
}
