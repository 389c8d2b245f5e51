/**
 * The fanout's memory of recent results: per stream, a window of its latest
 * results and its live watchers. A window holds at most `perStream` results,
 * all windows together at most `total` (the least recently updated are
 * emptied first), and each knows from which offset it is complete, so a new
 * watcher reads back from the broker only what the window does not hold.
 */
import type { StreamKey } from "../streams/stream-key.js";
import type { ResultEntry } from "./result-entry.js";
import type { Watcher } from "./watcher.js";

/** A stream's recent results and its live watchers. */
export interface StreamWindow {
  readonly partition: number;
  entries: ResultEntry[];
  /** Every result of the stream at or past this offset (and read so far) is in `entries`. */
  completeFrom: number;
  readonly watchers: Set<Watcher>;
}

/** Every stream's window, bounded per stream and in all. */
export class StreamWindows {
  /** Windows in least-recently-updated order, for eviction. */
  private readonly windows = new Map<StreamKey, StreamWindow>();
  /**
   * Per partition, the offset from which every result of a stream that has no
   * window has passed through: where reading started, raised past the entries
   * of each window dropped. A new window is complete from there, so a new
   * watcher of a young stream reads nothing back from the broker (only other
   * streams' results lie between).
   */
  private readonly unwindowedFrom: number[] = [];
  private held = 0;

  /** `perStream`: results kept per stream (FANOUT_WINDOW); `total`: in all windows (FANOUT_CACHE_RESULTS). */
  constructor(
    private readonly perStream: number,
    private readonly total: number,
  ) {}

  /** Results held in all windows. */
  get size(): number {
    return this.held;
  }

  /** Reading of `partition` starts at `offset`: a window made later is complete from there. */
  startAt(partition: number, offset: number): void {
    this.unwindowedFrom[partition] = offset;
  }

  /** The window of a stream, made empty (complete from what is read next) when missing; now the most recently used. */
  of(key: StreamKey, partition: number): StreamWindow {
    let window = this.windows.get(key);
    if (window) {
      // Re-inserting keeps the map in least-recently-used order.
      this.windows.delete(key);
    } else {
      window = { partition, entries: [], completeFrom: this.unwindowedFrom[partition]!, watchers: new Set() };
    }
    this.windows.set(key, window);
    return window;
  }

  /** Adds a result read live to its stream's window, dropping the oldest past `perStream`; returns the window. */
  append(key: StreamKey, partition: number, entry: ResultEntry): StreamWindow {
    const window = this.of(key, partition);
    window.entries.push(entry);
    this.held++;
    if (window.entries.length > this.perStream) {
      window.completeFrom = window.entries.shift()!.offset + 1;
      this.held--;
    }
    return window;
  }

  /** Empties a removed stream's window and returns it (its watchers are the caller's to end); undefined if it has none. */
  clear(key: StreamKey): StreamWindow | undefined {
    const window = this.windows.get(key);
    if (!window) return undefined;
    // Emptied as eviction empties a window: complete again only from past what it held.
    const last = window.entries[window.entries.length - 1];
    if (last) window.completeFrom = last.offset + 1;
    this.held -= window.entries.length;
    window.entries = [];
    return window;
  }

  /** Empties the least recently updated windows while more than `total` results are held. */
  evict(): void {
    for (const [key, window] of this.windows) {
      if (this.held <= this.total) return;
      this.held -= window.entries.length;
      const last = window.entries[window.entries.length - 1];
      if (window.watchers.size > 0) {
        // Watchers hold the window object for the live feed; keep it, empty.
        if (last) window.completeFrom = last.offset + 1;
        window.entries = [];
      } else {
        this.windows.delete(key);
        // Its results up to here are no longer in memory: a later window starts after them.
        const through = last ? last.offset + 1 : window.completeFrom;
        this.unwindowedFrom[window.partition] = Math.max(this.unwindowedFrom[window.partition]!, through);
      }
    }
  }
}
