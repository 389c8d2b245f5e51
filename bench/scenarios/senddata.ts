/**
 * Scenario 2: SendData unary, 128 B and 4 KiB raw payloads over 16 streams, 64
 * concurrent callers (ghz), on each broker. Compared with the bare connect-node
 * server (embedded broker: target ≥ 0.75×) and with kafkajs producing
 * directly, one send per message at the same concurrency (Kafka: target ≥ 1.0×).
 * Also, on the embedded broker at 128 B, with a global and a per-client limit
 * set too high to refuse anything: what checking the limits costs.
 */
import { resultKey, type BenchContext, type Scenario } from "../lib/context.js";
import { runGhzOn } from "../lib/ghz.js";
import { withServer } from "../lib/processes.js";
import { AUTH, sendRequests, startStreams } from "../lib/load.js";
import type { BenchResult } from "../lib/result.js";
import { SEND_CONCURRENCY, SEND_PAYLOADS } from "./baselines-rpc.js";

/** The baseline each broker's SendData is held to, and the ratio it must reach. */
/** Limits that refuse nothing, so the row measures what checking them costs. */
const LIMITS_ON = {
  RATE_LIMIT_RPS: "1000000",
  RATE_LIMIT_BURST: "1000000",
  CLIENT_RATE_LIMIT_RPS: "1000000",
  CLIENT_RATE_LIMIT_BURST: "1000000",
};

const BASELINE = {
  memory: { scenario: "baseline-connect-node", broker: "-", target: 0.75 },
  kafka: { scenario: "baseline-kafkajs-naive", broker: "kafka", target: 1.0 },
};

export const sendData: Scenario = {
  name: "senddata",
  description: "SendData unary, 128 B and 4 KiB, 64 callers (ghz)",
  async run(context) {
    const rows: BenchResult[] = [];
    for (const broker of context.brokers) {
      await withServer(context.startServer(broker), async (server) => {
        await startStreams(server);
        for (const payloadBytes of SEND_PAYLOADS) {
          const concurrency = context.quick ? 4 : SEND_CONCURRENCY;
          const report = await runGhzOn(server, {
            call: "streamgate.v1.StreamService.SendData",
            data: sendRequests(payloadBytes),
            metadata: AUTH,
            concurrency,
            durationSec: context.durationSec,
          });
          const row: BenchResult = {
            scenario: "senddata",
            broker,
            concurrency,
            payloadBytes,
            throughput: report.rps,
            unit: "req/s",
            latencyMs: report.latencyMs,
            errors: report.errors,
            extra: { "server CPU µs/call": Math.round((report.serverCpuSeconds / report.count) * 1e6) },
          };
          const baseline = BASELINE[broker];
          const compared = context.results.get(resultKey(baseline.scenario, baseline.broker, payloadBytes));
          if (compared) {
            row.baseline = baseline.scenario;
            row.ratio = report.rps / compared.throughput;
            row.target = {
              goal: `≥ ${baseline.target.toFixed(2)} × ${baseline.scenario}`,
              met: row.ratio >= baseline.target,
              measured: `${row.ratio.toFixed(2)}× (${Math.round(report.rps)} vs ${Math.round(compared.throughput)} req/s)`,
            };
          }
          rows.push(row);
        }
      });
    }
    const unlimited = rows.find((row) => row.broker === "memory" && row.payloadBytes === 128);
    if (unlimited) rows.push(await limitedRow(context, unlimited));
    return rows;
  },
};

/** SendData 128 B on the embedded broker with {@link LIMITS_ON}, compared with `unlimited`. */
async function limitedRow(context: BenchContext, unlimited: BenchResult): Promise<BenchResult> {
  return withServer(context.startServer("memory", LIMITS_ON), async (server) => {
    await startStreams(server);
    const report = await runGhzOn(server, {
      call: "streamgate.v1.StreamService.SendData",
      data: sendRequests(128),
      metadata: AUTH,
      concurrency: unlimited.concurrency,
      durationSec: context.durationSec,
    });
    return {
      scenario: "senddata-limited",
      broker: "memory",
      concurrency: unlimited.concurrency,
      payloadBytes: 128,
      throughput: report.rps,
      unit: "req/s",
      latencyMs: report.latencyMs,
      errors: report.errors,
      baseline: "senddata",
      ratio: report.rps / unlimited.throughput,
      extra: {
        limits: "global and per-client 1,000,000/s, none refused",
        "server CPU µs/call": Math.round((report.serverCpuSeconds / report.count) * 1e6),
      },
    };
  });
}
