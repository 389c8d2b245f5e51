/**
 * The Kafka broker (Apache Kafka or Redpanda) through kafkajs: an idempotent
 * producer with acks=all behind a batcher, topics created when missing,
 * consumer groups for subscriptions, and random-access reads for catch-up.
 */
import { randomUUID } from "node:crypto";
import {
  Kafka,
  Partitioners,
  logLevel as KafkaLogLevel,
  type Admin,
  type Consumer,
  type KafkaMessage,
  type LogEntry,
  type Producer,
  type SASLOptions,
} from "kafkajs";
import { BrokerError, RecordTooLargeError } from "../errors.js";
import type { Logger } from "../logger.js";
import type {
  Broker,
  PartitionOffsets,
  ProduceOptions,
  ProduceRecord,
  RecordHeaders,
  RecordPosition,
  StoredRecord,
  SubscribeOptions,
  Subscription,
  TopicSpec,
} from "./broker.js";
import { createPartitionReader, type PartitionReader } from "./kafka-reader.js";
import { partitionForKey } from "./partitioner.js";
import { ProduceBatcher, type PendingRecord } from "./produce-batcher.js";

/**
 * The most bytes one produce request carries: below Kafka's default
 * message.max.bytes (1048588), which bounds a partition's whole record batch,
 * so only a record that is too large by itself is ever refused as too large.
 */
const MAX_REQUEST_BYTES = 1_000_000;
/** Kafka's error types for a record (batch) over the broker's size limit. */
const TOO_LARGE = new Set(["MESSAGE_TOO_LARGE", "RECORD_LIST_TOO_LARGE"]);

/** Whether kafkajs's error says the broker refused a record as too large. */
function tooLarge(error: unknown): boolean {
  const answer = error as { type?: unknown; cause?: { type?: unknown } } | undefined;
  return TOO_LARGE.has(String(answer?.type)) || TOO_LARGE.has(String(answer?.cause?.type));
}

/** How to reach and use a Kafka cluster. */
export interface KafkaBrokerOptions {
  brokers: string[];
  clientId: string;
  /** Replication factor of topics this broker creates. */
  replication: number;
  /** TLS to the brokers (system CAs, or `ca`). */
  tls: boolean;
  ca: string | undefined;
  sasl: SASLOptions | undefined;
  /** Producer batching: see {@link ProduceBatcher}. */
  lingerMs: number;
  maxBatchRecords: number;
  /** A produce not acknowledged within this fails with UNAVAILABLE. */
  produceTimeoutMs: number;
  logger: Logger;
}

/** Creates the Kafka broker and connects its producer and admin client. */
export async function createKafkajsBroker(options: KafkaBrokerOptions): Promise<Broker> {
  const broker = new KafkaBroker(options);
  await broker.connect();
  return broker;
}

class KafkaBroker implements Broker {
  readonly kind = "kafka";
  private readonly kafka: Kafka;
  private readonly admin: Admin;
  private readonly producer: Producer;
  private readonly reader: PartitionReader;
  private readonly batcher: ProduceBatcher;
  private readonly partitions = new Map<string, number>();
  private readonly consumers = new Set<Consumer>();

  constructor(private readonly options: KafkaBrokerOptions) {
    const log = options.logger.child({ component: "kafkajs" });
    this.kafka = new Kafka({
      clientId: options.clientId,
      brokers: options.brokers,
      ssl: options.tls ? (options.ca ? { ca: [options.ca] } : true) : false,
      sasl: options.sasl,
      connectionTimeout: 3000,
      requestTimeout: 10_000,
      // Retries back off to at most 2 s, so a broker that comes back is used again quickly.
      retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: 8 },
      logLevel: KafkaLogLevel.WARN,
      logCreator: () => (entry: LogEntry) => logKafka(log, entry),
    });
    this.admin = this.kafka.admin();
    this.producer = this.kafka.producer({
      idempotent: true,
      allowAutoTopicCreation: false,
      // Partitions are chosen by streamgate (partitioner.ts, the same murmur2).
      createPartitioner: Partitioners.DefaultPartitioner,
      // Unbounded retries keep the idempotent producer's ordering; callers get
      // their UNAVAILABLE from the batcher's deadline instead.
      retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: Number.MAX_SAFE_INTEGER },
    });
    this.reader = createPartitionReader(this.kafka);
    this.batcher = new ProduceBatcher((batch) => this.sendBatch(batch), {
      lingerMs: options.lingerMs,
      maxRecords: options.maxBatchRecords,
      maxBytes: MAX_REQUEST_BYTES,
      timeoutMs: options.produceTimeoutMs,
    });
  }

  async connect(): Promise<void> {
    await this.admin.connect();
    await this.producer.connect();
    await this.reader.connect();
  }

  async ensureTopics(specs: TopicSpec[]): Promise<void> {
    const existing = new Set(await this.admin.listTopics());
    const missing = specs.filter((spec) => !existing.has(spec.name));
    if (missing.length > 0) {
      try {
        await this.admin.createTopics({
          waitForLeaders: true,
          topics: missing.map((spec) => ({
            topic: spec.name,
            numPartitions: spec.partitions,
            replicationFactor: this.options.replication,
            configEntries: spec.compacted ? [{ name: "cleanup.policy", value: "compact" }] : [],
          })),
        });
      } catch (error) {
        // Once the topics are created, kafkajs waits for their leaders and gives up
        // on UNKNOWN_TOPIC_OR_PARTITION, which a KRaft broker answers for a moment
        // while it applies the creation (the process then failed to start). The
        // topics exist: the metadata read below waits for them.
        if ((error as { type?: unknown }).type !== "UNKNOWN_TOPIC_OR_PARTITION") throw error;
      }
    }
    // Existing topics keep their partition counts; keys are placed by what exists.
    const metadata = await retryTransient(() => this.admin.fetchTopicMetadata({ topics: specs.map((spec) => spec.name) }));
    for (const topic of metadata.topics) this.partitions.set(topic.name, topic.partitions.length);
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

  async fetch(topic: string, partition: number, offset: number, maxRecords: number): Promise<StoredRecord[]> {
    try {
      const messages = await this.reader.read(topic, partition, offset);
      return messages.slice(0, maxRecords).map((message) => toStored(topic, partition, message));
    } catch (error) {
      throw new BrokerError("reading from the broker failed", true, { cause: error });
    }
  }

  async offsets(topic: string, partition: number): Promise<PartitionOffsets> {
    try {
      const all = await retryTransient(() => this.admin.fetchTopicOffsets(topic));
      const found = all.find((entry) => entry.partition === partition);
      if (!found) throw new Error(`topic ${topic} has no partition ${partition}`);
      return { low: Number(found.low), high: Number(found.high) };
    } catch (error) {
      throw new BrokerError("reading offsets from the broker failed", true, { cause: error });
    }
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    // kafkajs reads only in groups; a subscriber without one gets a group of its own.
    const groupId = options.groupId ?? `${this.options.clientId}-${randomUUID()}`;
    const consumer = this.kafka.consumer({
      groupId,
      allowAutoTopicCreation: false,
      // Low fetch wait: results and registry changes should arrive in milliseconds.
      maxWaitTimeInMs: 50,
      // A crashed member's partitions move to the others (or to its restart)
      // after this; Kafka's lower bound is 6 s by default.
      sessionTimeout: 10_000,
      heartbeatInterval: 3000,
      retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: Number.MAX_SAFE_INTEGER },
    });
    this.consumers.add(consumer);
    const { topic } = options;
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: options.from === "earliest" });
    // Where each partition resumes when the consumer (re)joins its group. A
    // subscriber without a group commits nothing, so when kafkajs restarts a
    // crashed consumer (after a broker outage) it would begin again at `from`
    // ("latest") and skip whatever was written meanwhile; it resumes after the
    // last record delivered instead. A group resumes from its committed offsets,
    // so for one only `startOffsets` apply, at the first join.
    const resume: Array<number | undefined> = [...(options.startOffsets ?? [])];
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      // Emitted after the join and before the first fetch of the new generation.
      options.onAssignment?.(payload.memberAssignment[topic] ?? []);
      resume.forEach((offset, partition) => {
        if (offset !== undefined) consumer.seek({ topic, partition, offset: String(offset) });
      });
      if (options.groupId) resume.length = 0;
    });
    /** Batches being handled, which a close waits for. */
    const handling = new Set<Promise<void>>();
    let closing = false;
    await consumer.run({
      autoCommit: false,
      partitionsConsumedConcurrently: this.partitionCount(topic),
      eachBatch: async ({ batch, heartbeat }) => {
        const records = batch.messages.map((message) => toStored(topic, batch.partition, message));
        if (records.length === 0 || closing) return;
        // A batch may wait (backpressure); keep the group membership alive meanwhile.
        const beat = setInterval(() => heartbeat().catch(() => undefined), 3000);
        let handled: Promise<void> | undefined;
        try {
          handled = options.eachBatch({ topic, partition: batch.partition, records, highWatermark: Number(batch.highWatermark) });
          handling.add(handled);
          await handled;
          if (!options.groupId) resume[batch.partition] = records[records.length - 1]!.offset + 1;
        } catch (error) {
          options.onError?.(error);
          throw error;
        } finally {
          if (handled) handling.delete(handled);
          clearInterval(beat);
        }
      },
    });
    return {
      commit: async (partition, nextOffset) => {
        if (!options.groupId) throw new Error("commit needs a consumer group");
        try {
          await consumer.commitOffsets([{ topic, partition, offset: String(nextOffset) }]);
        } catch (error) {
          // The broker unreachable, or the consumer between a crash and its restart
          // (kafkajs: "Consumer group was not initialized"): a later commit covers it.
          throw new BrokerError("committing offsets to the broker failed", true, { cause: error });
        }
      },
      close: async (beforeLeaving) => {
        this.consumers.delete(consumer);
        // Stop fetching and handling, but stay in the group until `beforeLeaving` has run.
        closing = true;
        try {
          consumer.pause([{ topic }]);
        } catch {
          // Between a crash and kafkajs's restart of the consumer there is no group to pause.
        }
        await Promise.allSettled([...handling]);
        try {
          await beforeLeaving?.();
        } finally {
          await consumer.disconnect();
        }
      },
    };
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.consumers].map((consumer) => consumer.disconnect()));
    await Promise.allSettled([this.producer.disconnect(), this.admin.disconnect(), this.reader.disconnect()]);
  }

  /** Whether the cluster answers a metadata request within `timeoutMs`. */
  async probe(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    try {
      return await Promise.race([this.reader.ping().then(() => true, () => false), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async sendBatch(batch: PendingRecord[]): Promise<void> {
    const byTopic = new Map<string, PendingRecord[]>();
    for (const entry of batch) {
      const list = byTopic.get(entry.topic);
      if (list) list.push(entry);
      else byTopic.set(entry.topic, [entry]);
    }
    let metadata;
    try {
      metadata = await this.producer.sendBatch({
        acks: -1,
        topicMessages: [...byTopic].map(([topic, entries]) => ({
          topic,
          messages: entries.map(({ partition, record }) => ({
            key: record.key,
            value: record.tombstone ? null : Buffer.from(record.value.buffer, record.value.byteOffset, record.value.byteLength),
            headers: record.headers,
            partition,
            timestamp: record.timestamp === undefined ? undefined : String(record.timestamp),
          })),
        })),
      });
    } catch (error) {
      // Only a single record can be over the limit (the batcher's maxBytes is below it): it never will fit.
      if (tooLarge(error)) throw new RecordTooLargeError({ cause: error });
      throw new BrokerError("the broker did not store the records", true, { cause: error });
    }
    // Records of one partition are stored contiguously from its base offset, in order.
    const base = new Map(metadata.map((entry) => [`${entry.topicName}/${entry.partition}`, Number(entry.baseOffset)]));
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

/** Attempts of {@link retryTransient}; the pauses between them add up to about 3 s. */
const TRANSIENT_ATTEMPTS = 6;

/**
 * Calls `call` again after a pause while a broker answers it with an error
 * Kafka marks retriable. kafkajs's admin.fetchTopicOffsets gives up at once on
 * NOT_LEADER_OR_FOLLOWER, which a broker answers for a moment after a topic is
 * created (its metadata names the new leader before the leader serves the
 * partition): startApp's first offsets() of fresh topics failed that way.
 * Connection errors are not retried here: a broker that is down is reported
 * as soon as kafkajs gives up on it.
 */
async function retryTransient<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const answer = error as { name?: unknown; retriable?: unknown };
      const transient = answer.name === "KafkaJSProtocolError" && answer.retriable === true;
      if (attempt >= TRANSIENT_ATTEMPTS || !transient) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** (attempt - 1)));
    }
  }
}

function toStored(topic: string, partition: number, message: KafkaMessage): StoredRecord {
  const value = message.value ?? Buffer.alloc(0);
  return {
    topic,
    partition,
    offset: Number(message.offset),
    key: message.key?.toString("utf8") ?? "",
    value: new Uint8Array(value.buffer, value.byteOffset, value.byteLength),
    headers: toHeaders(message.headers),
    timestamp: Number(message.timestamp),
  };
}

function toHeaders(headers: KafkaMessage["headers"]): RecordHeaders {
  const result: RecordHeaders = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (value === undefined) continue;
    const last = Array.isArray(value) ? value[value.length - 1] : value;
    if (last !== undefined) result[name] = last.toString();
  }
  return result;
}

function logKafka(logger: Logger, entry: LogEntry): void {
  const { message, ...rest } = entry.log;
  const fields = { namespace: entry.namespace, ...rest };
  if (entry.level === KafkaLogLevel.ERROR) logger.error(fields, message);
  else if (entry.level === KafkaLogLevel.WARN) logger.warn(fields, message);
  else if (entry.level === KafkaLogLevel.INFO) logger.info(fields, message);
  else logger.debug(fields, message);
}
