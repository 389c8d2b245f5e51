/**
 * The embedded broker: an in-process partitioned log with offsets, retention,
 * compaction and consumer-group offsets. It is the zero-setup default when no
 * Kafka brokers are configured; it keeps nothing across restarts.
 */

import { delay, waitForWake } from "../common/waits.js";
import type {
  Broker,
  PartitionOffsets,
  ProduceRecord,
  RecordBatch,
  RecordPosition,
  StoredRecord,
  SubscribeOptions,
  Subscription,
  TopicSpec,
} from "./broker.js";
import { partitionForKey } from "./partitioner.js";

/** Retention of the memory broker. */
export interface MemoryBrokerOptions {
  /** Records kept per partition before the oldest are dropped. */
  retentionRecords: number;
  /** Age in ms after which records are dropped (0: no age limit). */
  retentionMs: number;
  /** Most records handed to a subscriber in one batch. */
  maxBatch?: number;
  /** The clock, for tests of age-based retention. */
  now?: () => number;
}

/** Creates the embedded memory broker. */
export function createMemoryBroker(options: MemoryBrokerOptions): Broker {
  return new MemoryBroker(options);
}

class MemoryBroker implements Broker {
  readonly kind = "memory";
  private readonly topics = new Map<string, MemoryTopic>();
  /** Committed offsets: group → topic → partition → next offset. */
  private readonly committed = new Map<string, Map<string, number[]>>();
  private readonly subscriptions = new Set<MemorySubscription>();
  private readonly now: () => number;
  private closed = false;

  constructor(private readonly options: MemoryBrokerOptions) {
    this.now = options.now ?? Date.now;
  }

  async ensureTopics(specs: TopicSpec[]): Promise<void> {
    for (const spec of specs) {
      if (!this.topics.has(spec.name)) this.topics.set(spec.name, new MemoryTopic(spec));
    }
  }

  partitionCount(topic: string): number {
    return this.topic(topic).partitions.length;
  }

  partitionFor(topic: string, key: string): number {
    return partitionForKey(key, this.partitionCount(topic));
  }

  async produce(topic: string, records: ProduceRecord[]): Promise<RecordPosition[]> {
    this.assertOpen();
    const memoryTopic = this.topic(topic);
    const now = this.now();
    const positions = records.map((record) => {
      const partition = partitionForKey(record.key, memoryTopic.partitions.length);
      const offset = memoryTopic.partitions[partition]!.append({
        topic,
        partition,
        offset: 0,
        key: record.key,
        value: record.value,
        headers: record.headers,
        timestamp: record.timestamp ?? now,
      });
      return { partition, offset };
    });
    for (const partition of memoryTopic.partitions) partition.enforceRetention(this.options, now);
    return positions;
  }

  async fetch(topic: string, partition: number, offset: number, maxRecords: number): Promise<StoredRecord[]> {
    return this.partition(topic, partition).read(offset, maxRecords);
  }

  async offsets(topic: string, partition: number): Promise<PartitionOffsets> {
    const log = this.partition(topic, partition);
    return { low: log.low, high: log.high };
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    this.assertOpen();
    const memoryTopic = this.topic(options.topic);
    const committed = options.groupId === undefined ? undefined : this.groupOffsets(options.groupId, options.topic);
    const subscription = new MemorySubscription(memoryTopic, options, committed, this.options.maxBatch ?? 500, () =>
      this.subscriptions.delete(subscription),
    );
    this.subscriptions.add(subscription);
    return subscription;
  }

  async probe(): Promise<boolean> {
    return !this.closed;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.subscriptions].map((subscription) => subscription.close()));
  }

  private groupOffsets(groupId: string, topic: string): number[] {
    let byTopic = this.committed.get(groupId);
    if (!byTopic) this.committed.set(groupId, (byTopic = new Map()));
    let offsets = byTopic.get(topic);
    if (!offsets) byTopic.set(topic, (offsets = []));
    return offsets;
  }

  private topic(name: string): MemoryTopic {
    const topic = this.topics.get(name);
    if (!topic) throw new Error(`topic ${name} does not exist`);
    return topic;
  }

  private partition(topic: string, partition: number): PartitionLog {
    const log = this.topic(topic).partitions[partition];
    if (!log) throw new Error(`topic ${topic} has no partition ${partition}`);
    return log;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error("memory broker is closed");
  }
}

class MemoryTopic {
  readonly partitions: PartitionLog[];
  constructor(readonly spec: TopicSpec) {
    this.partitions = Array.from({ length: spec.partitions }, () => new PartitionLog(spec.compacted));
  }
}

/**
 * One partition: records in offset order. Offsets stay those given at append,
 * so after compaction they have gaps, as in Kafka.
 */
class PartitionLog {
  private records: StoredRecord[] = [];
  /** The offset of the first retained record (or `high` when empty). */
  low = 0;
  /** The offset the next record gets. */
  high = 0;
  private waiters: Array<() => void> = [];
  /**
   * Compacted logs only: each key's latest offset, kept as records arrive so
   * that deciding to compact needs no scan. Only compaction drops records
   * from a compacted log, so `records.length - latest.size` are superseded.
   */
  private readonly latest = new Map<string, number>();

  constructor(private readonly compacted: boolean) {}

  append(record: StoredRecord): number {
    record.offset = this.high++;
    this.records.push(record);
    if (this.compacted) this.latest.set(record.key, record.offset);
    if (this.waiters.length > 0) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const wake of waiters) wake();
    }
    return record.offset;
  }

  /** Resolves when a record at or past `offset` exists, or `signal` fires. */
  waitFor(offset: number, signal: AbortSignal): Promise<void> {
    if (offset < this.high) return Promise.resolve();
    // A closed subscription leaves no waiter behind on an idle partition.
    return waitForWake(
      (wake) => {
        this.waiters.push(wake);
        return () => {
          this.waiters = this.waiters.filter((waiter) => waiter !== wake);
        };
      },
      { signal },
    );
  }

  read(offset: number, maxRecords: number): StoredRecord[] {
    const start = this.indexOf(Math.max(offset, this.low));
    return this.records.slice(start, start + maxRecords);
  }

  enforceRetention(options: MemoryBrokerOptions, now: number): void {
    if (this.compacted) {
      // Compaction keeps the latest record of each key; run it when half the log
      // is superseded, so that appends stay O(1) amortised (a log of distinct
      // keys, such as the registry's, is never scanned).
      if (this.records.length > 1024 && this.latest.size * 2 <= this.records.length) this.compact();
      return;
    }
    let drop = Math.max(0, this.records.length - options.retentionRecords);
    if (options.retentionMs > 0) {
      while (drop < this.records.length && now - this.records[drop]!.timestamp > options.retentionMs) drop++;
    }
    // Dropping from the front of an array is O(n); batch it to amortise.
    if (drop > 0 && (drop >= 1024 || drop * 8 >= this.records.length)) {
      this.records = this.records.slice(drop);
      this.low = this.records[0]?.offset ?? this.high;
    }
  }

  private compact(): void {
    this.records = this.records.filter((record) => this.latest.get(record.key) === record.offset);
    this.low = this.records[0]?.offset ?? this.high;
  }

  /** The index of the first record with an offset at or past `offset`. */
  private indexOf(offset: number): number {
    let lo = 0;
    let hi = this.records.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.records[mid]!.offset < offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** Delivers each partition of a topic to one subscriber, one batch at a time. */
class MemorySubscription implements Subscription {
  private readonly abort = new AbortController();
  private readonly loops: Promise<void>[];

  constructor(
    private readonly topic: MemoryTopic,
    private readonly options: SubscribeOptions,
    private readonly committed: number[] | undefined,
    private readonly maxBatch: number,
    private readonly onClose: () => void,
  ) {
    // Every subscriber reads every partition, once and for all.
    options.onAssignment?.(topic.partitions.map((_, partition) => partition));
    this.loops = topic.partitions.map((log, partition) => {
      const start =
        options.startOffsets?.[partition] ??
        committed?.[partition] ??
        (options.from === "earliest" ? log.low : log.high);
      return this.deliver(log, partition, start);
    });
  }

  async commit(partition: number, nextOffset: number): Promise<void> {
    if (!this.committed) throw new Error("commit needs a consumer group");
    this.committed[partition] = Math.max(this.committed[partition] ?? 0, nextOffset);
  }

  async close(beforeLeaving?: () => Promise<void>): Promise<void> {
    this.abort.abort();
    await Promise.all(this.loops);
    try {
      await beforeLeaving?.();
    } finally {
      this.onClose();
    }
  }

  private async deliver(log: PartitionLog, partition: number, start: number): Promise<void> {
    const signal = this.abort.signal;
    let next = start;
    while (!signal.aborted) {
      await log.waitFor(next, signal);
      if (signal.aborted) return;
      const records = log.read(next, this.maxBatch);
      if (records.length === 0) {
        // Nothing at or past `next` is left (compacted away): wait for new records.
        next = log.high;
        continue;
      }
      const batch: RecordBatch = { topic: this.topic.spec.name, partition, records, highWatermark: log.high };
      try {
        await this.options.eachBatch(batch);
        next = records[records.length - 1]!.offset + 1;
      } catch (error) {
        // Like a Kafka consumer, redeliver the same batch after a pause.
        this.options.onError?.(error);
        await delay(1000, { signal });
      }
    }
  }
}
