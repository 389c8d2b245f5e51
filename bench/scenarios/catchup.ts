/**
 * Catch-up: many watchers that start from the beginning of streams whose
 * results are no longer in the fanout's window (FANOUT_WINDOW, 256 per
 * stream), all at once, as clients do when an instance restarts and they
 * resume. Their results come from the broker's log (`Broker.fetch`), not from
 * memory: on Kafka, fetch requests to the partition leaders.
 *
 * STREAMS streams of RECORDS results each; WATCHERS watchers spread over them,
 * each reading from its stream's first result to its last. Throughput:
 * results delivered per second, all watchers together; latency: per watcher,
 * from its call to its last result.
 */
import { performance } from "node:perf_hooks";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { StartPosition, StreamService } from "../../gen/streamgate/v1/stream_service_pb.js";
import { onEachBroker, type Scenario } from "../lib/context.js";
import { AUTH } from "../lib/load.js";
import { type StreamgateServer, withServer } from "../lib/processes.js";
import { type BenchResult, percentiles } from "../lib/result.js";
import { connect, eachLimited, UNARY } from "../lib/watch.js";

const STREAMS = 8;
const RECORDS = 2_000;
const WATCHERS = 200;
const PAYLOAD_BYTES = 128;
/** Its one row per broker. */
const ROW = "catchup";

export const catchUp: Scenario = {
  name: "catchup",
  description: `${WATCHERS} watchers resuming at once from the start of streams of ${RECORDS.toLocaleString("en-US")} results (read back from the broker)`,
  rows: (brokers) => onEachBroker(brokers, ROW, PAYLOAD_BYTES),
  async run(context) {
    const rows: BenchResult[] = [];
    for (const broker of context.brokers) {
      rows.push(await withServer(context.startServer(broker), (server) => measure(server, broker, context.quick)));
    }
    return rows;
  },
};

async function measure(server: StreamgateServer, broker: string, quick: boolean): Promise<BenchResult> {
  const records = quick ? 300 : RECORDS;
  const watchers = quick ? 8 : WATCHERS;
  const client = createClient(StreamService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.port}` }));
  const streamIds = Array.from({ length: STREAMS }, (_, i) => `catchup-${i}`);
  const payload = new Uint8Array(PAYLOAD_BYTES).fill(0x61);
  for (const streamId of streamIds) {
    await client.startStream({ streamId }, UNARY);
    async function* messages() {
      for (let i = 0; i < records; i++) yield { streamId, payload: { case: "raw" as const, value: payload } };
    }
    await client.sendDataStream(messages(), UNARY);
  }
  // Every result written before the watchers come.
  for (const streamId of streamIds) {
    for (;;) {
      const { counts } = await client.getStream({ streamId }, UNARY);
      if (Number(counts?.results ?? 0n) >= records) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  const connections = connect(server, Math.max(1, Math.ceil(watchers / 50)));
  const latencies: number[] = [];
  let delivered = 0;
  let errors = 0;
  const start = performance.now();
  try {
    await eachLimited(watchers, watchers, async (i) => {
      const began = performance.now();
      const done = new AbortController();
      let seen = 0;
      try {
        const calls = connections.clients[i % connections.clients.length]!.watchResults(
          { streamId: streamIds[i % STREAMS]!, startPosition: StartPosition.EARLIEST },
          { headers: AUTH, signal: done.signal },
        );
        for await (const _ of calls) {
          if (++seen === records) break;
        }
        latencies.push(performance.now() - began);
      } catch {
        errors++;
      } finally {
        delivered += seen;
        done.abort();
      }
    });
  } finally {
    connections.close();
  }
  const seconds = (performance.now() - start) / 1000;
  return {
    scenario: ROW,
    broker,
    concurrency: watchers,
    payloadBytes: PAYLOAD_BYTES,
    throughput: delivered / seconds,
    unit: "results/s",
    latencyMs: percentiles(latencies),
    errors,
    extra: {
      streams: STREAMS,
      "results per stream": records,
      latency: "ms per watcher, from its call to its stream's last result",
      "all done s": Number(seconds.toFixed(2)),
    },
  };
}
