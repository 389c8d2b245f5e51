/**
 * Scenario 2: SendData unary, 128 B and 4 KiB raw payloads over 16 streams, 64
 * concurrent callers (ghz), on each broker. Both brokers are held to the bare
 * connect-node server (baselines-rpc's CONNECT_BASELINE, an empty handler on
 * streamgate's one-port listener), measured in interleaved rounds against
 * that server, up at the same time (lib/rounds.ts), so that the ratio is not
 * the machine's drift between two moments of the run. Every ratio row also
 * gives the server's CPU time per call against its baseline's.
 *
 * Embedded broker: target ≥ 0.85 × the bare server, and server CPU per call
 * ≤ 1.2 × the bare server's (both must hold). At 128 B a third server joins
 * the rounds: streamgate with a global and a per-client limit set too high to
 * refuse anything, which shows what checking the limits costs.
 *
 * Kafka: target ≥ 0.7 × the bare server in the same rounds. Each round also
 * runs, from the bench process, the naive producers of both Kafka clients
 * (lib/direct-producer.ts, as the baseline-<client>-naive rows: one send per
 * message at the same concurrency): what an application writing to Kafka per
 * request would get, on the broker as it was in that round. So a round is:
 * the bare server under ghz, streamgate on Kafka under ghz, kafkajs naive,
 * @platformatic/kafka naive; their rows are senddata@kafka (the ratio and
 * target) and senddata-<client>-naive beside it.
 */
import type { BenchContext, BrokerKind, RowKey, Scenario } from "../lib/context.js";
import type { DirectPhase, DirectProducer } from "../lib/direct-producer.js";
import { AUTH, sendRequests, startStreams } from "../lib/load.js";
import { type StreamgateServer, startNodeServer, withServer } from "../lib/processes.js";
import type { BenchResult } from "../lib/result.js";
import { ghzSubject, type RoundSubject, type RoundsReport, roundRatios, runRounds } from "../lib/rounds.js";
import { DIRECT_CLIENTS, directRow, naiveRow } from "./baselines-kafka.js";
import { CONNECT_BASELINE, SEND_CONCURRENCY, SEND_PAYLOADS } from "./baselines-rpc.js";

/** Limits that refuse nothing, so the row measures what checking them costs. */
const LIMITS_ON = {
  RATE_LIMIT_RPS: "1000000",
  RATE_LIMIT_BURST: "1000000",
  CLIENT_RATE_LIMIT_RPS: "1000000",
  CLIENT_RATE_LIMIT_BURST: "1000000",
};

/** The targets: a ratio to the bare connect-node server in the same rounds, and (embedded) a bound on CPU per call against its. */
const MEMORY_TARGET = { ratio: 0.85, cpuPerCall: 1.2 };
const KAFKA_TARGET = { ratio: 0.7 };
/** Interleaved rounds (one in smoke mode). */
const ROUNDS = 3;

/** The scenario names of its rows: streamgate's, the limited server's (embedded, LIMITED_PAYLOAD_BYTES only). */
const ROW = "senddata";
const LIMITED_ROW = "senddata-limited";
/** The payload size the limited server joins the rounds at. */
const LIMITED_PAYLOAD_BYTES = 128;

/** The scenario name of `client`'s naive producer measured in the Kafka rounds. */
function naiveInRoundsRow(client: { name: string }): string {
  return `senddata-${client.name}-naive`;
}

/** The rows on `broker`, per payload: streamgate's; on the embedded broker the limited server's, on Kafka each naive producer's. */
function rowsOn(broker: BrokerKind): RowKey[] {
  return SEND_PAYLOADS.flatMap((payloadBytes) => {
    const others =
      broker === "memory"
        ? payloadBytes === LIMITED_PAYLOAD_BYTES
          ? [LIMITED_ROW]
          : []
        : DIRECT_CLIENTS.map(naiveInRoundsRow);
    return [ROW, ...others].map((scenario) => ({ scenario, broker, payloadBytes }));
  });
}

export const sendData: Scenario = {
  name: "senddata",
  description: "SendData unary, 128 B and 4 KiB, 64 callers (ghz)",
  rows: (brokers) => brokers.flatMap(rowsOn),
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
          const run = {
            call: "streamgate.v1.StreamService.SendData",
            data: sendRequests(payloadBytes),
            metadata: AUTH,
            concurrency,
          };
          const servers: StreamgateServer[] =
            payloadBytes === LIMITED_PAYLOAD_BYTES ? [bare, plain, limited] : [bare, plain];
          const [baseline, subject, withLimits] = await runRounds(
            servers.map((server) => ghzSubject(server, run, context.warmupSec)),
            roundsOptions(context),
          );
          const row = roundsRow(
            ROW,
            "memory",
            payloadBytes,
            concurrency,
            subject!,
            baseline!,
            CONNECT_BASELINE.scenario,
          );
          rows.push(withTarget(row, MEMORY_TARGET, subject!, baseline!));
          if (withLimits) {
            const limitedRow = roundsRow(LIMITED_ROW, "memory", payloadBytes, concurrency, withLimits, subject!, ROW);
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
  return {
    rounds: context.quick ? 1 : ROUNDS,
    phaseSec: context.quick ? context.durationSec : context.durationSec / 2,
  };
}

/**
 * `row` with the target of a ratio of at least `target.ratio` to its baseline
 * and, when `target.cpuPerCall` is set, of the server's CPU time per call at
 * most that multiple of the baseline's (both must hold).
 */
function withTarget(
  row: BenchResult,
  target: { ratio: number; cpuPerCall?: number },
  subject: RoundsReport,
  baseline: RoundsReport,
): BenchResult {
  const ratio = row.ratio!;
  const cpu = cpuRatio(subject, baseline);
  const cpuMet = target.cpuPerCall === undefined || (cpu !== undefined && cpu <= target.cpuPerCall);
  row.target = {
    goal: `≥ ${target.ratio.toFixed(2)} × ${row.baseline}${target.cpuPerCall === undefined ? "" : `, server CPU per call ≤ ${target.cpuPerCall.toFixed(2)} × its`}`,
    met: ratio >= target.ratio && cpuMet,
    measured:
      `${ratio.toFixed(2)}× (median of rounds; ${Math.round(subject.rps)} vs ${Math.round(baseline.rps)} ${row.unit})` +
      `, server CPU per call ${cpu === undefined ? "n/a" : `${cpu.toFixed(2)}×`} (${subject.cpuMicrosPerCall ?? "?"} vs ${baseline.cpuMicrosPerCall ?? "?"} µs)`,
  };
  return row;
}

/** The subject server's CPU time per call over the baseline's, both over all rounds. */
function cpuRatio(subject: RoundsReport, baseline: RoundsReport): number | undefined {
  return subject.cpuMicrosPerCall === undefined || !baseline.cpuMicrosPerCall
    ? undefined
    : subject.cpuMicrosPerCall / baseline.cpuMicrosPerCall;
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
      "baseline in the same rounds req/s": Math.round(baseline.rps),
      ...(subject.cpuMicrosPerCall === undefined ? {} : { "server CPU µs/call": subject.cpuMicrosPerCall }),
      ...(baseline.cpuMicrosPerCall === undefined ? {} : { "baseline server CPU µs/call": baseline.cpuMicrosPerCall }),
      ...(cpuRatio(subject, baseline) === undefined
        ? {}
        : { "server CPU per call vs baseline": `${cpuRatio(subject, baseline)!.toFixed(2)}×` }),
    },
  };
}

/**
 * The Kafka rows, each payload measured in rounds of: the bare connect-node
 * server under ghz, streamgate on Kafka under ghz, and each client's naive
 * producer from the bench process, at the same concurrency.
 */
async function kafkaRows(context: BenchContext): Promise<BenchResult[]> {
  const concurrency = context.quick ? 4 : SEND_CONCURRENCY;
  const directs: DirectProducer[] = [];
  try {
    for (const client of DIRECT_CLIENTS) directs.push(await client.open(context.kafkaBrokers));
    return await withServer(startNodeServer([CONNECT_BASELINE.file], {}), (bare) =>
      withServer(context.startServer("kafka"), async (server) => {
        await startStreams(server);
        const rows: BenchResult[] = [];
        for (const payloadBytes of SEND_PAYLOADS) {
          const run = {
            call: "streamgate.v1.StreamService.SendData",
            data: sendRequests(payloadBytes),
            metadata: AUTH,
            concurrency,
          };
          const naive = directs.map(
            (direct): RoundSubject => ({
              // Once, before the first payload: until the broker takes naive sends at a steady rate.
              warmUp: async () => {
                if (payloadBytes === SEND_PAYLOADS[0]) await direct.warmUp(concurrency, context.quick);
              },
              measure: (seconds) => direct.naive(payloadBytes, concurrency, seconds),
            }),
          );
          const [baseline, subject, ...producers] = await runRounds(
            [ghzSubject(bare, run, context.warmupSec), ghzSubject(server, run, context.warmupSec), ...naive],
            roundsOptions(context),
          );
          const row = roundsRow(
            ROW,
            "kafka",
            payloadBytes,
            concurrency,
            subject!,
            baseline!,
            CONNECT_BASELINE.scenario,
          );
          rows.push(withTarget(row, KAFKA_TARGET, subject!, baseline!));
          for (const [index, client] of DIRECT_CLIENTS.entries()) {
            const producer = producers[index]!;
            const { median } = roundRatios(subject!, producer);
            const firstError = (producer.rounds as DirectPhase[]).find((phase) => phase.firstError)?.firstError;
            rows.push(
              directRow(
                naiveInRoundsRow(client),
                concurrency,
                payloadBytes,
                { ...producer, ...(firstError ? { firstError } : {}) },
                {
                  client: client.label,
                  "per call": `1 message (as ${naiveRow(client)}), in senddata's Kafka rounds`,
                  "rounds msg/s": producer.rounds.map((phase) => Math.round(phase.rps)).join(", "),
                  "senddata@kafka ÷ this (median of rounds)": `${median.toFixed(2)}×`,
                },
              ),
            );
          }
        }
        return rows;
      }),
    );
  } finally {
    for (const direct of directs) await direct.close();
  }
}
