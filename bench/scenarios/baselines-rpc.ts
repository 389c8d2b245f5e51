/**
 * Baselines of the RPC layer: ghz SendData (128 B and 4 KiB, 64 callers) and
 * SendDataStream (128 B, 8 callers of 1,000 messages) against a bare
 * connect-node server on streamgate's one-port listener, and against a bare
 * @grpc/grpc-js server, both with empty handlers. Each row also gives the
 * server's CPU time per call (or message), steadier than a rate on a machine
 * whose cores the load generator and broker share.
 */
import type { Scenario } from "../lib/context.js";
import { runGhzOn, unaryRow } from "../lib/ghz.js";
import { sendRequests } from "../lib/load.js";
import { startNodeServer, withServer } from "../lib/processes.js";
import type { BenchResult } from "../lib/result.js";

/** The payload sizes and concurrency of SendData, shared with scenarios/senddata.ts. */
export const SEND_PAYLOADS = [128, 4096];
export const SEND_CONCURRENCY = 64;
/** Concurrent client streams and messages per stream of SendDataStream, shared with scenarios/senddatastream.ts. */
export const STREAM_CONCURRENCY = 8;
export const STREAM_MESSAGES_PER_CALL = 1000;

/** The bare connect-node server, also run beside streamgate by scenarios/senddata.ts. */
export const CONNECT_BASELINE = { scenario: "baseline-connect-node", file: "dist/bench/baselines/connect-empty.js" };

const SERVERS = [CONNECT_BASELINE, { scenario: "baseline-grpc-js", file: "dist/bench/baselines/grpcjs-empty.js" }];

/** The payload size of the SendDataStream messages (here and in scenarios/senddatastream.ts). */
export const STREAM_PAYLOAD_BYTES = 128;

/** The scenario name of a baseline server's SendDataStream row, e.g. "baseline-connect-node-stream". */
export function streamRow(server: string): string {
  return `${server}-stream`;
}

/** The 128 B messages of one SendDataStream call. */
export function streamMessages(perCall: number): unknown[] {
  const messages = sendRequests(STREAM_PAYLOAD_BYTES);
  return Array.from({ length: perCall }, (_, i) => messages[i % messages.length]);
}

export const baselinesRpc: Scenario = {
  name: "baselines-rpc",
  description: "bare connect-node and grpc-js servers, empty SendData handler (ghz)",
  rows: () =>
    SERVERS.flatMap(({ scenario }) => [
      ...SEND_PAYLOADS.map((payloadBytes) => ({ scenario, broker: "-" as const, payloadBytes })),
      { scenario: streamRow(scenario), broker: "-" as const, payloadBytes: STREAM_PAYLOAD_BYTES },
    ]),
  async run(context) {
    const rows: BenchResult[] = [];
    for (const { scenario, file } of SERVERS) {
      await withServer(startNodeServer([file], {}), async (server) => {
        for (const payloadBytes of SEND_PAYLOADS) {
          const report = await runGhzOn(
            server,
            {
              call: "streamgate.v1.StreamService.SendData",
              data: sendRequests(payloadBytes),
              concurrency: context.quick ? 4 : SEND_CONCURRENCY,
              durationSec: context.durationSec,
            },
            context.warmupSec,
          );
          rows.push(unaryRow(scenario, "-", context.quick ? 4 : SEND_CONCURRENCY, payloadBytes, report));
        }
        // An empty handler answers every stream only once all its messages are read, so
        // completed calls × messages per call is what the server received.
        const perCall = context.quick ? 32 : STREAM_MESSAGES_PER_CALL;
        const concurrency = context.quick ? 2 : STREAM_CONCURRENCY;
        const report = await runGhzOn(
          server,
          {
            call: "streamgate.v1.StreamService.SendDataStream",
            data: streamMessages(perCall),
            concurrency,
            durationSec: context.durationSec,
          },
          context.warmupSec,
        );
        const messages = report.count * perCall;
        rows.push({
          scenario: streamRow(scenario),
          broker: "-",
          concurrency,
          payloadBytes: STREAM_PAYLOAD_BYTES,
          throughput: messages / report.seconds,
          unit: "msg/s",
          latencyMs: report.latencyMs,
          errors: report.errors,
          extra: {
            "messages per call": perCall,
            "call latency": "ms per whole stream",
            "server CPU µs/msg": Math.round((report.serverCpuSeconds / messages) * 1e6 * 10) / 10,
          },
        });
      });
    }
    return rows;
  },
};
