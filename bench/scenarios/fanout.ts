/**
 * Scenario 4: fan-out to watchers, over each way a watcher can connect, each
 * row on a server of its own: `fanout`, WatchResults (real gRPC server
 * streams, 100 per HTTP/2 connection); `fanout-sse`, Server-Sent Events on
 * `GET /v1/streams/{id}/results` over HTTP/2, 100 streams per connection as
 * the gRPC rows have; `fanout-websocket`, a WebSocket on that path, one TCP
 * connection each (see lib/http-watch.ts). 10 streams × 100 watchers = 1,000
 * watches, and a producer on its own connection sending 128 B raw SendData
 * records (gRPC, the same for every row) to the 10 streams in a closed loop on
 * delivery: each stream has at most WINDOW records sent but not yet delivered
 * to every one of its watchers. So the figure is the most results per second
 * the server (with this process's watchers on the same 2 cores: their CPU is
 * reported beside it) can deliver without a watcher falling behind. Latency is
 * from the SendData call to each watcher's receipt (the send time travels in
 * the payload), at that saturating load. Before the load every watcher must
 * hold its stream's first record (so none is still opening), and after it,
 * exactly the records acknowledged on its stream. Memory per watcher: what
 * the server holds after a full garbage collection (lib/server-memory.ts:
 * RSS, V8 heap used, external) once every watcher holds its first record, less
 * the same before any was opened, ÷ watchers.
 */

import { type BenchContext, type BrokerKind, onEachBroker, type Scenario } from "../lib/context.js";
import { sseWatchers, webSocketWatchers } from "../lib/http-watch.js";
import { type StreamgateServer, withServer } from "../lib/processes.js";
import type { BenchResult } from "../lib/result.js";
import { percentiles } from "../lib/result.js";
import { inspectableServerEnv, settledMemory } from "../lib/server-memory.js";
import {
  connect,
  cpuMeter,
  grpcWatchers,
  mib,
  readRawStamp,
  stampedPayload,
  UNARY,
  until,
  type WatcherPool,
} from "../lib/watch.js";

const FULL = { streams: 10, watchersPerStream: 100 };
const QUICK = { streams: 2, watchersPerStream: 10 };
/**
 * Records per stream sent but not yet delivered to all its watchers (so at
 * most 8 × 100 × 10 = 8,000 results in flight). The loop saturates the server
 * at any window; a deeper one buys some throughput (more results per turn of
 * the server's event loop, fewer socket writes per result) and costs latency
 * (Little's law: latency ≈ results in flight / throughput), so latency here is
 * at saturation, not at a given load (the e2e scenario measures that). It stays
 * far below the server's per-watcher buffer (WATCH_BUFFER, 1024), so no watcher
 * is ended for falling behind.
 */
const WINDOW = 8;
const PAYLOAD_BYTES = 128;
/** Its rows on each broker: one per transport the watchers connect over. */
const TRANSPORTS: { row: string; open(server: StreamgateServer, watchers: number): WatcherPool }[] = [
  { row: "fanout", open: grpcWatchers },
  { row: "fanout-sse", open: sseWatchers },
  { row: "fanout-websocket", open: webSocketWatchers },
];
/**
 * The servers' settings beside the bench's own: the bench's one address stands
 * for every client, and a WebSocket is a connection of its own, so the
 * per-peer connection cap (MAX_CONNECTIONS_PER_PEER, 256) is raised to the
 * global one (MAX_CONNECTIONS, 10,000), as README advises behind a load
 * balancer. The same for every row; the gRPC and SSE rows use 11 connections.
 */
const SERVER_ENV = { MAX_CONNECTIONS_PER_PEER: "10000" };
/** Load before the measured window, so it starts in the steady state. */
const WARMUP_MS = 1000;
const SETTLE_MS = 15_000;
const OPEN_TIMEOUT_MS = 60_000;

export const fanout: Scenario = {
  name: "fanout",
  description:
    "fan-out: N watchers on M streams over WatchResults, SSE and WebSocket, results delivered per second (closed loop on delivery)",
  rows: (brokers) => TRANSPORTS.flatMap(({ row }) => onEachBroker(brokers, row, PAYLOAD_BYTES)),
  async run(context) {
    const rows: BenchResult[] = [];
    for (const broker of context.brokers) {
      for (const transport of TRANSPORTS) {
        const inspector = await inspectableServerEnv();
        rows.push(
          await withServer(context.startServer(broker, { ...SERVER_ENV, ...inspector.env }), (server) =>
            measure(context, broker, server, transport, inspector.port),
          ),
        );
      }
    }
    return rows;
  },
};

/** One stream's producer state and its watchers' progress. */
class StreamLoad {
  /** Records sent and not refused (acknowledged or still in flight). */
  expected = 0;
  sent = 0;
  sendErrors = 0;
  /** Live watchers by results received, at index count % ring (counts span at most WINDOW + 1 values). */
  private readonly at: number[];
  /** Results received by the slowest live watcher. */
  slowest = 0;
  live: number;
  private room: (() => void) | undefined;

  constructor(
    readonly streamId: string,
    watchers: number,
  ) {
    this.at = new Array<number>(WINDOW + 2).fill(0);
    this.at[0] = watchers;
    this.live = watchers;
  }

  /** A watcher went from `count` to `count + 1` results. */
  received(count: number): void {
    const ring = this.at.length;
    this.at[count % ring]!--;
    this.at[(count + 1) % ring]!++;
    this.advance();
  }

  /** A watcher with `count` results ended: the loop no longer waits for it. */
  lost(count: number): void {
    this.at[count % this.at.length]!--;
    this.live--;
    this.advance();
  }

  /** Wakes the producer waiting for room (to see that the load is over). */
  stop(): void {
    this.wake();
  }

  /** A send was refused: its record will never arrive. */
  refused(): void {
    this.expected--;
    this.sendErrors++;
    this.wake();
  }

  hasRoom(): boolean {
    return this.live > 0 && this.expected - this.slowest < WINDOW;
  }

  /** Resolves when the window may have room (or the stream lost its watchers). */
  waitForRoom(): Promise<void> {
    return new Promise((resolve) => (this.room = resolve));
  }

  private advance(): void {
    const ring = this.at.length;
    while (this.live > 0 && this.slowest < this.expected && this.at[this.slowest % ring] === 0) this.slowest++;
    this.wake();
  }

  private wake(): void {
    const room = this.room;
    this.room = undefined;
    room?.();
  }
}

async function measure(
  context: BenchContext,
  broker: BrokerKind,
  server: StreamgateServer,
  transport: (typeof TRANSPORTS)[number],
  inspectorPort: number,
): Promise<BenchResult> {
  const { row } = transport;
  const { streams, watchersPerStream } = context.quick ? QUICK : FULL;
  const watcherCount = streams * watchersPerStream;
  // The producer has a connection of its own, as a separate client would.
  const producerConnection = connect(server, 1);
  const producer = producerConnection.clients[0]!;
  const loads: StreamLoad[] = [];
  for (let s = 0; s < streams; s++) {
    const streamId = `fanout-${s}`;
    await producer.startStream({ streamId }, UNARY);
    loads.push(new StreamLoad(streamId, watchersPerStream));
  }

  let delivered = 0;
  let measuring = false;
  const latencies: number[] = [];
  const counts = new Array<number>(watcherCount).fill(0);
  /** Watchers that failed, ended early or got a result not of their stream, with the first reason. */
  const failed = new Set<number>();
  let firstFailure: unknown;
  const fail = (w: number, reason: unknown) => {
    if (failed.size === 0) firstFailure = reason;
    failed.add(w);
  };
  let closing = false;
  // The server's memory before any watcher connects (the producer's connection is open).
  const before = await settledMemory(server.pid, inspectorPort);
  const pool = transport.open(server, watcherCount);
  const close = () => {
    pool.close();
    producerConnection.close();
  };
  /** KiB per watcher, to 0.1. */
  const perWatcherKiB = (bytes: number) => Math.round((bytes / 1024 / watcherCount) * 10) / 10;
  const calls: Promise<void>[] = [];
  for (let w = 0; w < watcherCount; w++) {
    // Watcher w is on stream w % streams (and, sharing connections, on connection w % connections: every connection carries every stream).
    const load = loads[w % streams]!;
    const onResult = (streamId: string, raw: Uint8Array | undefined) => {
      const stamp = readRawStamp(raw);
      if (!stamp || streamId !== load.streamId) {
        fail(w, `a result of ${streamId} on a watcher of ${load.streamId}`);
        return;
      }
      delivered++;
      if (measuring) latencies.push(performance.now() - stamp.sentAt);
      load.received(counts[w]!++);
    };
    calls.push(
      pool.watch(w, load.streamId, onResult).then((error) => {
        // Ending at all (OK or not) before the connections are closed is a failure: the streams stay open.
        if (!closing) fail(w, error ?? "ended early");
        load.lost(counts[w]!);
      }),
    );
  }

  let running = true;
  const sends = new Set<Promise<unknown>>();
  /** Sends the stream's next record; resolves once it is acknowledged or refused. */
  const send = (load: StreamLoad): Promise<unknown> => {
    const seq = load.sent++;
    load.expected++;
    const sending = producer
      .sendData({ streamId: load.streamId, payload: { case: "raw", value: stampedPayload(seq, PAYLOAD_BYTES) } }, UNARY)
      .catch(() => load.refused());
    sends.add(sending);
    void sending.finally(() => sends.delete(sending));
    return sending;
  };
  /** The closed loop: a stream's next record as soon as its window has room. */
  const produce = async (load: StreamLoad) => {
    while (running) {
      if (load.hasRoom()) {
        void send(load);
      } else {
        if (load.live === 0) return;
        await load.waitForRoom();
      }
    }
  };
  // Open: one record per stream, which every watcher receives once its call is
  // in place (from the fanout's window if it opened after the record), so the
  // load starts with every watcher live, not with calls still being set up.
  const opening = performance.now();
  await Promise.all(loads.map((load) => send(load)));
  const opened = await until(() => loads.every((load) => load.live === 0 || load.slowest >= 1), OPEN_TIMEOUT_MS);
  if (!opened) {
    closing = true;
    close();
    throw new Error(
      `${row} ${broker}: not every watcher received its stream's first record after ${OPEN_TIMEOUT_MS / 1000} s` +
        (failed.size > 0 ? ` (${failed.size} failed, first: ${String(firstFailure)})` : ""),
    );
  }
  const openSeconds = (performance.now() - opening) / 1000;
  const afterOpen = await settledMemory(server.pid, inspectorPort);
  const producers = loads.map(produce);
  await sleep(context.quick ? 200 : WARMUP_MS);

  const cpu = await cpuMeter(server);
  const delivered0 = delivered;
  const started = performance.now();
  measuring = true;
  await sleep(context.durationSec * 1000);
  measuring = false;
  const seconds = (performance.now() - started) / 1000;
  const count = delivered - delivered0;
  const { server: serverCpu, bench: benchCpu } = await cpu.read();

  running = false;
  loads.forEach((load) => load.stop());
  await Promise.all([...sends]);
  // Every live watcher has every record its stream acknowledged.
  const settled = await until(() => loads.every((load) => load.live === 0 || load.slowest >= load.expected), SETTLE_MS);
  closing = true;
  close();
  await Promise.all(calls);
  await Promise.all(producers);

  const sendErrors = loads.reduce((sum, load) => sum + load.sendErrors, 0);
  for (let w = 0; w < watcherCount; w++) {
    if (counts[w] !== loads[w % streams]!.expected)
      fail(w, `${counts[w]} results of ${loads[w % streams]!.expected} records`);
  }
  const records = loads.reduce((sum, load) => sum + load.expected, 0);
  if (!settled)
    context.log(`  ${row} ${broker}: not every watcher had its stream's records after ${SETTLE_MS / 1000} s`);
  if (failed.size > 0)
    context.log(`  ${row} ${broker}: ${failed.size} watchers failed, first: ${String(firstFailure)}`);
  return {
    scenario: row,
    broker,
    concurrency: watcherCount,
    payloadBytes: PAYLOAD_BYTES,
    throughput: count / seconds,
    unit: "results/s",
    latencyMs: percentiles(latencies),
    // Watchers that failed or ended without exactly their stream's records, and refused sends.
    errors: failed.size + sendErrors,
    extra: {
      watchers: pool.transport,
      streams,
      "watchers/stream": watchersPerStream,
      connections: pool.connections,
      "open s": openSeconds,
      "RSS before open MiB": mib(before.rss),
      // After a full GC, before and after opening: what the watchers keep alive.
      "RSS KiB/watcher": perWatcherKiB(afterOpen.rss - before.rss),
      "heap KiB/watcher": perWatcherKiB(afterOpen.heapUsed - before.heapUsed),
      "external KiB/watcher": perWatcherKiB(afterOpen.external - before.external),
      "records/s": count / watchersPerStream / seconds,
      "loop window/stream": WINDOW,
      "server CPU s/s": serverCpu / seconds,
      "server CPU µs/result": (serverCpu / count) * 1e6,
      "bench CPU s/s": benchCpu / seconds,
      "bench CPU µs/result": (benchCpu / count) * 1e6,
      records,
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
