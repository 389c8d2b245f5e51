/**
 * Baselines of the Kafka path: what an application's own code gets producing
 * directly to the bench's Kafka broker, with each of two clients
 * (lib/direct-producer.ts: idempotent, acks=all, streamgate's topic layout and
 * partitioner): kafkajs 2.2.4 (plain, installed by the bench into
 * .tools/kafkajs, not a project dependency) and @platformatic/kafka.
 *
 * - baseline-<client>-naive: SEND_CONCURRENCY loops, each awaiting one send of
 *   one message at a time: what an application gets by writing to Kafka per
 *   request, at ghz's SendData concurrency. (kafkajs's idempotent producer
 *   holds one request per broker in flight, so its sends queue behind each
 *   other: that is the cost streamgate's batcher is there to beat.) SendData's
 *   Kafka rows measure both again, in rounds beside streamgate.
 * - baseline-<client>-batched: BATCHED_LOOPS loops, each awaiting a send of
 *   BATCH_SIZE messages (kafkajs: sendBatch): about what the broker and the
 *   client can take.
 *
 * Each client's rows follow its own warm-up (the first also warms the freshly
 * started broker: baselines run first).
 */
import type { Scenario } from "../lib/context.js";
import { BATCH_SIZE, BATCHED_LOOPS, type DirectPhase, type DirectProducer } from "../lib/direct-producer.js";
import { openKafkajsDirect } from "../lib/kafkajs-direct.js";
import { openPlatformaticDirect } from "../lib/platformatic-direct.js";
import type { BenchResult } from "../lib/result.js";
import { SEND_CONCURRENCY, SEND_PAYLOADS } from "./baselines-rpc.js";

/** A client producing directly: its rows are baseline-<name>-naive and baseline-<name>-batched. */
export interface DirectClient {
  name: string;
  /** What it is, for the rows. */
  label: string;
  open(brokers: string): Promise<DirectProducer>;
}

/** The clients of the Kafka baselines, also measured beside streamgate by scenarios/senddata.ts. */
export const DIRECT_CLIENTS: DirectClient[] = [
  { name: "kafkajs", label: "kafkajs 2.2.4 (plain, .tools/kafkajs)", open: openKafkajsDirect },
  { name: "platformatic", label: "@platformatic/kafka", open: openPlatformaticDirect },
];

/** The scenario name of `client`'s naive row. */
export function naiveRow(client: DirectClient): string {
  return `baseline-${client.name}-naive`;
}

/** The scenario name of `client`'s batched row. */
function batchedRow(client: DirectClient): string {
  return `baseline-${client.name}-batched`;
}

export const baselinesKafka: Scenario = {
  name: "baselines-kafka",
  description: `${DIRECT_CLIENTS.map((client) => client.name).join(" and ")} producing directly to the bench's Kafka: one send per message (${SEND_CONCURRENCY} loops) and sends of ${BATCH_SIZE}`,
  rows: (brokers) =>
    brokers.includes("kafka")
      ? DIRECT_CLIENTS.flatMap((client) =>
          SEND_PAYLOADS.flatMap((payloadBytes) =>
            [naiveRow(client), batchedRow(client)].map((scenario) => ({
              scenario,
              broker: "kafka" as const,
              payloadBytes,
            })),
          ),
        )
      : [],
  async run(context) {
    if (!context.brokers.includes("kafka")) return [];
    const naiveLoops = context.quick ? 4 : SEND_CONCURRENCY;
    // Smoke mode has eight phases to get through in about two seconds.
    const seconds = context.quick ? Math.min(context.durationSec, 0.25) : context.durationSec;
    const rows: BenchResult[] = [];
    for (const client of DIRECT_CLIENTS) {
      const direct = await client.open(context.kafkaBrokers);
      try {
        const warmedSec = await direct.warmUp(naiveLoops, context.quick);
        for (const payloadBytes of SEND_PAYLOADS) {
          rows.push(
            directRow(
              naiveRow(client),
              naiveLoops,
              payloadBytes,
              await direct.naive(payloadBytes, naiveLoops, seconds),
              {
                client: client.label,
                "per call": "1 message",
                "warm-up s": Math.round(warmedSec),
              },
            ),
          );
          rows.push(
            directRow(batchedRow(client), BATCHED_LOOPS, payloadBytes, await direct.batched(payloadBytes, seconds), {
              client: client.label,
              "per call": `${BATCH_SIZE} messages (latency per call)`,
            }),
          );
        }
      } finally {
        await direct.close();
      }
    }
    return rows;
  },
};

/** A row of direct producing: messages per second. */
export function directRow(
  scenario: string,
  concurrency: number,
  payloadBytes: number,
  phase: Pick<DirectPhase, "rps" | "latencyMs" | "errors"> & { firstError?: string },
  extra: Record<string, string | number>,
): BenchResult {
  return {
    scenario,
    broker: "kafka",
    concurrency,
    payloadBytes,
    throughput: phase.rps,
    unit: "msg/s",
    latencyMs: phase.latencyMs,
    errors: phase.errors,
    extra: {
      ...extra,
      acks: "all, idempotent",
      ...(phase.firstError ? { "first error": phase.firstError.slice(0, 200) } : {}),
    },
  };
}
