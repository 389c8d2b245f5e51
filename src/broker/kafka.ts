/**
 * The Kafka broker (Apache Kafka or Redpanda) through @platformatic/kafka: an
 * idempotent producer with acks=all behind a batcher, topics created when
 * missing, fetch loops for subscriptions (consumer groups where asked), and
 * direct fetches for catch-up reads.
 */
import { randomUUID } from "node:crypto";
import { Admin, Consumer, ListOffsetTimestamps, ProduceAcks, Producer, stringSerializer } from "@platformatic/kafka";
import { retry } from "../common/backoff.js";
import type { Logger } from "../observe/logger.js";
import type {
  Broker,
  PartitionOffsets,
  ProduceOptions,
  ProduceRecord,
  RecordPosition,
  StoredRecord,
  SubscribeOptions,
  Subscription,
  TopicSpec,
} from "./broker.js";
import { BrokerError, RecordTooLargeError } from "./errors.js";
import { clientOptions, type KafkaConnection } from "./kafka-client-options.js";
import { alreadyExists, rootCauses, tooLarge } from "./kafka-errors.js";
import { fetchPartitions, leadersOf, OFFSET_OUT_OF_RANGE } from "./kafka-fetch.js";
import { startKafkaSubscription } from "./kafka-subscription.js";
import { partitionForKey } from "./partitioner.js";
import { type PendingRecord, ProduceBatcher } from "./produce-batcher.js";

/**
 * The most bytes one produce request carries: below Kafka's default
 * message.max.bytes (1048588), which bounds a partition's whole record batch,
 * so only a record that is too large by itself is ever refused as too large.
 */
const MAX_REQUEST_BYTES = 1_000_000;
/** A catch-up read brings about this much of a partition. */
const READ_MAX_BYTES = 1024 * 1024;

/** How to reach and use a Kafka cluster. */
export interface KafkaBrokerOptions extends KafkaConnection {
  clientId: string;
  /** Replication factor of topics this broker creates (-1: the broker's default). */
  replication: number;
  /** Producer batching: see {@link ProduceBatcher}. */
  lingerMs: number;
  maxBatchRecords: number;
  /** A produce not acknowledged within this fails with UNAVAILABLE. */
  produceTimeoutMs: number;
  logger: Logger;
}

/** Creates the Kafka broker and checks that the cluster answers. */
export async function createKafkaBroker(options: KafkaBrokerOptions): Promise<Broker> {
  const broker = new KafkaBroker(options);
  await broker.connect();
  return broker;
}

class KafkaBroker implements Broker {
  readonly kind = "kafka";
  private readonly admin: Admin;
  private readonly producer: Producer<string, Buffer, string, string>;
  /**
   * The catch-up reads' client (fetches and metadata, in no group). A client
   * keeps one fetch session per broker, and concurrent fetches through it
   * break that session: the broker refuses all but one, and the client tries
   * them again after a pause (50 concurrent reads took 3.1 s, 200 took 5.4 s).
   * So it reads one read at a time. One client: with four, the processor's
   * end-to-end latency on Kafka went from 4 to 34-54 ms p50 (bench/ANALYSIS.md;
   * why is not known yet), and one serial reader read back more (the catchup
   * scenario: 32,604 results/s, four 26,918-28,876).
   */
  private readonly reader: Consumer;
  /** The last read queued: reads run one after another. */
  private reading: Promise<unknown> = Promise.resolve();
  private readonly batcher: ProduceBatcher;
  private readonly partitions = new Map<string, number>();
  private readonly subscriptions = new Set<Subscription>();

  constructor(private readonly options: KafkaBrokerOptions) {
    this.admin = new Admin(clientOptions(options, options.clientId));
    this.producer = new Producer({
      ...clientOptions(options, options.clientId),
      serializers: { key: stringSerializer, headerKey: stringSerializer, headerValue: stringSerializer },
      idempotent: true,
      acks: ProduceAcks.ALL,
      // Unbounded retries keep the idempotent producer's ordering; callers get
      // their UNAVAILABLE from the batcher's deadline instead.
      retries: true,
    });
    this.reader = new Consumer({
      ...clientOptions(options, `${options.clientId}-reader`),
      groupId: `${options.clientId}-reader-${randomUUID()}`,
    });
    // A client's "error" event with no listener would end the process; callers see failures as rejections.
    for (const client of [this.admin, this.producer, this.reader]) {
      client.on("error", (error: unknown) => options.logger.warn({ err: error }, "Kafka client error"));
    }
    this.batcher = new ProduceBatcher((batch) => this.sendBatch(batch), {
      lingerMs: options.lingerMs,
      maxRecords: options.maxBatchRecords,
      maxBytes: MAX_REQUEST_BYTES,
      timeoutMs: options.produceTimeoutMs,
    });
  }

  async connect(): Promise<void> {
    try {
      await this.admin.metadata({ topics: [] });
    } catch (error) {
      throw new Error(`Kafka at ${this.options.brokers.join(",")} did not answer: ${rootCauses(error)}`, {
        cause: error,
      });
    }
  }

  async ensureTopics(specs: TopicSpec[]): Promise<void> {
    const existing = new Set(await this.admin.listTopics());
    for (const spec of specs.filter((candidate) => !existing.has(candidate.name))) {
      try {
        await this.admin.createTopics({
          topics: [spec.name],
          partitions: spec.partitions,
          replicas: this.options.replication,
          configs: spec.compacted ? [{ name: "cleanup.policy", value: "compact" }] : [],
        });
      } catch (error) {
        // Another instance created it meanwhile.
        if (!alreadyExists(error)) throw error;
      }
    }
    // Existing topics keep their partition counts; keys are placed by what exists.
    // A KRaft broker answers for a moment without leaders for a topic it just created.
    for (const spec of specs) {
      this.partitions.set(spec.name, await this.waitForLeaders(spec.name));
      this.reader.topics.track(spec.name);
    }
  }

  /** The topic's partition count once every partition has a leader (about 3 s at most). */
  private async waitForLeaders(topic: string): Promise<number> {
    return retry(
      async () => {
        const { leaders } = await leadersOf(this.reader, topic, true);
        if (leaders.length > 0 && leaders.every((leader) => leader >= 0)) return leaders.length;
        throw new Error(`topic ${topic}: partitions without a leader after 30 attempts`);
      },
      { attempts: 30, firstMs: 100, maxMs: 100 },
    );
  }

  partitionCount(topic: string): number {
    const count = this.partitions.get(topic);
    if (count === undefined) throw new Error(`topic ${topic} is not known; call ensureTopics first`);
    return count;
  }

  partitionFor(topic: string, key: string): number {
    return partitionForKey(key, this.partitionCount(topic));
  }

  produce(topic: string, records: ProduceRecord[], options?: ProduceOptions): Promise<RecordPosition[]> {
    const count = this.partitionCount(topic);
    return this.batcher.add(
      records.map((record) => ({ topic, partition: partitionForKey(record.key, count), record })),
      options?.timeoutMs,
      options?.linger,
    );
  }

  fetch(topic: string, partition: number, offset: number, maxRecords: number): Promise<StoredRecord[]> {
    const read = this.reading.then(() => this.readOnce(topic, partition, offset, maxRecords));
    this.reading = read.catch(() => undefined);
    return read;
  }

  private async readOnce(
    topic: string,
    partition: number,
    offset: number,
    maxRecords: number,
  ): Promise<StoredRecord[]> {
    const read = async (fresh: boolean) => {
      const { topicId, leaders } = await leadersOf(this.reader, topic, fresh);
      const leader = leaders[partition];
      if (leader === undefined || leader < 0) throw new Error(`no leader for ${topic}/${partition}`);
      const limits = { partitionMaxBytes: READ_MAX_BYTES, maxBytes: READ_MAX_BYTES, maxWaitMs: 0, minBytes: 0 };
      const [answer] = await fetchPartitions(this.reader, leader, topic, topicId, [{ partition, offset }], limits);
      if (answer === undefined || answer.errorCode === OFFSET_OUT_OF_RANGE) return [];
      if (answer.errorCode !== 0) throw new Error(`Kafka error code ${answer.errorCode}`);
      return answer.records;
    };
    try {
      let records: StoredRecord[];
      try {
        records = await read(false);
      } catch {
        // A leader may have moved: read again with fresh metadata.
        records = await read(true);
      }
      return records.slice(0, maxRecords);
    } catch (error) {
      throw new BrokerError("reading from the broker failed", true, { cause: error });
    }
  }

  async offsets(topic: string, partition: number): Promise<PartitionOffsets> {
    try {
      const [low, high] = await Promise.all(
        [ListOffsetTimestamps.EARLIEST, ListOffsetTimestamps.LATEST].map(async (timestamp) => {
          const answer = await this.admin.listOffsets({
            topics: [{ name: topic, partitions: [{ partitionIndex: partition, timestamp }] }],
          });
          const found = answer[0]?.partitions.find((entry) => entry.partitionIndex === partition);
          if (!found) throw new Error(`topic ${topic} has no partition ${partition}`);
          return Number(found.offset);
        }),
      );
      return { low: low!, high: high! };
    } catch (error) {
      throw new BrokerError("reading offsets from the broker failed", true, { cause: error });
    }
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    // A subscriber without a group joins none; its client still needs a group id.
    const groupId = options.groupId ?? `${this.options.clientId}-${randomUUID()}`;
    const consumer = new Consumer({
      ...clientOptions(this.options, this.options.clientId),
      groupId,
      autocommit: false,
      // A crashed member's partitions move to the others (or to its restart)
      // after this; Kafka's lower bound is 6 s by default.
      sessionTimeout: 10_000,
      heartbeatInterval: 3000,
      // Group membership outlives a broker outage: the client keeps trying.
      retries: true,
    });
    const subscription = await startKafkaSubscription(options, {
      consumer,
      partitionCount: this.partitionCount(options.topic),
      bounds: (partition) => this.offsets(options.topic, partition),
      logger: this.options.logger,
    }).catch(async (error: unknown) => {
      await consumer.close(true).catch(() => undefined);
      throw error;
    });
    this.subscriptions.add(subscription);
    return {
      commit: (partition, nextOffset) => subscription.commit(partition, nextOffset),
      close: async (beforeLeaving) => {
        this.subscriptions.delete(subscription);
        await subscription.close(beforeLeaving);
      },
    };
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.subscriptions].map((subscription) => subscription.close()));
    await Promise.allSettled([this.producer.close(true), this.admin.close(), this.reader.close(true)]);
  }

  /** Whether the cluster answers a metadata request within `timeoutMs`. */
  async probe(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    try {
      return await Promise.race([
        this.admin.metadata({ topics: [], forceUpdate: true }).then(
          () => true,
          () => false,
        ),
        timeout,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async sendBatch(batch: PendingRecord[]): Promise<void> {
    let result;
    try {
      result = await this.producer.send({
        messages: batch.map(({ topic, partition, record }) => ({
          topic,
          partition,
          key: record.key,
          value: record.tombstone
            ? undefined
            : Buffer.from(record.value.buffer, record.value.byteOffset, record.value.byteLength),
          headers: record.headers,
          ...(record.timestamp === undefined ? {} : { timestamp: BigInt(record.timestamp) }),
        })),
      });
    } catch (error) {
      // Only a single record can be over the limit (the batcher's maxBytes is below it): it never will fit.
      if (tooLarge(error)) throw new RecordTooLargeError({ cause: error });
      throw new BrokerError("the broker did not store the records", true, { cause: error });
    }
    // Records of one partition are stored contiguously from its base offset, in order.
    const base = new Map(
      (result.offsets ?? []).map((entry) => [`${entry.topic}/${entry.partition}`, Number(entry.offset)]),
    );
    const next = new Map<string, number>();
    for (const entry of batch) {
      const slot = `${entry.topic}/${entry.partition}`;
      const offset = next.get(slot) ?? base.get(slot);
      if (offset === undefined) {
        entry.reject(new BrokerError("the broker did not report an offset", true));
        continue;
      }
      next.set(slot, offset + 1);
      entry.resolve({ partition: entry.partition, offset });
    }
  }
}
