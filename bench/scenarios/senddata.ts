/**
 * Scenario 2: SendData unary, 128 B and 4 KiB raw payloads over 16 streams, 64
 * concurrent callers (ghz), on each broker.
 *
 * Embedded broker: held to the bare connect-node server (target ≥ 0.75×),
 * measured in interleaved rounds against that server, up at the same time
 * (lib/rounds.ts), so that the ratio is not the machine's drift between two
 * moments of the run. At 128 B a third server joins the rounds: streamgate
 * with a global and a per-client limit set too high to refuse anything, which
 * shows what checking the limits costs.
 *
 * Kafka: held to kafkajs producing directly, one send per message at the same
 * concurrency (target ≥ 1.0×; baselines-kafkajs, earlier in the run).
 */
import { resultKey, type BenchContext, type Scenario } from "../lib/context.js";
import { runGhzOn, unaryRow } from "../lib/ghz.js";
import { AUTH, sendRequests, startStreams } from "../lib/load.js";
import { startNodeServer, withServer, type StreamgateServer } from "../lib/processes.js";
import type { BenchResult } from "../lib/result.js";
import { roundRatios, runGhzRounds, type RoundsReport } from "../lib/rounds.js";
import { CONNECT_BASELINE, SEND_CONCURRENCY, SEND_PAYLOADS } from "./baselines-rpc.js";

/** Limits that refuse nothing, so the row measures what checking them costs. */
const LIMITS_ON = {
  RATE_LIMIT_RPS: "1000000",
  RATE_LIMIT_BURST: "1000000",
  CLIENT_RATE_LIMIT_RPS: "1000000",
  CLIENT_RATE_LIMIT_BURST: "1000000",
};

const MEMORY_TARGET = 0.75;
const KAFKA_BASELINE = { scenario: "baseline-kafkajs-naive", broker: "kafka", target: 1.0 };
/** Interleaved rounds on the embedded broker (one in smoke mode). */
const ROUNDS = 3;

export const sendData: Scenario = {
  name: "senddata",
  description: "SendData unary, 128 B and 4 KiB, 64 callers (ghz)",
  async run(context) {
    const rows: BenchResult[] = [];
    for (const broker of context.brokers) {
      rows.push(...(broker === "memory" ? await embeddedRows(context) : await kafkaRows(context)));
    }
    return rows;
  },
};

/** The embedded broker's rows, each payload measured in rounds with the bare server (and, at 128 B, with limits on). */
async function embeddedRows(context: BenchContext): Promise<BenchResult[]> {
  const concurrency = context.quick ? 4 : SEND_CONCURRENCY;
  const rows: BenchResult[] = [];
  await withServer(startNodeServer([CONNECT_BASELINE.file], {}), (bare) =>
    withServer(context.startServer("memory"), (plain) =>
      withServer(context.startServer("memory", LIMITS_ON), async (limited) => {
        await startStreams(plain);
        await startStreams(limited);
        for (const payloadBytes of SEND_PAYLOADS) {
          const run = { call: "streamgate.v1.StreamService.SendData", data: sendRequests(payloadBytes), metadata: AUTH, concurrency };
          const servers: StreamgateServer[] = payloadBytes === 128 ? [bare, plain, limited] : [bare, plain];
          const [baseline, subject, withLimits] = await runGhzRounds(
            servers.map((server) => ({ server, run })),
            {
              rounds: context.quick ? 1 : ROUNDS,
              phaseSec: context.quick ? context.durationSec : context.durationSec / 2,
              warmupSec: context.warmupSec,
            },
          );
          const row = roundsRow("senddata", payloadBytes, concurrency, subject!, baseline!, CONNECT_BASELINE.scenario);
          const ratio = row.ratio!;
          row.target = {
            goal: `≥ ${MEMORY_TARGET.toFixed(2)} × ${CONNECT_BASELINE.scenario}`,
            met: ratio >= MEMORY_TARGET,
            measured: `${ratio.toFixed(2)}× (median of rounds; ${Math.round(subject!.rps)} vs ${Math.round(baseline!.rps)} req/s)`,
          };
          rows.push(row);
          if (withLimits) {
            const limitedRow = roundsRow("senddata-limited", payloadBytes, concurrency, withLimits, subject!, "senddata");
            limitedRow.extra = { limits: "global and per-client 1,000,000/s, none refused", ...limitedRow.extra };
            rows.push(limitedRow);
          }
        }
      }),
    ),
  );
  return rows;
}

/** A row of `subject`'s rounds, with its median ratio to `baseline` measured in the same rounds. */
function roundsRow(
  scenario: string,
  payloadBytes: number,
  concurrency: number,
  subject: RoundsReport,
  baseline: RoundsReport,
  baselineName: string,
): BenchResult {
  const { median, ratios } = roundRatios(subject, baseline);
  return {
    scenario,
    broker: "memory",
    concurrency,
    payloadBytes,
    throughput: subject.rps,
    unit: "req/s",
    latencyMs: subject.latencyMs,
    errors: subject.errors,
    baseline: baselineName,
    ratio: median,
    extra: {
      "rounds (ratio each)": ratios.map((ratio) => `${ratio.toFixed(2)}×`).join(", "),
      "baseline in the same rounds req/s": Math.round(baseline.rps),
      "server CPU µs/call": subject.cpuMicrosPerCall,
      "baseline server CPU µs/call": baseline.cpuMicrosPerCall,
    },
  };
}

/** The Kafka rows, held to the naive kafkajs baseline measured earlier in the run. */
async function kafkaRows(context: BenchContext): Promise<BenchResult[]> {
  const concurrency = context.quick ? 4 : SEND_CONCURRENCY;
  return withServer(context.startServer("kafka"), async (server) => {
    await startStreams(server);
    const rows: BenchResult[] = [];
    for (const payloadBytes of SEND_PAYLOADS) {
      const report = await runGhzOn(server, {
        call: "streamgate.v1.StreamService.SendData",
        data: sendRequests(payloadBytes),
        metadata: AUTH,
        concurrency,
        durationSec: context.durationSec,
      }, context.warmupSec);
      const row = unaryRow("senddata", "kafka", concurrency, payloadBytes, report);
      const compared = context.results.get(resultKey(KAFKA_BASELINE.scenario, KAFKA_BASELINE.broker, payloadBytes));
      if (compared) {
        row.baseline = KAFKA_BASELINE.scenario;
        row.ratio = report.rps / compared.throughput;
        row.target = {
          goal: `≥ ${KAFKA_BASELINE.target.toFixed(2)} × ${KAFKA_BASELINE.scenario}`,
          met: row.ratio >= KAFKA_BASELINE.target,
          measured: `${row.ratio.toFixed(2)}× (${Math.round(report.rps)} vs ${Math.round(compared.throughput)} req/s)`,
        };
      }
      rows.push(row);
    }
    return rows;
  });
}
