/**
 * A subscription to a Kafka topic (see SubscribeOptions in broker.ts): a fetch
 * loop over the partitions this subscriber reads, with @platformatic/kafka's
 * Consumer for the group membership (join, heartbeats, rebalances, commits).
 *
 * The loop fetches only the partitions whose previous batch is handled: a
 * partition's next batch is delivered after the last one settles, and a
 * subscriber that is slow holds back its own partitions, nothing else. A
 * subscriber without a group reads every partition and joins no group at all.
 */
import type { Consumer } from "@platformatic/kafka";
import { retry } from "../common/backoff.js";
import { waitForWake } from "../common/waits.js";
import type { Logger } from "../observe/logger.js";
import type { SubscribeOptions, Subscription } from "./broker.js";
import { BrokerError } from "./errors.js";
import { type FetchLimits, fetchPartitions, leadersOf, OFFSET_OUT_OF_RANGE } from "./kafka-fetch.js";

/**
 * Fetch sizes and waits: about a megabyte per partition, as most clients
 * read, and a broker wait short enough that results and registry changes
 * arrive in milliseconds.
 */
const LIMITS: FetchLimits = { partitionMaxBytes: 1024 * 1024, maxBytes: 8 * 1024 * 1024, maxWaitMs: 50, minBytes: 1 };
/**
 * The broker's wait while another partition's batch is being handled. A
 * fetch cannot be cut short, and that partition is fetched again only after
 * it: a 50 ms wait on quiet partitions put up to 50 ms before every busy
 * partition's next batch (end-to-end p50 43 ms at 1,000 records a second on
 * Kafka). Only while a handler runs does the loop poll this often.
 */
const BUSY_MAX_WAIT_MS = 2;
/** Group membership: a crashed member's partitions move on after the session timeout. */
const GROUP = { sessionTimeout: 10_000, heartbeatInterval: 3000, rebalanceTimeout: 30_000 };
/** The pause before a failed batch is delivered again, or a failed fetch is tried again. */
const RETRY_MS = 1000;

/** What a subscription needs from the broker. */
export interface KafkaSubscriptionDeps {
  /** A consumer of its own, not yet used: its group is the subscription's (a random one without `groupId`). */
  consumer: Consumer;
  partitionCount: number;
  /** The offsets a partition may be read from, for `from`. */
  bounds(partition: number): Promise<{ low: number; high: number }>;
  logger: Logger;
}

/** Starts the subscription: joins the group (if any), then fetches until closed. */
export async function startKafkaSubscription(
  options: SubscribeOptions,
  deps: KafkaSubscriptionDeps,
): Promise<Subscription> {
  const subscription = new KafkaSubscription(options, deps);
  await subscription.start();
  return subscription;
}

class KafkaSubscription implements Subscription {
  /** The next offset to fetch, of each partition this subscriber reads. */
  private readonly next = new Map<number, number>();
  /** Partitions whose batch is being handled. */
  private readonly busy = new Map<number, Promise<void>>();
  /** When a partition whose batch failed may be fetched again. */
  private readonly pausedUntil = new Map<number, number>();
  /** `startOffsets` still to apply: a group's apply at its first assignment only. */
  private startOffsets: Array<number | undefined>;
  private closing = false;
  private loop: Promise<void> | undefined;
  /** Wakes the loop when it waits for a partition to become free. */
  private wake: (() => void) | undefined;
  /** Assignments are applied one at a time, in the order the group announced them. */
  private assigning: Promise<void> = Promise.resolve();
  /** Counts the group's assignments: one still being retried gives way to a newer one. */
  private generation = 0;

  constructor(
    private readonly options: SubscribeOptions,
    private readonly deps: KafkaSubscriptionDeps,
  ) {
    this.startOffsets = [...(options.startOffsets ?? [])];
  }

  async start(): Promise<void> {
    const { consumer } = this.deps;
    const { topic } = this.options;
    consumer.topics.track(topic);
    // The client emits "error" (which, unheard, would end the process) when a
    // rejoin after a rebalance fails, and then sends no more heartbeats: this
    // member would read nothing again. It joins anew.
    consumer.on("error", (error: unknown) => {
      this.deps.logger.warn({ err: error, topic }, "the Kafka consumer failed; joining its group again");
      if (this.options.groupId !== undefined) this.rejoin();
    });
    if (this.options.groupId === undefined) {
      await this.assign(Array.from({ length: this.deps.partitionCount }, (_, partition) => partition));
    } else {
      // Every (re)join of the group announces this member's partitions.
      consumer.on("consumer:group:join", (payload) => {
        const partitions = payload.assignments?.find((assignment) => assignment.topic === topic)?.partitions ?? [];
        this.reassign(partitions);
      });
      await consumer.joinGroup(GROUP);
      await this.assigning;
    }
    this.loop = this.run();
  }

  async commit(partition: number, nextOffset: number): Promise<void> {
    if (this.options.groupId === undefined) throw new Error("commit needs a consumer group");
    try {
      await this.deps.consumer.commit({
        offsets: [{ topic: this.options.topic, partition, offset: BigInt(nextOffset), leaderEpoch: -1 }],
      });
    } catch (error) {
      // The broker unreachable, or the group rebalancing: a later commit covers it.
      throw new BrokerError("committing offsets to the broker failed", true, { cause: error });
    }
  }

  async close(beforeLeaving?: () => Promise<void>): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.wake?.();
    await this.loop?.catch(() => undefined);
    await Promise.allSettled([...this.busy.values()]);
    try {
      await beforeLeaving?.();
    } finally {
      // Leaves the group (if it joined one) and closes the connections.
      await this.deps.consumer.close(true).catch(() => undefined);
    }
  }

  /** Joins the group again after a pause (until it succeeds or the subscription closes). */
  private rejoin(): void {
    if (this.closing) return;
    setTimeout(() => {
      if (this.closing) return;
      this.deps.consumer.joinGroup(GROUP).catch(() => this.rejoin());
    }, RETRY_MS);
  }

  /**
   * Applies a group's new assignment, after any earlier one. Reading where
   * the new partitions start needs the broker; while it cannot answer (a
   * rejoin right after an outage), the assignment is tried again, or its
   * partitions would never be read.
   */
  private reassign(partitions: number[]): void {
    const generation = ++this.generation;
    const superseded = () => this.closing || generation !== this.generation;
    this.assigning = this.assigning.then(() =>
      retry(() => (superseded() ? Promise.resolve() : this.assign(partitions)), {
        firstMs: RETRY_MS,
        maxMs: RETRY_MS,
        onRetry: (error) => this.options.onError?.(error),
      }),
    );
    this.wake?.();
  }

  /**
   * Makes `partitions` the ones read: revoked ones get no further batches
   * (a batch being handled still settles), and each new one starts at its
   * start offset, the group's committed offset, or `from`.
   */
  private async assign(partitions: number[]): Promise<void> {
    const assigned = new Set(partitions);
    for (const partition of [...this.next.keys()]) {
      if (!assigned.has(partition)) this.next.delete(partition);
    }
    const added = partitions.filter((partition) => !this.next.has(partition));
    const committed =
      added.length > 0 && this.options.groupId !== undefined
        ? await this.committedOffsets(added)
        : new Map<number, number>();
    for (const partition of added) {
      const start = this.startOffsets[partition] ?? committed.get(partition) ?? (await this.fromOffset(partition));
      this.next.set(partition, start);
    }
    // A group resumes from its committed offsets after its first assignment.
    if (this.options.groupId !== undefined) this.startOffsets = [];
    this.options.onAssignment?.([...this.next.keys()].sort((a, b) => a - b));
  }

  private async committedOffsets(partitions: number[]): Promise<Map<number, number>> {
    const { topic } = this.options;
    const answer = await this.deps.consumer.listCommittedOffsets({ topics: [{ topic, partitions }] });
    const offsets = answer.get(topic) ?? [];
    const result = new Map<number, number>();
    for (const partition of partitions) {
      const offset = offsets[partition];
      if (offset !== undefined && offset >= 0n) result.set(partition, Number(offset));
    }
    return result;
  }

  private async fromOffset(partition: number): Promise<number> {
    const { low, high } = await this.deps.bounds(partition);
    return this.options.from === "earliest" ? low : high;
  }

  /** Fetches free partitions, hands each batch to eachBatch, and waits when every partition is busy. */
  private async run(): Promise<void> {
    let fresh = false;
    while (!this.closing) {
      await this.assigning;
      const now = Date.now();
      const free = [...this.next].filter(
        ([partition]) => !this.busy.has(partition) && (this.pausedUntil.get(partition) ?? 0) <= now,
      );
      if (free.length === 0) {
        await this.idle();
        continue;
      }
      try {
        const { topicId, leaders } = await leadersOf(this.deps.consumer, this.options.topic, fresh);
        fresh = false;
        const byLeader = new Map<number, Array<{ partition: number; offset: number }>>();
        for (const [partition, offset] of free) {
          const leader = leaders[partition] ?? -1;
          if (leader < 0) continue;
          const list = byLeader.get(leader);
          if (list) list.push({ partition, offset });
          else byLeader.set(leader, [{ partition, offset }]);
        }
        if (byLeader.size === 0) {
          fresh = true;
          await this.idle(RETRY_MS);
          continue;
        }
        const limits = this.busy.size > 0 ? { ...LIMITS, maxWaitMs: BUSY_MAX_WAIT_MS } : LIMITS;
        await Promise.all(
          [...byLeader].map(([leader, partitions]) => this.fetchFrom(leader, topicId, partitions, limits)),
        );
      } catch (error) {
        if (this.closing) return;
        // The broker unreachable or a leader moved: the client has retried already; pause, then try again.
        this.deps.logger.warn({ err: error, topic: this.options.topic }, "fetching from Kafka failed; retrying");
        fresh = true;
        await this.idle(RETRY_MS);
      }
    }
  }

  private async fetchFrom(
    leader: number,
    topicId: string,
    partitions: Array<{ partition: number; offset: number }>,
    limits: FetchLimits,
  ): Promise<void> {
    const { topic } = this.options;
    const fetched = await fetchPartitions(this.deps.consumer, leader, topic, topicId, partitions, limits);
    for (const { partition, errorCode, highWatermark, records } of fetched) {
      const asked = partitions.find((entry) => entry.partition === partition)!.offset;
      // Revoked, or moved by a new assignment, while the fetch was out.
      if (this.closing || this.next.get(partition) !== asked) continue;
      if (errorCode === OFFSET_OUT_OF_RANGE) {
        // Retention removed what was next (or the offset is past the end): start again at `from`'s bound.
        const { low, high } = await this.deps.bounds(partition);
        this.next.set(partition, asked < low ? low : this.options.from === "earliest" ? low : high);
        continue;
      }
      if (errorCode !== 0)
        throw new BrokerError(`fetching ${topic}/${partition} failed with Kafka error code ${errorCode}`, true);
      if (records.length === 0) continue;
      this.next.set(partition, records[records.length - 1]!.offset + 1);
      this.deliver(partition, asked, { topic, partition, records, highWatermark });
    }
  }

  /** Hands a batch to eachBatch; on failure the partition goes back to the batch's start, after a pause. */
  private deliver(partition: number, firstOffset: number, batch: Parameters<SubscribeOptions["eachBatch"]>[0]): void {
    const handled = (async () => {
      try {
        await this.options.eachBatch(batch);
      } catch (error) {
        this.options.onError?.(error);
        if (this.next.has(partition)) {
          this.next.set(partition, firstOffset);
          this.pausedUntil.set(partition, Date.now() + RETRY_MS);
        }
      } finally {
        this.busy.delete(partition);
        this.wake?.();
      }
    })();
    this.busy.set(partition, handled);
  }

  /** Waits until a batch settles, the assignment changes, the subscription closes, or `ms` pass. */
  private idle(ms = RETRY_MS): Promise<void> {
    return waitForWake(
      (wake) => {
        this.wake = wake;
        return () => {
          if (this.wake === wake) this.wake = undefined;
        };
      },
      { timeoutMs: ms },
    );
  }
}
