/**
 * One WatchResults call as the fanout sees it: a bounded buffer of live
 * results, the cursor to resume from, and why it must end, if it must.
 */

import { streamRemoved, watchInterrupted } from "../common/domain-error.js";
import { waitForWake } from "../common/waits.js";
import type { ResultEntry } from "./result-entry.js";

/** Why a watcher ends early: it fell behind its buffer, the server is stopping, or its stream was removed. */
export type Interruption = "overflow" | "shutdown" | "removed";

/** One WatchResults call's live buffer and resume position. */
export class Watcher {
  queue: ResultEntry[] = [];
  /** Why the watcher ends at its next step, once something ended it. */
  interruption: Interruption | undefined;
  private wake: (() => void) | undefined;
  /** Room for the window's snapshot on top of the live buffer. */
  private snapshot = 0;

  constructor(
    private readonly limit: number,
    /** The cursor to resume from: the last result passed, else the request's own. */
    private cursor: string,
    /** The stream's id, as the client named it. */
    private readonly streamId: string,
    /**
     * Told when the watcher is interrupted, at once: a caller waiting for its
     * client to read (a stalled socket) learns that the watch is over without
     * asking for the next result.
     */
    private readonly onInterrupt?: (reason: Interruption) => void,
  ) {}

  /** Records that the watcher has passed `entry` (delivered it or filtered it out). */
  passed(entry: ResultEntry): void {
    this.cursor = entry.cursor;
  }

  /** Adds the window's snapshot, which is at most a window long and does not count as falling behind. */
  enqueue(entries: ResultEntry[]): void {
    this.snapshot = entries.length;
    this.queue.push(...entries);
  }

  /** The next buffered result; taking a snapshot entry gives its room back. */
  take(): ResultEntry | undefined {
    const entry = this.queue.shift();
    if (entry && this.snapshot > 0) this.snapshot--;
    return entry;
  }

  /** Adds a live result, or ends the watcher when it is too far behind. */
  push(entry: ResultEntry): void {
    if (this.interruption) return;
    if (this.queue.length >= this.limit + this.snapshot) {
      this.interrupt("overflow");
      return;
    }
    this.queue.push(entry);
    this.notify();
  }

  /** Drops what the watcher buffered, for good: its client has gone, or its call ended. */
  drop(): void {
    this.queue = [];
    this.notify();
  }

  /** Ends the watcher at its next step; what it buffered is dropped, the cursor says where to resume. */
  interrupt(reason: Interruption): void {
    const first = this.interruption === undefined;
    this.interruption ??= reason;
    this.queue = [];
    this.notify();
    if (first) this.onInterrupt?.(reason);
  }

  /** The error the watch ends with once interrupted. */
  error(): Error {
    if (this.interruption === "removed") return streamRemoved(this.streamId);
    return watchInterrupted(this.interruption!, this.cursor, this.limit);
  }

  /** Resolves on the next push, interruption or abort. */
  wait(signal: AbortSignal): Promise<void> {
    return waitForWake(
      (wake) => {
        this.wake = wake;
        return () => {
          this.wake = undefined;
        };
      },
      { signal },
    );
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
