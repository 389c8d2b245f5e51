/**
 * kafkajs producing directly to the bench's Kafka broker, with the producer
 * settings streamgate's own uses (src/broker/kafka.ts: idempotent, acks=all,
 * the same client timeouts and retries, partitions chosen by the same
 * murmur2), to a fresh topic with the partition count of streamgate's ingest
 * topic, keys spread over the send scenarios' 16 streams. The Kafka baselines
 * (scenarios/baselines-kafkajs.ts) and SendData's Kafka rounds
 * (scenarios/senddata.ts) both load the broker through it.
 *
 * It runs in the bench process (the load generator's place), so the producer
 * shares the machine with the broker as streamgate does. Records are key and
 * value only, as an application would write them (streamgate adds two small
 * headers).
 */
import { performance } from "node:perf_hooks";
import { Kafka, Partitioners, logLevel, type Admin } from "kafkajs";
import { partitionForKey } from "../../src/broker/partitioner.js";
import { streamIds } from "./load.js";
import { percentiles, type Latency } from "./result.js";
import type { RoundPhase } from "./rounds.js";

/** Messages per sendBatch call of the batched load. */
export const BATCH_SIZE = 100;
/** Concurrent sendBatch loops: a few, so a batch is always being prepared while one is on the wire. */
export const BATCHED_LOOPS = 4;
/** Fewest and most one-second warm-up slices, and how close two in a row must be to call the broker warm. */
const WARMUP_MIN_SLICES = 5;
const WARMUP_MAX_SLICES = 10;
const WARMUP_STEADY = 0.15;

/** What one timed phase measured: a round's phase (rounds.ts) with messages as its count. */
export interface DirectPhase extends RoundPhase {
  /** Percentiles of each call's milliseconds (one message, or one batch). */
  latencyMs: Latency;
  firstError?: string;
}

/** A connected producer and its topic; `close()` when done (it deletes the topic). */
export interface KafkajsDirect {
  /** `loops` concurrent loops, each awaiting one send() of one message at a time, for `seconds`. */
  naive(payloadBytes: number, loops: number, seconds: number): Promise<DirectPhase>;
  /** {@link BATCHED_LOOPS} concurrent loops, each awaiting sendBatch() of {@link BATCH_SIZE} messages, for `seconds`. */
  batched(payloadBytes: number, seconds: number): Promise<DirectPhase>;
  /**
   * Unmeasured naive sends until the broker is warm; returns the seconds it took.
   * The first sends fetch metadata and open the leader's connection, and a
   * broker just started gets faster for seconds while its JVM compiles the
   * produce path: naive sends went from ~290 to ~600-780 msg/s over their
   * first three 3-second slices, and two 1-second slices could agree while it
   * still climbed. So: at least 5 s, then until two slices agree.
   */
  warmUp(loops: number, quick: boolean): Promise<number>;
  close(): Promise<void>;
}

/** Connects a producer to `brokers` and creates its topic. */
export async function openDirect(brokers: string): Promise<KafkajsDirect> {
  // Streamgate's servers inherit the bench's environment, so these match its topics.
  const partitions = Number(process.env.KAFKA_PARTITIONS ?? 6);
  const replication = Number(process.env.KAFKA_REPLICATION ?? -1);
  const kafka = new Kafka({
    clientId: "bench-kafkajs",
    brokers: brokers.split(","),
    connectionTimeout: 3000,
    requestTimeout: 10_000,
    retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: 8 },
    // Failures surface as errors of the calls (counted, the first one shown); kafkajs logs
    // retried hiccups at ERROR too (a coordinator still loading right after start).
    logLevel: logLevel.NOTHING,
  });
  const admin = kafka.admin();
  const producer = kafka.producer({
    idempotent: true,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
    retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: Number.MAX_SAFE_INTEGER },
  });
  const topic = `bench-kafkajs-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  const close = async () => {
    await producer.disconnect().catch(() => undefined);
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
  };
  try {
    await admin.connect();
    await createTopic(admin, topic, partitions, replication);
    await producer.connect();
  } catch (error) {
    await close();
    throw error;
  }
  const messagesOf = (payloadBytes: number) => makeMessages(Buffer.alloc(payloadBytes, 0x61), partitions);
  const naive = (messages: Message[], loops: number, seconds: number) =>
    timed(seconds, loops, 1, (first) => producer.send({ topic, acks: -1, messages: [messages[first % messages.length]!] }));
  const batched = (messages: Message[], seconds: number) =>
    timed(seconds, BATCHED_LOOPS, BATCH_SIZE, (first) =>
      producer.sendBatch({
        acks: -1,
        topicMessages: [{ topic, messages: Array.from({ length: BATCH_SIZE }, (_, i) => messages[(first + i) % messages.length]!) }],
      }),
    );
  return {
    naive: (payloadBytes, loops, seconds) => naive(messagesOf(payloadBytes), loops, seconds),
    batched: (payloadBytes, seconds) => batched(messagesOf(payloadBytes), seconds),
    async warmUp(loops, quick) {
      const messages = messagesOf(128);
      let warmedSec = (await batched(messages, quick ? 0.1 : 1)).seconds;
      let previous = 0;
      for (let slice = 0; slice < (quick ? 1 : WARMUP_MAX_SLICES); slice++) {
        const phase = await naive(messages, loops, quick ? 0.1 : 1);
        warmedSec += phase.seconds;
        if (slice + 1 >= WARMUP_MIN_SLICES && Math.abs(phase.rps - previous) <= WARMUP_STEADY * previous) break;
        previous = phase.rps;
      }
      return warmedSec;
    },
    close,
  };
}

/** A message as streamgate hands it to kafkajs: its partition chosen already. */
interface Message {
  key: string;
  value: Buffer;
  partition: number;
}

/** One message per stream key, with the partition streamgate's partitioner.ts would pick (as it passes it to kafkajs). */
function makeMessages(value: Buffer, partitions: number): Message[] {
  return streamIds().map((key) => ({ key, value, partition: partitionForKey(key, partitions) }));
}

/**
 * Runs `loops` concurrent loops for `seconds`, each awaiting `call` again as
 * soon as the previous one ends; `call(first)` sends `perCall` messages
 * starting at the global message number `first` (keys round robin). A failed
 * call counts as errors, not messages.
 */
async function timed(seconds: number, loops: number, perCall: number, call: (first: number) => Promise<unknown>): Promise<DirectPhase> {
  const latencies: number[] = [];
  let messages = 0;
  let errors = 0;
  let firstError: string | undefined;
  let next = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  const loop = async () => {
    while (performance.now() < end) {
      const first = next;
      next += perCall;
      const began = performance.now();
      try {
        await call(first);
        latencies.push(performance.now() - began);
        messages += perCall;
      } catch (error) {
        errors += perCall;
        firstError ??= (error as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: loops }, loop));
  // Every call started counts (as ghz's --duration-stop wait): the phase lasts until the last one ends.
  const elapsed = (performance.now() - start) / 1000;
  return { count: messages, seconds: elapsed, rps: messages / elapsed, latencyMs: percentiles(latencies), errors, ...(firstError ? { firstError } : {}) };
}

/**
 * Creates the topic and waits until its partitions have leaders. As in
 * src/broker/kafka.ts, a KRaft broker may answer UNKNOWN_TOPIC_OR_PARTITION for
 * a moment after creating it: the metadata is polled until it lists them all.
 */
async function createTopic(admin: Admin, topic: string, partitions: number, replication: number): Promise<void> {
  try {
    await admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic, numPartitions: partitions, replicationFactor: replication }],
    });
  } catch (error) {
    if ((error as { type?: unknown }).type !== "UNKNOWN_TOPIC_OR_PARTITION") throw error;
  }
  for (let attempt = 1; ; attempt++) {
    try {
      const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
      const found = metadata.topics[0]?.partitions ?? [];
      if (found.length === partitions && found.every((partition) => partition.leader >= 0)) return;
    } catch (error) {
      if (attempt >= 20) throw error;
    }
    if (attempt >= 20) throw new Error(`topic ${topic}: partitions without a leader after ${attempt} attempts`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
