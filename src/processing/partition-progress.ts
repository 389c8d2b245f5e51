/**
 * What one ingest partition has read and finished, for the processor: which
 * offsets are still being processed, the span backpressure bounds, the lag it
 * reports, and the commits of everything below the oldest unfinished record.
 */

/** A partition's finished records are committed within this long (or sooner, see {@link PartitionProgress}). */
export const COMMIT_INTERVAL_MS = 1000;

/**
 * Offsets of one partition that are read but not finished. Records are begun in
 * offset order, so the first pending offset is the lowest, and everything below
 * it can be committed.
 */
export class PartitionProgress {
  private readonly pending = new Set<number>();
  private next = -1;
  private committed = -1;
  /** Where finished records are counted from for `commitEvery`: the highest commit asked for, or the first offset read. */
  private commitBase = -1;
  /** The partition's high watermark as of the newest batch; undefined while not assigned here. */
  private highWatermark: number | undefined;
  private waiters: Array<{ limit: number; resolve: () => void }> = [];
  /** The commit to come: "soon" in the next turn, "later" within COMMIT_INTERVAL_MS. */
  private scheduled: { when: "soon" | "later"; cancel(): void } | undefined;

  /**
   * `commitEvery`: finished records that, once waiting for a commit, have it
   * made in the next turn rather than at the interval.
   */
  constructor(
    private readonly commit: (nextOffset: number) => Promise<void>,
    private readonly onCommitError: (error: unknown) => void,
    private readonly commitEvery: number,
  ) {}

  /** Offsets from the oldest unfinished record to the newest read (0 when none is unfinished). */
  get span(): number {
    const first = this.pending.values().next();
    return first.done ? 0 : this.next - first.value;
  }

  /** Offsets from the first unfinished one up to the high watermark: written, not yet processed here (see Processor.lag). */
  get lag(): number {
    if (this.highWatermark === undefined) return 0;
    const first = this.pending.values().next();
    return Math.max(0, this.highWatermark - (first.done ? this.next : first.value));
  }

  /** A batch from `firstOffset` arrived, read when the partition's high watermark was `highWatermark`. */
  arrived(firstOffset: number, highWatermark: number): void {
    // The highest seen: a new leader may briefly report an older one.
    this.highWatermark = Math.max(this.highWatermark ?? 0, highWatermark);
    if (this.commitBase < 0) this.commitBase = firstOffset;
    // With nothing unfinished, the batch's first record is the next to process:
    // this places a partition's first batch (and one after a reassignment or
    // a redelivery) before its records are begun. Nothing below it is pending,
    // so committing it (as Kafka would have) is safe.
    if (this.pending.size === 0) this.next = firstOffset;
  }

  /** The partition is no longer read here: it counts no lag. */
  forgetWatermark(): void {
    this.highWatermark = undefined;
  }

  /** The record at `offset` is being processed (records begin in offset order). */
  begin(offset: number): void {
    this.pending.add(offset);
    this.next = offset + 1;
  }

  /** The record at `offset` is finished: it has its result, or needs none. */
  end(offset: number): void {
    this.pending.delete(offset);
    this.waiters = this.waiters.filter((waiter) => {
      if (this.span >= waiter.limit) return true;
      waiter.resolve();
      return false;
    });
    this.scheduleCommit();
  }

  /** Resolves when the span is below `limit` (or on {@link release}). */
  below(limit: number): Promise<void> {
    if (this.span < limit) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ limit, resolve }));
  }

  /** Lets every waiter go, for a stop. */
  release(): void {
    for (const waiter of this.waiters) waiter.resolve();
    this.waiters = [];
  }

  /**
   * Commits within COMMIT_INTERVAL_MS, or in the next turn once `commitEvery`
   * finished records wait for it. On Kafka a commit is a request and a write
   * to the replicated offsets log: made every turn, it was one for every four
   * records or so under load (203 a second at 828 SendData calls a second),
   * each costing this process and the broker. A crash repeats no result for
   * it: recover() reads back past what waits uncommitted.
   */
  private scheduleCommit(): void {
    const soon = this.committable() - this.commitBase >= this.commitEvery;
    if (this.scheduled && (this.scheduled.when === "soon" || !soon)) return;
    this.scheduled?.cancel();
    const run = () => {
      this.scheduled = undefined;
      // A commit that fails (the broker is away) is covered by the next one.
      this.flush().catch((error: unknown) => this.onCommitError(error));
    };
    if (soon) {
      const immediate = setImmediate(run);
      this.scheduled = { when: "soon", cancel: () => clearImmediate(immediate) };
    } else {
      // Unref'd: a pending commit does not keep a stopping process alive (stop() flushes).
      const timer = setTimeout(run, COMMIT_INTERVAL_MS).unref();
      this.scheduled = { when: "later", cancel: () => clearTimeout(timer) };
    }
  }

  /** Everything below the oldest pending record: what a commit now would commit. */
  private committable(): number {
    const first = this.pending.values().next();
    return first.done ? this.next : first.value;
  }

  /** Commits everything below the oldest pending record now (and cancels the commit scheduled). */
  async flush(): Promise<void> {
    this.scheduled?.cancel();
    this.scheduled = undefined;
    const committable = this.committable();
    if (committable <= this.committed) return;
    this.commitBase = Math.max(this.commitBase, committable);
    await this.commit(committable);
    // Only once stored: a failed commit is tried again with the next one.
    this.committed = Math.max(this.committed, committable);
  }
}
