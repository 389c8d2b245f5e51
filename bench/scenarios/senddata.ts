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
 * Kafka: held to kafkajs producing directly to the same broker, one send per
 * message at the same concurrency (target ≥ 1.0×), measured in interleaved
 * rounds too: kafkajs from the bench process, then streamgate under ghz, in
 * turn. Its producer is the baseline-kafkajs-naive row's (lib/kafkajs-direct.ts).
 */
import { type BenchContext, type Scenario } from "../lib/context.js";
import { openDirect } from "../lib/kafkajs-direct.js";
import { AUTH, sendRequests, startStreams } from "../lib/load.js";
import { startNodeServer, withServer, type StreamgateServer } from "../lib/processes.js";
import type { BenchResult } from "../lib/result.js";
import { ghzSubject, roundRatios, runRounds, type RoundSubject, type RoundsReport } from "../lib/rounds.js";
import { CONNECT_BASELINE, SEND_CONCURRENCY, SEND_PAYLOADS } from "./baselines-rpc.js";

/** Limits that refuse nothing, so the row measures what checking them costs. */
const LIMITS_ON = {
  RATE_LIMIT_RPS: "1000000",
  RATE_LIMIT_BURST: "1000000",
  CLIENT_RATE_LIMIT_RPS: "1000000",
  CLIENT_RATE_LIMIT_BURST: "1000000",
};

const MEMORY_TARGET = 0.75;
const KAFKA_TARGET = 1.0;
const KAFKA_BASELINE = "baseline-kafkajs-naive";
/** Interleaved rounds (one in smoke mode). */
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
          const [baseline, subject, withLimits] = await runRounds(
            servers.map((server) => ghzSubject(server, run, context.warmupSec)),
            roundsOptions(context),
          );
          const row = roundsRow("senddata", "memory", payloadBytes, concurrency, subject!, baseline!, CONNECT_BASELINE.scenario);
          rows.push(withTarget(row, MEMORY_TARGET, subject!, baseline!));
          if (withLimits) {
            const limitedRow = roundsRow("senddata-limited", "memory", payloadBytes, concurrency, withLimits, subject!, "senddata");
            limitedRow.extra = { limits: "global and per-client 1,000,000/s, none refused", ...limitedRow.extra };
            rows.push(limitedRow);
          }
        }
      }),
    ),
  );
  return rows;
}

/** Three rounds of half a phase each (one whole phase in smoke mode). */
function roundsOptions(context: BenchContext) {
  return { rounds: context.quick ? 1 : ROUNDS, phaseSec: context.quick ? context.durationSec : context.durationSec / 2 };
}

/** `row` with the target of a ratio of at least `target` to its baseline. */
function withTarget(row: BenchResult, target: number, subject: RoundsReport, baseline: RoundsReport): BenchResult {
  const ratio = row.ratio!;
  row.target = {
    goal: `≥ ${target.toFixed(2)} × ${row.baseline}`,
    met: ratio >= target,
    measured: `${ratio.toFixed(2)}× (median of rounds; ${Math.round(subject.rps)} vs ${Math.round(baseline.rps)} ${row.unit})`,
  };
  return row;
}

/** A row of `subject`'s rounds, with its median ratio to `baseline` measured in the same rounds. */
function roundsRow(
  scenario: string,
  broker: string,
  payloadBytes: number,
  concurrency: number,
  subject: RoundsReport,
  baseline: RoundsReport,
  baselineName: string,
  baselineUnit = "req/s",
): BenchResult {
  const { median, ratios } = roundRatios(subject, baseline);
  return {
    scenario,
    broker,
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
      [`baseline in the same rounds ${baselineUnit}`]: Math.round(baseline.rps),
      ...(subject.cpuMicrosPerCall === undefined ? {} : { "server CPU µs/call": subject.cpuMicrosPerCall }),
      ...(baseline.cpuMicrosPerCall === undefined ? {} : { "baseline server CPU µs/call": baseline.cpuMicrosPerCall }),
    },
  };
}

/**
 * The Kafka rows, each payload measured in rounds with kafkajs sending one
 * message per call from the bench process, at the same concurrency.
 */
async function kafkaRows(context: BenchContext): Promise<BenchResult[]> {
  const concurrency = context.quick ? 4 : SEND_CONCURRENCY;
  const direct = await openDirect(context.kafkaBrokers);
  try {
    return await withServer(context.startServer("kafka"), async (server) => {
      await startStreams(server);
      const rows: BenchResult[] = [];
      for (const payloadBytes of SEND_PAYLOADS) {
        const naive: RoundSubject = {
          // Once, before the first payload: until the broker takes naive sends at a steady rate.
          warmUp: async () => {
            if (payloadBytes === SEND_PAYLOADS[0]) await direct.warmUp(concurrency, context.quick);
          },
          measure: (seconds) => direct.naive(payloadBytes, concurrency, seconds),
        };
        const run = { call: "streamgate.v1.StreamService.SendData", data: sendRequests(payloadBytes), metadata: AUTH, concurrency };
        const [baseline, subject] = await runRounds([naive, ghzSubject(server, run, context.warmupSec)], roundsOptions(context));
        const row = roundsRow("senddata", "kafka", payloadBytes, concurrency, subject!, baseline!, KAFKA_BASELINE, "msg/s");
        rows.push(withTarget(row, KAFKA_TARGET, subject!, baseline!));
      }
      return rows;
    });
  } finally {
    await direct.close();
  }
}
