/**
 * Scenario 3: SendDataStream, client streaming, 128 B raw payloads, messages
 * per second counted on the server (its grpc_server_msg_received_total: ghz
 * counts calls, not messages). Target on Kafka: ≥ 60,000 msg/s (none on the
 * embedded broker). Compared with the bare connect-node server's client
 * streams (its baseline row), server CPU per message against its too.
 */
import { type BrokerKind, onEachBroker, resultKey, type Scenario } from "../lib/context.js";
import { runGhzOn, warmUp } from "../lib/ghz.js";
import { AUTH, metricSum, startStreams } from "../lib/load.js";
import { withServer } from "../lib/processes.js";
import type { BenchResult } from "../lib/result.js";
import {
  CONNECT_BASELINE,
  STREAM_CONCURRENCY,
  STREAM_MESSAGES_PER_CALL,
  STREAM_PAYLOAD_BYTES,
  streamMessages,
  streamRow,
} from "./baselines-rpc.js";

/** Messages per second required, by broker (the embedded broker has no target). */
const TARGET: Partial<Record<BrokerKind, number>> = { kafka: 60_000 };
const BASELINE = streamRow(CONNECT_BASELINE.scenario);
/** Its one row per broker. */
const ROW = "senddatastream";

export const sendDataStream: Scenario = {
  name: "senddatastream",
  description: "SendDataStream, 128 B, messages/s counted by the server",
  rows: (brokers) => onEachBroker(brokers, ROW, STREAM_PAYLOAD_BYTES),
  async run(context) {
    const rows: BenchResult[] = [];
    for (const broker of context.brokers) {
      await withServer(context.startServer(broker), async (server) => {
        await startStreams(server);
        // ghz sends the data array on each stream, then closes it.
        const perCall = context.quick ? 32 : STREAM_MESSAGES_PER_CALL;
        const data = streamMessages(perCall);
        const counted = () => metricSum(server, "grpc_server_msg_received_total", 'grpc_method="SendDataStream"');
        const concurrency = context.quick ? 2 : STREAM_CONCURRENCY;
        const run = { call: "streamgate.v1.StreamService.SendDataStream", data, metadata: AUTH, concurrency };
        // Warmed up here rather than by runGhzOn, so that its messages are not counted.
        await warmUp(server, run, context.warmupSec);
        const before = await counted();
        const report = await runGhzOn(server, { ...run, durationSec: context.durationSec });
        const received = (await counted()) - before;
        const rate = received / report.seconds;
        const compared = context.results.get(resultKey(BASELINE, "-", STREAM_PAYLOAD_BYTES));
        const cpuPerMessage = Math.round((report.serverCpuSeconds / received) * 1e6 * 10) / 10;
        const baselineCpu = compared?.extra?.["server CPU µs/msg"];
        const target = TARGET[broker];
        rows.push({
          scenario: ROW,
          broker,
          concurrency,
          payloadBytes: STREAM_PAYLOAD_BYTES,
          throughput: rate,
          unit: "msg/s",
          latencyMs: report.latencyMs,
          errors: report.errors,
          ...(compared ? { baseline: BASELINE, ratio: rate / compared.throughput } : {}),
          ...(target === undefined
            ? {}
            : {
                target: {
                  goal: `≥ ${target.toLocaleString("en-US")} msg/s`,
                  met: rate >= target,
                  measured: `${Math.round(rate).toLocaleString("en-US")} msg/s`,
                },
              }),
          extra: {
            "messages per call": perCall,
            "call latency": "ms per whole stream",
            "server CPU µs/msg": cpuPerMessage,
            ...(typeof baselineCpu === "number"
              ? {
                  "baseline server CPU µs/msg": baselineCpu,
                  "server CPU per msg vs baseline": `${(cpuPerMessage / baselineCpu).toFixed(2)}×`,
                }
              : {}),
          },
        });
      });
    }
    return rows;
  },
};
