/**
 * Token buckets in this process. A bucket is its level and the moment that
 * level was computed; it refills continuously (rps tokens a second, up to the
 * burst) and is brought up to date whenever it is read, so no timer runs per
 * bucket. Checking for a token and taking it happen in one synchronous step,
 * which JavaScript's single thread makes atomic: concurrent calls can never
 * both take the last token.
 *
 * bottleneck was used here first, as a limiter whose reservoir was the bucket.
 * It is a job scheduler: each token cost a scheduled job behind its submit
 * lock, 3.7-6.8 ms apiece on this project's 2-core machine, so any configured
 * limit capped an instance at a few hundred calls per second. (The
 * processor's throttle is streamgate's own too: src/processing/pacer.ts.)
 */
import type { BucketConfig } from "../../config/config.js";
import type { BucketRef, BucketStore, Buckets } from "./limits.js";

/** The least time an idle bucket is kept, so a client's bucket is not re-made on every call. */
const MIN_IDLE_MS = 5 * 60_000;

/** How often buckets that are full again and idle are forgotten. */
const SWEEP_INTERVAL_MS = 60_000;

/** A monotonic clock in milliseconds: refills must not follow wall-clock jumps. */
const now = () => performance.now();

/** One bucket: `tokens` as of `at` (ms on {@link now}'s clock). */
interface Bucket {
  tokens: number;
  at: number;
  rule: BucketConfig;
}

/** Refills `bucket` up to `time` and returns its level. */
function refill(bucket: Bucket, time: number): number {
  const { rps, burst } = bucket.rule;
  bucket.tokens = Math.min(burst, bucket.tokens + ((time - bucket.at) * rps) / 1000);
  bucket.at = time;
  return bucket.tokens;
}

/** Milliseconds until a bucket at `level` holds one whole token. */
function msUntilToken(level: number, rule: BucketConfig): number {
  return Math.max(1, Math.ceil(((1 - level) * 1000) / rule.rps));
}

/** The buckets of one generation, created full on first use. */
class LocalBuckets implements Buckets {
  private readonly buckets = new Map<string, Bucket>();
  private readonly sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS).unref();

  /** `maxBuckets`: buckets kept at most; making one more forgets the oldest made. */
  constructor(private readonly maxBuckets = Infinity) {}

  private bucket(ref: BucketRef, time: number): Bucket {
    let bucket = this.buckets.get(ref.key);
    if (!bucket) {
      if (this.buckets.size >= this.maxBuckets) this.buckets.delete(this.buckets.keys().next().value!);
      bucket = { tokens: ref.bucket.burst, at: time, rule: ref.bucket };
      this.buckets.set(ref.key, bucket);
    }
    return bucket;
  }

  async take(refs: readonly BucketRef[]): Promise<{ refusedAt: number; retryMs: number }> {
    const time = now();
    for (const [index, ref] of refs.entries()) {
      const bucket = this.bucket(ref, time);
      const level = refill(bucket, time);
      if (level < 1) return { refusedAt: index, retryMs: msUntilToken(level, ref.bucket) };
      bucket.tokens = level - 1;
    }
    return { refusedAt: -1, retryMs: 0 };
  }

  async level(ref: BucketRef): Promise<number> {
    const time = now();
    return refill(this.bucket(ref, time), time);
  }

  /** Forgets buckets idle long enough to be full again: a new one would start the same. */
  private sweep(): void {
    const time = now();
    for (const [key, bucket] of this.buckets) {
      const idle = time - bucket.at;
      const full = bucket.tokens + (idle * bucket.rule.rps) / 1000 >= bucket.rule.burst;
      if (idle >= MIN_IDLE_MS && full) this.buckets.delete(key);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.buckets.clear();
  }
}

/** Buckets in this process: each instance has its own budget. */
export const localBuckets: BucketStore = () => new LocalBuckets();

/**
 * Buckets in this process, at most `maxBuckets` of them: for keys anyone can
 * make up (peer addresses), so that their memory is bounded however many
 * come. A bucket forgotten early comes back full, which only a peer that has
 * been idle while `maxBuckets` newer ones were made can gain from.
 */
export function boundedLocalBuckets(maxBuckets: number): Buckets {
  return new LocalBuckets(maxBuckets);
}
