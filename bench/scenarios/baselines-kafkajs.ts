/**
 * Baselines of the Kafka path: kafkajs producing directly to the bench's Kafka
 * broker (lib/kafkajs-direct.ts: streamgate's producer settings, its topic
 * layout and partitioner).
 *
 * - baseline-kafkajs-naive: SEND_CONCURRENCY loops, each awaiting one send() of
 *   one message at a time: what an application gets by writing to Kafka per
 *   request, at ghz's SendData concurrency. (kafkajs's idempotent producer
 *   holds one request per broker in flight, so these sends queue behind each
 *   other: that is the cost streamgate's batcher is there to beat.) SendData's
 *   Kafka rows measure it again, in rounds beside streamgate.
 * - baseline-kafkajs-batched: BATCHED_LOOPS loops, each awaiting sendBatch() of
 *   BATCH_SIZE messages: about what the broker and kafkajs can take.
 *
 * Both follow a warm-up of the freshly started broker (baselines run first).
 */
import type { Scenario } from "../lib/context.js";
import { BATCH_SIZE, BATCHED_LOOPS, openDirect, type DirectPhase } from "../lib/kafkajs-direct.js";
import type { BenchResult } from "../lib/result.js";
import { SEND_CONCURRENCY, SEND_PAYLOADS } from "./baselines-rpc.js";

export const baselinesKafkajs: Scenario = {
  name: "baselines-kafkajs",
  description: `kafkajs producing directly to the bench's Kafka: one send per message (${SEND_CONCURRENCY} loops) and sendBatch of ${BATCH_SIZE}`,
  async run(context) {
    if (!context.brokers.includes("kafka")) return [];
    const direct = await openDirect(context.kafkaBrokers);
    try {
      const naiveLoops = context.quick ? 4 : SEND_CONCURRENCY;
      // Smoke mode has four phases to get through in about a second.
      const seconds = context.quick ? Math.min(context.durationSec, 0.25) : context.durationSec;
      const warmedSec = await direct.warmUp(naiveLoops, context.quick);
      const rows: BenchResult[] = [];
      for (const payloadBytes of SEND_PAYLOADS) {
        rows.push(
          directRow("baseline-kafkajs-naive", naiveLoops, payloadBytes, await direct.naive(payloadBytes, naiveLoops, seconds), {
            "per call": "1 message",
            "warm-up s": Math.round(warmedSec),
          }),
        );
        rows.push(
          directRow("baseline-kafkajs-batched", BATCHED_LOOPS, payloadBytes, await direct.batched(payloadBytes, seconds), {
            "per call": `${BATCH_SIZE} messages (latency per call)`,
          }),
        );
      }
      return rows;
    } finally {
      await direct.close();
    }
  },
};

function directRow(scenario: string, concurrency: number, payloadBytes: number, phase: DirectPhase, extra: Record<string, string | number>): BenchResult {
  return {
    scenario,
    broker: "kafka",
    concurrency,
    payloadBytes,
    throughput: phase.rps,
    unit: "msg/s",
    latencyMs: phase.latencyMs,
    errors: phase.errors,
    extra: { ...extra, acks: "all, idempotent", ...(phase.firstError ? { "first error": phase.firstError.slice(0, 200) } : {}) },
  };
}
