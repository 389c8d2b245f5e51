/**
 * Baselines of the RPC layer: ghz SendData (128 B and 4 KiB, 64 callers)
 * against a bare connect-node server on streamgate's one-port listener, and
 * against a bare @grpc/grpc-js server, both with empty handlers.
 */
import type { Scenario } from "../lib/context.js";
import { runGhz } from "../lib/ghz.js";
import { sendRequests } from "../lib/load.js";
import { startNodeServer } from "../lib/processes.js";
import type { BenchResult } from "../lib/result.js";

/** The payload sizes and concurrency of SendData, shared with scenarios/senddata.ts. */
export const SEND_PAYLOADS = [128, 4096];
export const SEND_CONCURRENCY = 64;

const SERVERS = [
  { scenario: "baseline-connect-node", file: "dist/bench/baselines/connect-empty.js" },
  { scenario: "baseline-grpc-js", file: "dist/bench/baselines/grpcjs-empty.js" },
];

export const baselinesRpc: Scenario = {
  name: "baselines-rpc",
  description: "bare connect-node and grpc-js servers, empty SendData handler (ghz)",
  async run(context) {
    const rows: BenchResult[] = [];
    for (const { scenario, file } of SERVERS) {
      const server = await startNodeServer([file], {});
      try {
        for (const payloadBytes of SEND_PAYLOADS) {
          const report = await runGhz({
            port: server.port,
            call: "streamgate.v1.StreamService.SendData",
            data: sendRequests(payloadBytes),
            concurrency: context.quick ? 4 : SEND_CONCURRENCY,
            durationSec: context.durationSec,
          });
          rows.push({
            scenario,
            broker: "-",
            concurrency: context.quick ? 4 : SEND_CONCURRENCY,
            payloadBytes,
            throughput: report.rps,
            unit: "req/s",
            latencyMs: report.latencyMs,
            errors: report.errors,
          });
        }
      } finally {
        await server.stop();
      }
    }
    return rows;
  },
};
