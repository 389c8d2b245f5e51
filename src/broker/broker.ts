/**
 * The Broker: the one interface between streamgate and its log, shaped after
 * Kafka (topics, partitions, keyed records with headers, offsets, consumer
 * groups with committed offsets) so that the embedded memory broker and a Kafka
 * or Redpanda cluster are interchangeable behind it.
 */

/** Record headers: string names and values, as every Kafka client can read them. */
export type RecordHeaders = Record<string, string>;

/** A record to append. */
export interface ProduceRecord {
  /** The key; it selects the partition (murmur2, as Kafka's default partitioner). */
  key: string;
  /** The payload. */
  value: Uint8Array;
  /** Headers. */
  headers: RecordHeaders;
  /** Milliseconds since the epoch; the broker's time when omitted. */
  timestamp?: number;
  /**
   * A tombstone: on a compacted topic, the key's earlier records are removed
   * (Kafka: a null value; `value` must be empty). Read back with an empty value.
   */
  tombstone?: boolean;
}

/** How long a produce may take. */
export interface ProduceOptions {
  /**
   * Refuse (UNAVAILABLE) if not stored by then; records still queued are
   * withdrawn, but a request already sent may still be stored later. The
   * broker's default when omitted; \`Infinity\` waits until the record is stored,
   * for a writer that must not repeat a record (the processor).
   */
  timeoutMs?: number;
  /**
   * False: do not wait for other calls to batch with when the producer is
   * idle (Kafka: KAFKA_LINGER_MS), for a writer that already batches what
   * comes while its previous call is out (the processor's result writers).
   */
  linger?: boolean;
}

/** Where a record was stored. */
export interface RecordPosition {
  partition: number;
  offset: number;
}

/** A stored record, as read back. */
export interface StoredRecord extends RecordPosition {
  topic: string;
  key: string;
  value: Uint8Array;
  headers: RecordHeaders;
  timestamp: number;
}

/** A topic to create when missing. */
export interface TopicSpec {
  name: string;
  partitions: number;
  /** Keep only the latest record of each key (Kafka's cleanup.policy=compact). */
  compacted: boolean;
}

/** The offsets bounding a partition's retained records. */
export interface PartitionOffsets {
  /** The first retained offset. */
  low: number;
  /** The offset the next record will get. */
  high: number;
}

/** Records of one partition delivered to a subscriber, in offset order. */
export interface RecordBatch {
  topic: string;
  partition: number;
  records: StoredRecord[];
  /**
   * The partition's high watermark as of this fetch: the offset its next
   * record will get. Records from past this batch up to it are already
   * written (they come in later batches), so a subscriber can tell its lag
   * without asking the broker.
   */
  highWatermark: number;
}

/** How to read a topic. */
export interface SubscribeOptions {
  topic: string;
  /**
   * The consumer group. With a group, reading resumes from the group's committed
   * offsets and partitions are shared among the group's members; without one, the
   * subscriber reads every partition and commits nothing.
   */
  groupId?: string;
  /** Where to begin in a partition with no committed offset. */
  from: "earliest" | "latest";
  /** Exact offsets to begin at, by partition; they override `from` and committed offsets. */
  startOffsets?: number[];
  /**
   * Called with each batch. The next batch of the same partition is delivered
   * only after the returned promise settles, which is how a subscriber applies
   * backpressure. A rejection is reported to `onError` and the batch is
   * delivered again after a pause, as Kafka redelivers uncommitted records.
   */
  eachBatch(batch: RecordBatch): Promise<void>;
  /** Called when `eachBatch` rejects. */
  onError?(error: unknown): void;
  /**
   * Called with the partitions this subscriber reads, before their first batch
   * and again whenever they change (a consumer-group rebalance): a partition
   * no longer listed was revoked and gets no further batches here.
   */
  onAssignment?(partitions: number[]): void;
}

/** A running subscription. */
export interface Subscription {
  /** Records, for a group, that every offset below `nextOffset` of the partition is done. */
  commit(partition: number, nextOffset: number): Promise<void>;
  /**
   * Stops delivery; a batch being handled is awaited. Then `beforeLeaving`,
   * if given, runs while this is still a member of its group, so that it can
   * make a last {@link commit}; a Kafka group's member cannot commit once it
   * has left. Then the subscription leaves.
   */
  close(beforeLeaving?: () => Promise<void>): Promise<void>;
}

/** The log streamgate runs on. */
export interface Broker {
  /** "memory" or "kafka", for logs and metrics. */
  readonly kind: string;
  /** Creates missing topics; existing ones are left as they are. */
  ensureTopics(topics: TopicSpec[]): Promise<void>;
  /** The partition count of a topic that exists. */
  partitionCount(topic: string): number;
  /** The partition a key maps to. */
  partitionFor(topic: string, key: string): number;
  /**
   * Appends records and resolves once they are durably stored (acks=all), in
   * order: records with the same key keep the order of the calls. Rejects with a
   * BrokerError when nothing can be guaranteed stored.
   */
  produce(topic: string, records: ProduceRecord[], options?: ProduceOptions): Promise<RecordPosition[]>;
  /** Reads up to `maxRecords` records of a partition from `offset` (catch-up reads). */
  fetch(topic: string, partition: number, offset: number, maxRecords: number): Promise<StoredRecord[]>;
  /** The offsets bounding a partition. */
  offsets(topic: string, partition: number): Promise<PartitionOffsets>;
  /** Starts delivering records; see {@link SubscribeOptions}. */
  subscribe(options: SubscribeOptions): Promise<Subscription>;
  /** Whether the broker answers within `timeoutMs` (for health checks). */
  probe(timeoutMs: number): Promise<boolean>;
  /** Closes subscriptions and connections. */
  close(): Promise<void>;
}
