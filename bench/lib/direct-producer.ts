/**
 * A Kafka client producing directly to the bench's Kafka broker, what an
 * application's own code would do instead of going through streamgate: an
 * idempotent producer with acks=all, to a fresh topic with the partition count
 * of streamgate's ingest topic (deleted on close), keys spread over the send
 * scenarios' 16 streams, each message's partition chosen by streamgate's own
 * partitioner (src/broker/partitioner.ts, the same murmur2). One shape, two
 * clients: kafkajs (lib/kafkajs-direct.ts) and @platformatic/kafka
 * (lib/platformatic-direct.ts); this file holds what they share (the load
 * shapes, the timing and the warm-up). The Kafka baselines
 * (scenarios/baselines-kafka.ts) and SendData's Kafka rounds
 * (scenarios/senddata.ts) load the broker through them.
 *
 * It runs in the bench process (the load generator's place), so the producer
 * shares the machine with the broker as streamgate does. Records are key and
 * value only, as an application would write them (streamgate adds two small
 * headers).
 */
import { performance } from "node:perf_hooks";
import { partitionForKey } from "../../src/broker/partitioner.js";
import { streamIds } from "./load.js";
import { type Latency, percentiles } from "./result.js";
import type { RoundPhase } from "./rounds.js";

/** Messages per call of the batched load. */
export const BATCH_SIZE = 100;
/** Concurrent batched loops: a few, so a batch is always being prepared while one is on the wire. */
export const BATCHED_LOOPS = 4;
/** Fewest and most one-second warm-up slices, and how close two in a row must be to call the broker warm. */
const WARMUP_MIN_SLICES = 5;
const WARMUP_MAX_SLICES = 10;
const WARMUP_STEADY = 0.15;
/** Metadata polls (100 ms apart) for a new topic's leaders. */
const LEADER_ATTEMPTS = 20;

/** What one timed phase measured: a round's phase (rounds.ts) with messages as its count. */
export interface DirectPhase extends RoundPhase {
  /** Percentiles of each call's milliseconds (one message, or one batch). */
  latencyMs: Latency;
  firstError?: string;
}

/** A connected producer and its topic; `close()` when done (it deletes the topic). */
export interface DirectProducer {
  /** `loops` concurrent loops, each awaiting one send of one message at a time, for `seconds`. */
  naive(payloadBytes: number, loops: number, seconds: number): Promise<DirectPhase>;
  /** {@link BATCHED_LOOPS} concurrent loops, each awaiting one send of {@link BATCH_SIZE} messages, for `seconds`. */
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

/** What a client provides: its messages and its producer's calls, each awaiting the broker's acks (all replicas). */
export interface DirectSender<M> {
  /** The client's message for stream `key` with `value`, to `partition` (prepared once per payload size). */
  message(key: string, value: Buffer, partition: number): M;
  /** Sends one message, as an application writing to Kafka per request would. */
  sendOne(message: M): Promise<unknown>;
  /** Sends `messages` in one call. */
  sendMany(messages: M[]): Promise<unknown>;
  /** Closes the producer and deletes the topic. */
  close(): Promise<void>;
}

/** The topic layout of streamgate's servers, which inherit the bench's environment. */
export function topicLayout(): { partitions: number; replication: number } {
  return {
    partitions: Number(process.env.KAFKA_PARTITIONS ?? 6),
    replication: Number(process.env.KAFKA_REPLICATION ?? -1),
  };
}

/** A fresh topic name for `client`'s producer. */
export function directTopic(client: string): string {
  return `bench-${client}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
}

/** The {@link DirectProducer} over `sender`, whose topic has `partitions` partitions. */
export function directProducer<M>(sender: DirectSender<M>, partitions: number): DirectProducer {
  const messagesOf = (payloadBytes: number): M[] => {
    const value = Buffer.alloc(payloadBytes, 0x61);
    // One message per stream key, with the partition streamgate's partitioner.ts would pick (as it passes it to its client).
    return streamIds().map((key) => sender.message(key, value, partitionForKey(key, partitions)));
  };
  const naive = (messages: M[], loops: number, seconds: number) =>
    timed(seconds, loops, 1, (first) => sender.sendOne(messages[first % messages.length]!));
  const batched = (messages: M[], seconds: number) =>
    timed(seconds, BATCHED_LOOPS, BATCH_SIZE, (first) =>
      sender.sendMany(Array.from({ length: BATCH_SIZE }, (_, i) => messages[(first + i) % messages.length]!)),
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
    close: () => sender.close(),
  };
}

/**
 * Runs `loops` concurrent loops for `seconds`, each awaiting `call` again as
 * soon as the previous one ends; `call(first)` sends `perCall` messages
 * starting at the global message number `first` (keys round robin). A failed
 * call counts as errors, not messages.
 */
async function timed(
  seconds: number,
  loops: number,
  perCall: number,
  call: (first: number) => Promise<unknown>,
): Promise<DirectPhase> {
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
  return {
    count: messages,
    seconds: elapsed,
    rps: messages / elapsed,
    latencyMs: percentiles(latencies),
    errors,
    ...(firstError ? { firstError } : {}),
  };
}

/**
 * Creates a topic with `create` and waits until its `partitions` partitions
 * have leaders, by `leaders` (each listed partition's leader, -1 for none; it
 * may throw while the topic is unknown). As in streamgate's broker, a KRaft
 * broker may answer UNKNOWN_TOPIC_OR_PARTITION for a moment after creating
 * it: the metadata is polled until it lists them all. A creation error that
 * `tolerated` accepts is left to the polling to judge.
 */
export async function createTopicWithLeaders(
  topic: string,
  partitions: number,
  create: () => Promise<unknown>,
  leaders: () => Promise<number[]>,
  tolerated: (error: unknown) => boolean = () => false,
): Promise<void> {
  try {
    await create();
  } catch (error) {
    if (!tolerated(error)) throw error;
  }
  for (let attempt = 1; ; attempt++) {
    try {
      const found = await leaders();
      if (found.length === partitions && found.every((leader) => leader >= 0)) return;
    } catch (error) {
      if (attempt >= LEADER_ATTEMPTS) throw error;
    }
    if (attempt >= LEADER_ATTEMPTS)
      throw new Error(`topic ${topic}: partitions without a leader after ${attempt} attempts`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
