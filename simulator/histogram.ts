/**
 * A latency histogram with buckets 1 % wide (log-spaced from 1 µs), so a long
 * run at a high rate keeps a few hundred counters rather than every sample;
 * percentiles are read to within 1 %, the maximum exactly.
 */

/** The lower edge of the first bucket, in milliseconds. */
const FLOOR_MS = 0.001;
/** Each bucket's upper edge is this factor above its lower edge. */
const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);

/** Latencies in milliseconds; see the module comment. */
export class LatencyHistogram {
  private readonly buckets = new Map<number, number>();
  /** Samples recorded. */
  count = 0;
  /** The largest sample, exactly; 0 when empty. */
  max = 0;

  /** Records one latency of `ms` milliseconds. */
  record(ms: number): void {
    const index = ms <= FLOOR_MS ? 0 : Math.ceil(Math.log(ms / FLOOR_MS) / LOG_GROWTH);
    this.buckets.set(index, (this.buckets.get(index) ?? 0) + 1);
    this.count++;
    if (ms > this.max) this.max = ms;
  }

  /**
   * The latency at or below which a share `q` (0 to 1) of the samples lie:
   * the upper edge of the bucket holding that sample (never above the
   * maximum); 0 when empty.
   */
  percentile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (const index of [...this.buckets.keys()].sort((a, b) => a - b)) {
      seen += this.buckets.get(index)!;
      if (seen >= rank) return Math.min(this.max, FLOOR_MS * GROWTH ** index);
    }
    return this.max;
  }

  /** Adds `other`'s samples to this one's. */
  merge(other: LatencyHistogram): void {
    for (const [index, count] of other.buckets) this.buckets.set(index, (this.buckets.get(index) ?? 0) + count);
    this.count += other.count;
    this.max = Math.max(this.max, other.max);
  }
}
