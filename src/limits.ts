/**
 * Request limits: token buckets made of bottleneck limiters, one for the whole
 * instance and one per client, and a per-client count of open watchers.
 *
 * A bucket is a limiter whose `reservoir` is the tokens left (at most the
 * burst), refilled by `reservoirIncrease*`. A token is taken by scheduling an
 * empty job with `highWater: 0` and the OVERFLOW strategy: bottleneck checks
 * the reservoir and takes the token in one step (its submit lock serialises
 * submissions, and the job is registered, decrementing the reservoir, before
 * the next is looked at), and a job that cannot run at once is dropped rather
 * than queued, so a refusal is immediate and nothing waits. check() followed by
 * incrementReservoir(-1) would be two steps: concurrent calls could both see
 * the last token and both take it.
 */
import Bottleneck from "bottleneck";
import type { BucketConfig, LimitsConfig } from "./config.js";

/** bottleneck's local refill heartbeat: a bucket gains tokens on its ticks only. */
const HEARTBEAT_MS = 250;

/** How much earlier than a whole heartbeat a tick may see the clock and still refill. */
const TICK_SLACK_MS = 25;

/** The least time an idle client's bucket is kept (bottleneck's Group default). */
const MIN_IDLE_MS = 5 * 60_000;

/** The outcome of taking a token: allowed, or refused by one bucket with the time until a retry can succeed. */
export type Decision = { allowed: true } | { allowed: false; limit: "global" | "client"; retryMs: number };

/** Who is asking: the key of their bucket, and the bounded label of the metric. */
export interface LimitedClient {
  key: string;
  label: string;
}

/** Called with each bucket's decision (for metrics). */
export type DecisionListener = (result: "allowed" | "denied", limit: "global" | "client", client: LimitedClient) => void;

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
 * How long until `limiter` holds one whole token again: the ticks needed for
 * the missing fraction, each at most a heartbeat away. An upper bound, since
 * the next tick may come sooner.
 */
async function msUntilToken(limiter: Bottleneck, bucket: BucketConfig): Promise<number> {
  const level = (await limiter.currentReservoir()) ?? 0;
  const perTick = (bucket.rps * HEARTBEAT_MS) / 1000;
  return Math.max(1, Math.ceil((1 - level) / perTick)) * HEARTBEAT_MS;
}

/** The instance's request limits. */
export class Limits {
  private readonly global: Bottleneck | undefined;
  private readonly clients: Bottleneck.Group | undefined;
  private readonly watchers = new Map<string, number>();

  constructor(
    private readonly config: LimitsConfig,
    private readonly onDecision: DecisionListener = () => undefined,
  ) {
    this.global = config.global && new Bottleneck(bucketOptions(config.global));
    if (config.client) {
      // An idle client's bucket is dropped only after it would have refilled
      // completely anyway, so forgetting it changes nothing but memory.
      const refillMs = (config.client.burst / config.client.rps) * 1000;
      this.clients = new Bottleneck.Group({ ...bucketOptions(config.client), timeout: Math.max(MIN_IDLE_MS, 2 * refillMs) });
    }
  }

  /** Whether any limit or cap is configured (no interceptor work otherwise). */
  get enabled(): boolean {
    return this.global !== undefined || this.clients !== undefined || this.config.clientMaxWatchers !== undefined;
  }

  /**
   * Takes a token from `client`'s bucket, then from the global one. The client's
   * comes first so that a client over its own budget does not spend the
   * instance's; a token taken from the client's bucket is not given back when the
   * global bucket refuses.
   */
  async take(client: LimitedClient): Promise<Decision> {
    if (this.clients && this.config.client) {
      const limiter = this.clients.key(client.key);
      if (!(await takeToken(limiter))) {
        this.onDecision("denied", "client", client);
        return { allowed: false, limit: "client", retryMs: await msUntilToken(limiter, this.config.client) };
      }
      this.onDecision("allowed", "client", client);
    }
    if (this.global && this.config.global) {
      if (!(await takeToken(this.global))) {
        this.onDecision("denied", "global", client);
        return { allowed: false, limit: "global", retryMs: await msUntilToken(this.global, this.config.global) };
      }
      this.onDecision("allowed", "global", client);
    }
    return { allowed: true };
  }

  /**
   * Counts a new watcher of `clientKey`: a release function (idempotent), or
   * undefined when the client already has CLIENT_MAX_WATCHERS open.
   */
  openWatcher(clientKey: string): (() => void) | undefined {
    const max = this.config.clientMaxWatchers;
    const open = this.watchers.get(clientKey) ?? 0;
    if (max !== undefined && open >= max) return undefined;
    this.watchers.set(clientKey, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.watchers.get(clientKey) ?? 1) - 1;
      // Only clients with open watchers are remembered.
      if (left <= 0) this.watchers.delete(clientKey);
      else this.watchers.set(clientKey, left);
    };
  }

  /** CLIENT_MAX_WATCHERS, or undefined for no cap. */
  get maxWatchers(): number | undefined {
    return this.config.clientMaxWatchers;
  }

  /** Open watchers of `clientKey`. */
  watcherCount(clientKey: string): number {
    return this.watchers.get(clientKey) ?? 0;
  }

  /** Stops the buckets' refill timers. */
  async close(): Promise<void> {
    await this.global?.disconnect(false);
    if (this.clients) await Promise.all(this.clients.keys().map((key) => this.clients!.deleteKey(key)));
  }
}
