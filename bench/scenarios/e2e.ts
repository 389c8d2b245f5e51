/**
 * Scenario 5: end-to-end latency, from SendData to the result's delivery on a
 * WatchResults call, at a fixed offered load: 1,000 msg/s, and 50% of the
 * broker's measured SendData maximum (the senddata row, 128 B). Targets at
 * 1,000 msg/s over unary SendData (e2e-1000): p99 ≤ 10 ms embedded, ≤ 25 ms
 * on Kafka, nothing lost.
 *
 * At 1,000 unary calls/s the server sits at the RPC layer's per-call limit on a
 * small machine (bare connect-node's own maximum is about that), so e2e-1000
 * mostly measures queueing in the RPC layer. e2e-1000-stream sends the same
 * records at the same rate, each written at its due time to one long-lived
 * SendDataStream call per sending connection: the pipeline's own latency
 * under streaming ingestion (no target of its own).
 *
 * The harness (bench/lib/e2e-harness.ts) sends open loop: record i is due at
 * start + i / rate and is sent then whether or not earlier calls have been
 * answered, and its latency is counted from that due time, so a stall delays
 * every record due during it (no coordinated omission).
 */
import { type BenchContext, type BrokerKind, onEachBroker, resultKey, type Scenario } from "../lib/context.js";
import { openHarness, PAYLOAD_BYTES, type PhaseReport } from "../lib/e2e-harness.js";
import { runGhz } from "../lib/ghz.js";
import { AUTH, metricSum, sendRequests, startStreams } from "../lib/load.js";
import { type StreamgateServer, withServer } from "../lib/processes.js";
import type { BenchResult } from "../lib/result.js";
import { SEND_CONCURRENCY } from "./baselines-rpc.js";

const FIXED_RATE = 1000;
/** The scenario names of its rows, per broker: unary at FIXED_RATE, unary at half the max, SendDataStream at FIXED_RATE. */
const ROWS = { fixed: "e2e-1000", halfMax: "e2e-half-max", stream: "e2e-1000-stream" } as const;
/** p99 required of e2e-1000 (unary SendData at FIXED_RATE), by broker. */
const TARGET_P99_MS: Record<BrokerKind, number> = { memory: 10, kafka: 25 };
/** Seconds of unmeasured load before the first phase: the server's code paths get compiled first. */
const WARMUP_SEC = 1;
/** Seconds of the fallback SendData maximum measurement (when no senddata row exists). */
const MAX_PROBE_SEC = 3;

export const e2e: Scenario = {
  name: "e2e",
  description: "end-to-end latency SendData → WatchResults, open loop at 1,000 msg/s and 50% of the SendData max",
  rows: (brokers) => Object.values(ROWS).flatMap((scenario) => onEachBroker(brokers, scenario, PAYLOAD_BYTES)),
  async run(context) {
    const rows: BenchResult[] = [];
    for (const broker of context.brokers) {
      await withServer(context.startServer(broker), async (server) => {
        const half = await halfOfMax(context, broker, server);
        const harness = await openHarness(server);
        try {
          // Smoke mode: a few hundred records per phase, enough to go through every stage.
          await harness.run(FIXED_RATE, context.quick ? 0.1 : WARMUP_SEC);
          const seconds = context.quick ? 0.25 : context.durationSec;
          const fixed = await harness.run(FIXED_RATE, seconds);
          rows.push(row(ROWS.fixed, broker, fixed, `fixed ${FIXED_RATE.toLocaleString("en-US")} msg/s`, true));
          const loaded = await harness.run(half.rate, seconds);
          rows.push(row(ROWS.halfMax, broker, loaded, half.note, false));
          // SendDataStream's code paths get their own unmeasured warm-up.
          await harness.run(FIXED_RATE, context.quick ? 0.1 : WARMUP_SEC, "stream");
          const streamed = await harness.run(FIXED_RATE, seconds, "stream");
          rows.push(
            row(
              ROWS.stream,
              broker,
              streamed,
              `fixed ${FIXED_RATE.toLocaleString("en-US")} msg/s over SendDataStream`,
              false,
            ),
          );
        } finally {
          await harness.close();
        }
      });
    }
    return rows;
  },
};

/**
 * Half of the broker's SendData maximum: the senddata row of this run (128 B,
 * ghz, 64 callers), else measured the same way on this server, else (quick
 * mode) a nominal rate.
 */
async function halfOfMax(
  context: BenchContext,
  broker: BrokerKind,
  server: StreamgateServer,
): Promise<{ rate: number; note: string }> {
  const measured = context.results.get(resultKey("senddata", broker, 128));
  if (measured && measured.throughput > 0) {
    return {
      rate: measured.throughput / 2,
      note: `50% of senddata's ${Math.round(measured.throughput).toLocaleString("en-US")} req/s`,
    };
  }
  if (context.quick) return { rate: 500, note: "nominal 500 msg/s (quick mode, no senddata row)" };
  context.log(`  e2e ${broker}: no senddata row; measuring SendData's maximum (ghz, ${MAX_PROBE_SEC} s)`);
  await startStreams(server, "e2e-max");
  const report = await runGhz({
    port: server.port,
    call: "streamgate.v1.StreamService.SendData",
    data: sendRequests(128, "e2e-max"),
    metadata: AUTH,
    concurrency: SEND_CONCURRENCY,
    durationSec: MAX_PROBE_SEC,
  });
  await drained(server);
  return {
    rate: report.rps / 2,
    note: `50% of ${Math.round(report.rps).toLocaleString("en-US")} req/s (SendData max measured here: ghz, ${SEND_CONCURRENCY} callers, ${MAX_PROBE_SEC} s)`,
  };
}

/**
 * Waits until the processor has caught up with the probe's records (ingest
 * lag 0), so their backlog does not count in the first phase's latencies.
 * No event says so: the metric is polled, for at most 60 s.
 */
async function drained(server: StreamgateServer): Promise<void> {
  const deadline = Date.now() + 60_000;
  while ((await metricSum(server, "streamgate_consumer_lag_records", 'topic_kind="ingest"')) > 0) {
    if (Date.now() > deadline) throw new Error("e2e: the processor did not catch up with the SendData probe in 60 s");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function row(
  scenario: string,
  broker: BrokerKind,
  report: PhaseReport,
  load: string,
  withTarget: boolean,
): BenchResult {
  const result: BenchResult = {
    scenario,
    broker,
    concurrency: report.streams,
    payloadBytes: PAYLOAD_BYTES,
    throughput: report.delivered / report.seconds,
    unit: "msg/s",
    latencyMs: report.latencyMs,
    errors: report.lost + report.sendErrors,
    extra: {
      load: `${load}: ${Math.round(report.offered).toLocaleString("en-US")} msg/s offered, ${report.count} records`,
      latency: "from each record's due time (open loop) to its delivery to the watcher",
      lost: report.lost,
      "send errors": report.sendErrors,
      ...(report.ackP99 === undefined
        ? { ack: "n/a: a client stream is answered once, at its end" }
        : { "ack p99 ms": report.ackP99 }),
      // Where the time goes (server timestamps, ms resolution), and how late the generator itself was.
      "p99 ms by stage": `due→accepted ${report.dueToAcceptP99}, accepted→processed ${report.acceptToProcessP99}, processed→delivered ${report.processToWatcherP99}`,
      "generator lateness p99 ms": report.lateP99,
      "CPU cores": `generator ${report.generatorCores.toFixed(2)}, server ${report.serverCores.toFixed(2)}`,
      connections: report.connections,
      ...(report.firstError ? { "first error": report.firstError.slice(0, 200) } : {}),
    },
  };
  if (withTarget) {
    const goal = TARGET_P99_MS[broker];
    const p99 = report.latencyMs.p99;
    const lost = report.lost + report.sendErrors;
    result.target = {
      goal: `p99 ≤ ${goal} ms at ${FIXED_RATE.toLocaleString("en-US")} msg/s, none lost`,
      met: p99 <= goal && lost === 0 && report.delivered > 0,
      measured: `p99 ${p99} ms, ${lost} lost or failed of ${report.count}`,
    };
  }
  return result;
}
