/**
 * SendData unary on Kafka with WORKERS=1 and WORKERS=2 (README "Every core:
 * WORKERS"), in the same interleaved rounds: 128 B raw payloads over 16
 * streams, 64 callers spread over 8 connections (the primary hands
 * connections, not calls, to the workers). Each row gives throughput and the
 * server's CPU time per call, the primary's and its workers' together; the
 * two-worker row gives its ratio to the one-worker row. No target: how much
 * a second worker gains depends on the cores left to it beside the load
 * generator and the broker, which on a small machine share them.
 */
import type { BrokerKind, RowKey, Scenario } from "../lib/context.js";
import { AUTH, sendRequests, startStreams } from "../lib/load.js";
import { withServer } from "../lib/processes.js";
import type { BenchResult } from "../lib/result.js";
import { ghzSubject, type RoundsReport, roundRatios, runRounds } from "../lib/rounds.js";
import { SEND_CONCURRENCY } from "./baselines-rpc.js";

const PAYLOAD_BYTES = 128;
const CONNECTIONS = 8;
const ROUNDS = 3;
const WORKER_COUNTS = [1, 2] as const;

/** The row of `workers` workers. */
function rowName(workers: number): string {
  return `senddata-workers-${workers}`;
}

export const sendDataWorkers: Scenario = {
  name: "senddata-workers",
  description:
    "SendData unary on Kafka with WORKERS=1 and WORKERS=2 in the same rounds, 64 callers on 8 connections (ghz)",
  rows: (brokers: readonly BrokerKind[]): RowKey[] =>
    brokers.includes("kafka")
      ? WORKER_COUNTS.map((workers) => ({ scenario: rowName(workers), broker: "kafka", payloadBytes: PAYLOAD_BYTES }))
      : [],
  async run(context) {
    if (!context.brokers.includes("kafka")) return [];
    const concurrency = context.quick ? 4 : SEND_CONCURRENCY;
    const connections = context.quick ? 2 : CONNECTIONS;
    return withServer(context.startServer("kafka", { WORKERS: "1" }), (one) =>
      withServer(context.startServer("kafka", { WORKERS: "2" }), async (two) => {
        await startStreams(one);
        await startStreams(two);
        const run = {
          call: "streamgate.v1.StreamService.SendData",
          data: sendRequests(PAYLOAD_BYTES),
          metadata: AUTH,
          concurrency,
          connections,
        };
        const reports = await runRounds(
          [one, two].map((server) => ghzSubject(server, run, context.warmupSec)),
          {
            rounds: context.quick ? 1 : ROUNDS,
            phaseSec: context.quick ? context.durationSec : context.durationSec / 2,
          },
        );
        return WORKER_COUNTS.map((workers, index) =>
          row(workers, concurrency, connections, reports[index]!, index === 0 ? undefined : reports[0]),
        );
      }),
    );
  },
};

/** The row of `workers` workers; with `single`, its ratio to the one-worker server in the same rounds. */
function row(
  workers: number,
  concurrency: number,
  connections: number,
  report: RoundsReport,
  single: RoundsReport | undefined,
): BenchResult {
  const ratios = single ? roundRatios(report, single) : undefined;
  return {
    scenario: rowName(workers),
    broker: "kafka",
    concurrency,
    payloadBytes: PAYLOAD_BYTES,
    throughput: report.rps,
    unit: "req/s",
    latencyMs: report.latencyMs,
    errors: report.errors,
    ...(ratios ? { baseline: rowName(1), ratio: ratios.median } : {}),
    extra: {
      workers,
      connections,
      "rounds req/s": report.rounds.map((phase) => Math.round(phase.rps)).join(", "),
      ...(report.cpuMicrosPerCall === undefined
        ? {}
        : { "server CPU µs/call (primary and workers)": report.cpuMicrosPerCall }),
      ...(ratios ? { "rounds (ratio each)": ratios.ratios.map((ratio) => `${ratio.toFixed(2)}×`).join(", ") } : {}),
    },
  };
}
