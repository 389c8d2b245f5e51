/**
 * Baselines of the Kafka path: kafkajs producing directly to the bench's Kafka
 * broker, with the producer settings streamgate's own uses (src/broker/kafka.ts:
 * idempotent, acks=all, the same client timeouts and retries, partitions chosen
 * by the same murmur2), to a fresh topic with the partition count of
 * streamgate's ingest topic, keys spread over the send scenarios' 16 streams.
 *
 * - baseline-kafkajs-naive: SEND_CONCURRENCY loops, each awaiting one send() of
 *   one message at a time: what an application gets by writing to Kafka per
 *   request, at ghz's SendData concurrency. (kafkajs's idempotent producer
 *   holds one request per broker in flight, so these sends queue behind each
 *   other: that is the cost streamgate's batcher is there to beat.)
 * - baseline-kafkajs-batched: BATCHED_LOOPS loops, each awaiting sendBatch() of
 *   BATCH_SIZE messages: about what the broker and kafkajs can take.
 *
 * Both run in the bench process (the load generator's place), so the producer
 * shares the machine with the broker as streamgate does, after a warm-up of the
 * freshly started broker (see run()). Records are key and value only, as an
 * application would write them (streamgate adds two small headers).
 */
import { performance } from "node:perf_hooks";
import { Kafka, Partitioners, logLevel, type Admin } from "kafkajs";
import { partitionForKey } from "../../src/broker/partitioner.js";
import type { Scenario } from "../lib/context.js";
import { streamIds } from "../lib/load.js";
import { percentiles, type BenchResult } from "../lib/result.js";
import { SEND_CONCURRENCY, SEND_PAYLOADS } from "./baselines-rpc.js";

/** Messages per sendBatch call of the batched baseline. */
const BATCH_SIZE = 100;
/** Concurrent sendBatch loops: a few, so a batch is always being prepared while one is on the wire. */
const BATCHED_LOOPS = 4;
/** Fewest and most one-second warm-up slices, and how close two in a row must be to call the broker warm. */
const WARMUP_MIN_SLICES = 5;
const WARMUP_MAX_SLICES = 10;
const WARMUP_STEADY = 0.15;

/** A message as streamgate hands it to kafkajs: its partition chosen already. */
interface Message {
  key: string;
  value: Buffer;
  partition: number;
}

/** What one timed phase measured. */
interface Phase {
  messages: number;
  seconds: number;
  /** Milliseconds of each call (one message, or one batch). */
  latencies: number[];
  errors: number;
  firstError?: string;
}

export const baselinesKafkajs: Scenario = {
  name: "baselines-kafkajs",
  description: `kafkajs producing directly to the bench's Kafka: one send per message (${SEND_CONCURRENCY} loops) and sendBatch of ${BATCH_SIZE}`,
  async run(context) {
    if (!context.brokers.includes("kafka")) return [];
    // Streamgate's servers inherit the bench's environment, so these match its topics.
    const partitions = Number(process.env.KAFKA_PARTITIONS ?? 6);
    const replication = Number(process.env.KAFKA_REPLICATION ?? -1);
    const kafka = new Kafka({
      clientId: "bench-kafkajs",
      brokers: context.kafkaBrokers.split(","),
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
    await admin.connect();
    try {
      await createTopic(admin, topic, partitions, replication);
      await producer.connect();
      const naiveLoops = context.quick ? 4 : SEND_CONCURRENCY;
      const naive = (messages: Message[], seconds: number) =>
        timed(seconds, naiveLoops, 1, (first) => producer.send({ topic, acks: -1, messages: [messages[first % messages.length]!] }));
      const batched = (messages: Message[], seconds: number) =>
        timed(seconds, BATCHED_LOOPS, BATCH_SIZE, (first) =>
          producer.sendBatch({
            acks: -1,
            topicMessages: [{ topic, messages: Array.from({ length: BATCH_SIZE }, (_, i) => messages[(first + i) % messages.length]!) }],
          }),
        );
      // Smoke mode has four phases to get through in about a second.
      const seconds = context.quick ? Math.min(context.durationSec, 0.25) : context.durationSec;
      // Unmeasured: the first sends fetch metadata and open the leader's
      // connection, and a broker just started (as the bench's is, baselines
      // running first) gets faster for seconds while its JVM compiles the
      // produce path: naive sends went from ~290 to ~600-780 msg/s over their
      // first three 3-second slices, and two 1-second slices could agree while
      // it still climbed. Warm up for at least 5 s, then until two slices agree.
      const warmup = makeMessages(Buffer.alloc(SEND_PAYLOADS[0]!, 0x61), partitions);
      let warmedSec = (await batched(warmup, context.quick ? 0.1 : 1)).seconds;
      let previous = 0;
      for (let slice = 0; slice < (context.quick ? 1 : WARMUP_MAX_SLICES); slice++) {
        const phase = await naive(warmup, context.quick ? 0.1 : 1);
        warmedSec += phase.seconds;
        const rate = phase.messages / phase.seconds;
        if (slice + 1 >= WARMUP_MIN_SLICES && Math.abs(rate - previous) <= WARMUP_STEADY * previous) break;
        previous = rate;
      }

      const rows: BenchResult[] = [];
      for (const payloadBytes of SEND_PAYLOADS) {
        const messages = makeMessages(Buffer.alloc(payloadBytes, 0x61), partitions);
        rows.push(
          row("baseline-kafkajs-naive", naiveLoops, payloadBytes, await naive(messages, seconds), {
            "per call": "1 message",
            "warm-up s": Math.round(warmedSec),
          }),
        );
        rows.push(
          row("baseline-kafkajs-batched", BATCHED_LOOPS, payloadBytes, await batched(messages, seconds), {
            "per call": `${BATCH_SIZE} messages (latency per call)`,
          }),
        );
      }
      return rows;
    } finally {
      await producer.disconnect().catch(() => undefined);
      await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
      await admin.disconnect().catch(() => undefined);
    }
  },
};

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
async function timed(seconds: number, loops: number, perCall: number, call: (first: number) => Promise<unknown>): Promise<Phase> {
  const phase: Phase = { messages: 0, seconds: 0, latencies: [], errors: 0 };
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
        phase.latencies.push(performance.now() - began);
        phase.messages += perCall;
      } catch (error) {
        phase.errors += perCall;
        phase.firstError ??= (error as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: loops }, loop));
  // Every call started counts (as ghz's --duration-stop wait): the phase lasts until the last one ends.
  phase.seconds = (performance.now() - start) / 1000;
  return phase;
}

function row(scenario: string, concurrency: number, payloadBytes: number, phase: Phase, extra: Record<string, string | number>): BenchResult {
  return {
    scenario,
    broker: "kafka",
    concurrency,
    payloadBytes,
    throughput: phase.messages / phase.seconds,
    unit: "msg/s",
    latencyMs: percentiles(phase.latencies),
    errors: phase.errors,
    extra: { ...extra, acks: "all, idempotent", ...(phase.firstError ? { "first error": phase.firstError.slice(0, 200) } : {}) },
  };
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
