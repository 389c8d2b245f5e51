/**
 * Request limits: a token bucket for the whole service and one per client, and
 * a per-client count of open watchers, with settings that can change while the
 * service runs (AdminService.UpdateLimits).
 *
 * The buckets themselves live in a {@link BucketStore}: in this process
 * (src/guard/limits/local-buckets.ts) or in Redis, shared by every instance
 * (src/guard/limits/redis-limits.ts). Each change of settings starts a new generation of
 * buckets, full, so that no bucket ever holds tokens under the old rules, and
 * every instance, seeing the same generation, uses the same buckets.
 */
import type { BucketConfig, LimitsConfig } from "../../config/config.js";

/** The outcome of taking a token: allowed, or refused by one bucket with the time until a retry can succeed. */
export type Decision = { allowed: true } | { allowed: false; limit: LimitKind; retryMs: number };

/** Which bucket. */
export type LimitKind = "global" | "client";

/** Who is asking: the key of their bucket, and the bounded label of the metric. */
export interface LimitedClient {
  /** Its bucket's key, `client:<tenant>/<client>`, also its name in the live stats. */
  key: string;
  /** The client as a metric label: a configured name, else "anonymous". */
  label: string;
  /** The client's tenant as a metric label: a configured name, else "anonymous". */
  tenantLabel: string;
}

/** Called with each bucket's decision (for metrics). */
export type DecisionListener = (result: "allowed" | "denied", limit: LimitKind, client: LimitedClient) => void;

/** One bucket to take from: its key within the generation, and its rule. */
export interface BucketRef {
  key: string;
  bucket: BucketConfig;
}

/** The buckets of one generation of settings. */
export interface Buckets {
  /**
   * Takes one token from each bucket in order, stopping at the first that has
   * none: -1 when all gave one, else the index of the refusing bucket and the
   * milliseconds until it holds a token again. Tokens taken before a refusal
   * are not given back.
   */
  take(refs: readonly BucketRef[]): Promise<{ refusedAt: number; retryMs: number }>;
  /** The tokens a bucket holds now (its burst when never used). */
  level(ref: BucketRef): Promise<number>;
  /** Releases what this generation holds in the process. */
  close(): Promise<void>;
}

/** Makes the buckets of a generation. */
export type BucketStore = (generation: number) => Buckets;

/** Limits with the generation that numbers them: a higher generation replaces a lower. */
export interface VersionedLimits extends LimitsConfig {
  generation: number;
}

/** The instance's request limits. */
export class Limits {
  private current: VersionedLimits;
  private buckets: Buckets;
  private readonly watchers = new Map<string, number>();

  constructor(
    initial: VersionedLimits,
    private readonly store: BucketStore,
    private readonly onDecision: DecisionListener = () => undefined,
  ) {
    this.current = initial;
    this.buckets = store(initial.generation);
  }

  /** The settings in force. */
  get settings(): VersionedLimits {
    return this.current;
  }

  /**
   * Puts `next` in force, unless it is not newer than the settings in force (a
   * change can arrive twice: from the call that made it and from Redis).
   * Buckets start afresh; open watchers stay open, and count against a lowered cap.
   */
  apply(next: VersionedLimits): boolean {
    if (next.generation <= this.current.generation) return false;
    const old = this.buckets;
    this.current = next;
    this.buckets = this.store(next.generation);
    void old.close();
    return true;
  }

  /** Whether any limit or cap is configured (no interceptor work otherwise). */
  get enabled(): boolean {
    const { global, client, clientMaxWatchers } = this.current;
    return global !== undefined || client !== undefined || clientMaxWatchers !== undefined;
  }

  /**
   * Takes a token from `client`'s bucket, then from the global one. The client's
   * comes first so that a client over its own budget does not spend the
   * service's; a token taken from the client's bucket is not given back when the
   * global bucket refuses.
   */
  async take(client: LimitedClient): Promise<Decision> {
    const { global, client: perClient } = this.current;
    const refs: BucketRef[] = [];
    const kinds: LimitKind[] = [];
    if (perClient) {
      refs.push({ key: client.key, bucket: perClient });
      kinds.push("client");
    }
    if (global) {
      refs.push({ key: "global", bucket: global });
      kinds.push("global");
    }
    if (refs.length === 0) return { allowed: true };
    const { refusedAt, retryMs } = await this.buckets.take(refs);
    const allowedCount = refusedAt === -1 ? refs.length : refusedAt;
    for (let i = 0; i < allowedCount; i++) this.onDecision("allowed", kinds[i]!, client);
    if (refusedAt === -1) return { allowed: true };
    this.onDecision("denied", kinds[refusedAt]!, client);
    return { allowed: false, limit: kinds[refusedAt]!, retryMs };
  }

  /** Tokens left in the global bucket, or undefined without a global limit. */
  async globalLevel(): Promise<number | undefined> {
    const { global } = this.current;
    return global && this.buckets.level({ key: "global", bucket: global });
  }

  /** Tokens left in `clientKey`'s bucket, or undefined without a per-client limit. */
  async clientLevel(clientKey: string): Promise<number | undefined> {
    const { client } = this.current;
    return client && this.buckets.level({ key: clientKey, bucket: client });
  }

  /**
   * Counts a new watcher of `clientKey`: a release function (idempotent), or
   * undefined when the client already has CLIENT_MAX_WATCHERS open.
   */
  openWatcher(clientKey: string): (() => void) | undefined {
    const max = this.current.clientMaxWatchers;
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

  /** CLIENT_MAX_WATCHERS in force, or undefined for no cap. */
  get maxWatchers(): number | undefined {
    return this.current.clientMaxWatchers;
  }

  /** Releases the buckets. */
  async close(): Promise<void> {
    await this.buckets.close();
  }
}
