/**
 * Token buckets in this process, made of bottleneck limiters: a bucket is a
 * limiter whose `reservoir` is the tokens left (at most the burst), refilled by
 * `reservoirIncrease*`.
 *
 * A token is taken by scheduling an empty job with `highWater: 0` and the
 * OVERFLOW strategy: bottleneck checks the reservoir and takes the token in one
 * step (its submit lock serialises submissions, and the job is registered,
 * decrementing the reservoir, before the next is looked at), and a job that
 * cannot run at once is dropped rather than queued, so a refusal is immediate
 * and nothing waits. check() followed by incrementReservoir(-1) would be two
 * steps: concurrent calls could both see the last token and both take it.
 */
import Bottleneck from "bottleneck";
import type { BucketConfig } from "./config.js";
import type { BucketRef, BucketStore, Buckets } from "./limits.js";

/** bottleneck's local refill heartbeat: a bucket gains tokens on its ticks only. */
const HEARTBEAT_MS = 250;

/** How much earlier than a whole heartbeat a tick may see the clock and still refill. */
const TICK_SLACK_MS = 25;

/** The least time an idle bucket is kept (bottleneck's Group default). */
const MIN_IDLE_MS = 5 * 60_000;

/**
 * The limiter options of a bucket. The refill is spread over the heartbeat's
 * ticks (rps/4 tokens every 250 ms), because bottleneck adds the increase at
 * most once per tick: an interval shorter than a tick would refill too slowly,
 * and one that is not a multiple of it would refill unevenly. The interval is
 * set a little under the tick so that a tick seeing Date.now a millisecond
 * short of 250 ms after the last (timers and Date.now round differently)
 * still refills instead of skipping a tick.
 */
function bucketOptions(bucket: BucketConfig): Bottleneck.ConstructorOptions {
  return {
    reservoir: bucket.burst,
    reservoirIncreaseInterval: HEARTBEAT_MS - TICK_SLACK_MS,
    reservoirIncreaseAmount: (bucket.rps * HEARTBEAT_MS) / 1000,
    reservoirIncreaseMaximum: bucket.burst,
    highWater: 0,
    strategy: Bottleneck.strategy.OVERFLOW,
  };
}

/** Takes one token from `limiter`; false when the bucket is empty. */
async function takeToken(limiter: Bottleneck): Promise<boolean> {
  try {
    await limiter.schedule(() => Promise.resolve());
    return true;
  } catch (error) {
    // A dropped job: the bucket had no token.
    if (error instanceof Bottleneck.BottleneckError) return false;
    throw error;
  }
}

/**
 * How long until a bucket holding `level` tokens holds one whole token again:
 * the ticks needed for the missing fraction, each at most a heartbeat away. An
 * upper bound, since the next tick may come sooner.
 */
function msUntilToken(level: number, bucket: BucketConfig): number {
  const perTick = (bucket.rps * HEARTBEAT_MS) / 1000;
  return Math.max(1, Math.ceil((1 - level) / perTick)) * HEARTBEAT_MS;
}

/**
 * The buckets of one generation. Every bucket of a generation with the same
 * rule shares a bottleneck Group, which drops a bucket idle for longer than it
 * takes to refill completely: forgetting it then changes nothing but memory.
 */
class LocalBuckets implements Buckets {
  private readonly groups = new Map<string, Bottleneck.Group>();

  private limiter(ref: BucketRef): Bottleneck {
    const rule = `${ref.bucket.rps}/${ref.bucket.burst}`;
    let group = this.groups.get(rule);
    if (!group) {
      const refillMs = (ref.bucket.burst / ref.bucket.rps) * 1000;
      group = new Bottleneck.Group({ ...bucketOptions(ref.bucket), timeout: Math.max(MIN_IDLE_MS, 2 * refillMs) });
      this.groups.set(rule, group);
    }
    return group.key(ref.key);
  }

  async take(refs: readonly BucketRef[]): Promise<{ refusedAt: number; retryMs: number }> {
    for (const [index, ref] of refs.entries()) {
      const limiter = this.limiter(ref);
      if (!(await takeToken(limiter))) {
        return { refusedAt: index, retryMs: msUntilToken((await limiter.currentReservoir()) ?? 0, ref.bucket) };
      }
    }
    return { refusedAt: -1, retryMs: 0 };
  }

  async level(ref: BucketRef): Promise<number> {
    return (await this.limiter(ref).currentReservoir()) ?? 0;
  }

  async close(): Promise<void> {
    // deleteKey stops each limiter's refill timer.
    for (const group of this.groups.values()) await Promise.all(group.keys().map((key) => group.deleteKey(key)));
    this.groups.clear();
  }
}

/** Buckets in this process: each instance has its own budget. */
export const localBuckets: BucketStore = () => new LocalBuckets();
