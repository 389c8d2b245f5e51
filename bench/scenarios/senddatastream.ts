/**
 * Scenario 3: SendDataStream, client streaming, 128 B raw payloads, messages
 * per second counted on the server (its grpc_server_msg_received_total: ghz
 * counts calls, not messages). Targets: ≥ 50,000 msg/s embedded, ≥ 25,000 on Kafka.
 */
import type { Scenario } from "../lib/context.js";
import { runGhz } from "../lib/ghz.js";
import { AUTH, metricSum, sendRequests, startStreams } from "../lib/load.js";
import type { BenchResult } from "../lib/result.js";

const CONCURRENCY = 8;
/** Messages per call: ghz sends the data array on each stream, then closes it. */
const MESSAGES_PER_CALL = 1000;
const TARGET = { memory: 50_000, kafka: 25_000 };

export const sendDataStream: Scenario = {
  name: "senddatastream",
  description: "SendDataStream, 128 B, messages/s counted by the server",
  async run(context) {
    const rows: BenchResult[] = [];
    for (const broker of context.brokers) {
      const server = await context.startServer(broker);
      try {
        await startStreams(server);
        const messages = sendRequests(128);
        const perCall = context.quick ? 32 : MESSAGES_PER_CALL;
        const data = Array.from({ length: perCall }, (_, i) => messages[i % messages.length]);
        const counted = () => metricSum(server, "grpc_server_msg_received_total", 'grpc_method="SendDataStream"');
        const before = await counted();
        const concurrency = context.quick ? 2 : CONCURRENCY;
        const report = await runGhz({
          port: server.port,
          call: "streamgate.v1.StreamService.SendDataStream",
          data,
          metadata: AUTH,
          concurrency,
          durationSec: context.durationSec,
        });
        const received = (await counted()) - before;
        const rate = received / report.seconds;
        rows.push({
          scenario: "senddatastream",
          broker,
          concurrency,
          payloadBytes: 128,
          throughput: rate,
          unit: "msg/s",
          latencyMs: report.latencyMs,
          errors: report.errors,
          target: {
            goal: `≥ ${TARGET[broker].toLocaleString("en-US")} msg/s`,
            met: rate >= TARGET[broker],
            measured: `${Math.round(rate).toLocaleString("en-US")} msg/s`,
          },
          extra: { "messages per call": perCall, "call latency": "ms per whole stream" },
        });
      } finally {
        await server.stop();
      }
    }
    return rows;
  },
};
