/**
 * Scenario 1: StartStream, unary, each call a new stream (ghz), on each broker.
 */
import type { Scenario } from "../lib/context.js";
import { runGhzOn } from "../lib/ghz.js";
import { withServer } from "../lib/processes.js";
import { AUTH } from "../lib/load.js";
import type { BenchResult } from "../lib/result.js";

const CONCURRENCY = 64;

export const startStream: Scenario = {
  name: "startstream",
  description: "StartStream unary, a new stream per call (ghz)",
  async run(context) {
    const rows: BenchResult[] = [];
    for (const broker of context.brokers) {
      await withServer(context.startServer(broker), async (server) => {
        const concurrency = context.quick ? 4 : CONCURRENCY;
        const report = await runGhzOn(server, {
          call: "streamgate.v1.StreamService.StartStream",
          data: { stream_id: "bench-{{newUUID}}" },
          metadata: AUTH,
          concurrency,
          durationSec: context.durationSec,
          warmupSec: context.warmupSec,
        });
        rows.push({
          scenario: "startstream",
          broker,
          concurrency,
          payloadBytes: 0,
          throughput: report.rps,
          unit: "req/s",
          latencyMs: report.latencyMs,
          errors: report.errors,
          extra: {
            "server CPU µs/call": Math.round((report.serverCpuSeconds / report.count) * 1e6),
            ...(report.errors ? { errors: JSON.stringify(report.errorDistribution).slice(0, 200) } : {}),
          },
        });
      });
    }
    return rows;
  },
};
