/**
 * Scenario 1: StartStream, unary, each call a new stream (ghz), on each broker.
 */
import { onEachBroker, type Scenario } from "../lib/context.js";
import { runGhzOn, unaryRow } from "../lib/ghz.js";
import { AUTH } from "../lib/load.js";
import { withServer } from "../lib/processes.js";
import type { BenchResult } from "../lib/result.js";

const CONCURRENCY = 64;
/** Its one row per broker; no payload. */
const ROW = "startstream";

export const startStream: Scenario = {
  name: "startstream",
  description: "StartStream unary, a new stream per call (ghz)",
  rows: (brokers) => onEachBroker(brokers, ROW, 0),
  async run(context) {
    const rows: BenchResult[] = [];
    for (const broker of context.brokers) {
      await withServer(context.startServer(broker), async (server) => {
        const concurrency = context.quick ? 4 : CONCURRENCY;
        const report = await runGhzOn(
          server,
          {
            call: "streamgate.v1.StreamService.StartStream",
            data: { stream_id: "bench-{{newUUID}}" },
            metadata: AUTH,
            concurrency,
            durationSec: context.durationSec,
          },
          context.warmupSec,
        );
        const row = unaryRow(ROW, broker, concurrency, 0, report);
        if (report.errors) row.extra!.errors = JSON.stringify(report.errorDistribution).slice(0, 200);
        rows.push(row);
      });
    }
    return rows;
  },
};
