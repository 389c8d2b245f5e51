/**
 * Scenario 6: 10,000 concurrent WatchResults calls on one instance, each
 * receiving its own stream's results: 1,000 streams × 10 watchers (real gRPC
 * server streams, 100 per HTTP/2 connection, so 100 connections).
 *
 * 1. Setup: StartStream the 1,000 streams and send each one record (seq 0).
 * 2. Open: every watcher opens (at most OPEN_IN_FLIGHT opening at once) and
 *    counts as open when seq 0 reaches it (from the fanout's window).
 * 3. Serve: with all 10,000 open, every stream gets SERVE_RECORDS more
 *    records, sent round robin at a fixed rate spread over the run's duration
 *    (1,000 in 8 s: 125 records/s, 1,250 results/s offered: about what the
 *    server carries with 10,000 calls open on 2 shared cores, so the phase
 *    shows them being served rather than an overload); then every watcher
 *    must hold exactly its stream's records, in order (seq 0, 1...), and
 *    nothing of another stream.
 *
 * Errors: watchers that failed, ended, or missed, repeated, reordered or
 * misrouted a result; plus refused sends. The server's peak RSS is sampled
 * over open and serve; its event-loop delay p99 is read for each phase from
 * /metrics (see eventLoopDelay in lib/watch.ts: each scrape resets it).
 * Each measured delivery is also split by stage (sent → accepted by the
 * server → processed → read here), beside the server's own end-to-end p99
 * and this process's event-loop delay, to tell the pipeline's time from
 * pauses (GC) on either side.
 * Targets: all served, RSS ≤ 512 MiB, event-loop delay p99 ≤ 30 ms in both phases.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import type { Result } from "../../gen/streamgate/v1/stream_service_pb.js";
import { type BenchContext, type BrokerKind, onEachBroker, type Scenario } from "../lib/context.js";
import { rssBytes, type StreamgateServer, withServer } from "../lib/processes.js";
import { type BenchResult, ms, p99, percentiles } from "../lib/result.js";
import {
  bucketQuantileMs,
  CALLS_PER_CONNECTION,
  connect,
  cpuMeter,
  DeliveryStages,
  eachLimited,
  eventLoopDelay,
  gcSeconds,
  metricValue,
  mib,
  readStamp,
  type StreamClient,
  sampleRss,
  stampedPayload,
  UNARY,
  until,
  watch,
  within,
} from "../lib/watch.js";

const FULL = { streams: 1000, watchersPerStream: 10 };
const QUICK = { streams: 20, watchersPerStream: 10 };
/** Records each stream gets while serving (after seq 0). */
const SERVE_RECORDS = 1;
const PAYLOAD_BYTES = 128;
/** Its one row per broker. */
const ROW = "watchers";
/**
 * Watchers opening at once (called, not yet given their first result): 1% of
 * them, a steady stream of (re)connections. Without call admission
 * (CALL_TURN_BUDGET_MS=0) the open phase's event-loop delay grows with this:
 * the server would set up every call that arrives in one poll of its sockets
 * before its timers run again.
 */
const OPEN_IN_FLIGHT = 100;
const SETUP_CONCURRENCY = 64;
const OPEN_TIMEOUT_MS = 120_000;
const SETTLE_MS = 30_000;
const TARGET = { rssBytes: 512 * 2 ** 20, eventLoopP99Ms: 30 };

export const watchers: Scenario = {
  name: "watchers",
  description: "10,000 concurrent WatchResults calls (1,000 streams × 10): errors, server RSS, event-loop delay p99",
  rows: (brokers) => onEachBroker(brokers, ROW, PAYLOAD_BYTES),
  async run(context) {
    const rows: BenchResult[] = [];
    for (const broker of context.brokers) {
      rows.push(await withServer(context.startServer(broker), (server) => measure(context, broker, server)));
    }
    return rows;
  },
};

/** One watcher: its stream, what it has received, and whether it went wrong. */
interface WatcherState {
  stream: number;
  /** The seq it expects next (= results received while all were right). */
  next: number;
  problem: string | undefined;
}

async function measure(context: BenchContext, broker: BrokerKind, server: StreamgateServer): Promise<BenchResult> {
  const { streams, watchersPerStream } = context.quick ? QUICK : FULL;
  const watcherCount = streams * watchersPerStream;
  const connections = Math.ceil(watcherCount / CALLS_PER_CONNECTION);
  // Senders on connections of their own, as separate clients would be.
  const { clients, close } = connect(server, connections + 1);
  const sender = clients.pop()!;
  const streamIds = Array.from({ length: streams }, (_, s) => `watchers-${s}`);
  /** Records acknowledged per stream (seq 0 included), and refused sends. */
  const acked = new Array<number>(streams).fill(0);
  let sendErrors = 0;
  /** Per stream, the previous send: a stream's records are sent one after another, so their order is known. */
  const chains = new Array<Promise<void>>(streams).fill(Promise.resolve());
  const sendNext = (s: number, seq: number) =>
    (chains[s] = chains[s]!.then(() =>
      sender
        .sendData(
          { streamId: streamIds[s]!, payload: { case: "raw", value: stampedPayload(seq, PAYLOAD_BYTES) } },
          UNARY,
        )
        .then(
          () => void acked[s]!++,
          () => void sendErrors++,
        ),
    ));

  // 1. Setup.
  const setupStarted = performance.now();
  await eachLimited(streams, SETUP_CONCURRENCY, async (s) => {
    await sender.startStream({ streamId: streamIds[s]! }, UNARY);
    await sendNext(s, 0);
  });
  const setupSeconds = (performance.now() - setupStarted) / 1000;

  // 2. Open.
  const rssBefore = await rssBytes(server.pid);
  const startDelay = await eventLoopDelay(server); // starts the open phase's event-loop delay window
  const rss = sampleRss(server.pid);
  const states: WatcherState[] = [];
  let delivered = 0;
  let measuring = false;
  const latencies: number[] = [];
  /** Where each measured delivery's time went. */
  const stages = new DeliveryStages();
  let closing = false;
  let opened = 0;
  const firstResult: (() => void)[] = [];
  const calls: Promise<void>[] = [];
  let gaveUp = false;
  const open = (w: number): Promise<void> => {
    if (gaveUp) return Promise.resolve();
    const state: WatcherState = { stream: w % streams, next: 0, problem: undefined };
    states[w] = state;
    const streamId = streamIds[state.stream]!;
    const client: StreamClient = clients[w % connections]!;
    const onResult = (result: Result) => {
      const stamp = readStamp(result);
      if (state.problem) return;
      if (!stamp || result.streamId !== streamId || stamp.seq !== state.next) {
        state.problem = `result ${stamp?.seq ?? "?"} of ${result.streamId} where ${streamId} seq ${state.next} was due`;
        return;
      }
      if (state.next === 0) {
        opened++;
        firstResult[w]?.();
      } else {
        delivered++;
        if (measuring) {
          latencies.push(performance.now() - stamp.sentAt);
          stages.add(result, stamp.sentAt);
        }
      }
      state.next++;
    };
    const first = new Promise<void>((resolve) => (firstResult[w] = resolve));
    calls.push(
      watch(client, streamId, onResult).then((error) => {
        if (!closing) state.problem ??= `ended: ${String(error ?? "OK")}`;
        firstResult[w]?.();
      }),
    );
    return first;
  };
  const openStarted = performance.now();
  const cpuOpen = await cpuMeter(server);
  // Watchers not open by the timeout count as failed ("never opened" or no seq 0).
  if (!(await within(eachLimited(watcherCount, OPEN_IN_FLIGHT, open), OPEN_TIMEOUT_MS))) {
    gaveUp = true;
    context.log(
      `  watchers ${broker}: only ${opened} of ${watcherCount} watchers open after ${OPEN_TIMEOUT_MS / 1000} s`,
    );
  }
  const openSeconds = (performance.now() - openStarted) / 1000;
  const openCpu = await cpuOpen.read();
  const openDelay = await eventLoopDelay(server); // ends the open phase, starts the serve phase
  const openOnServer = metricValue(openDelay.metrics, "streamgate_active_watchers");

  // 3. Serve: a fixed rate, round robin.
  const total = streams * SERVE_RECORDS;
  const serveMs = context.durationSec * 1000;
  const rate = total / context.durationSec;
  const cpuServe = await cpuMeter(server);
  // This process's own lateness: a result read late here was not necessarily sent late.
  const benchDelay = monitorEventLoopDelay({ resolution: 10 });
  benchDelay.enable();
  const serveStarted = performance.now();
  const delivered0 = delivered;
  measuring = true;
  for (let sent = 0; sent < total; ) {
    const due = Math.min(total, Math.floor(((performance.now() - serveStarted) / serveMs) * total));
    for (; sent < due; sent++) void sendNext(sent % streams, 1 + Math.floor(sent / streams));
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await Promise.all(chains);
  const settled = await until(
    () => states.every((state) => state.problem !== undefined || state.next === acked[state.stream]!),
    SETTLE_MS,
  );
  measuring = false;
  const serveSeconds = (performance.now() - serveStarted) / 1000;
  const results = delivered - delivered0;
  const serveCpu = await cpuServe.read();
  const serveDelay = await eventLoopDelay(server);
  benchDelay.disable();
  const peakRss = await rss.stop();
  closing = true;
  close();
  await Promise.all(calls);

  let failed = 0;
  let firstProblem: string | undefined;
  for (let w = 0; w < watcherCount; w++) {
    const state = states[w];
    const expected = acked[w % streams]!;
    const problem = !state
      ? "never opened"
      : (state.problem ?? (state.next === expected ? undefined : `${state.next} results of ${expected} records`));
    if (problem) {
      failed++;
      firstProblem ??= `watcher ${w}: ${problem}`;
    }
  }
  if (!settled)
    context.log(`  watchers ${broker}: not every watcher had its stream's records after ${SETTLE_MS / 1000} s`);
  if (firstProblem) context.log(`  watchers ${broker}: ${failed} watchers failed, first: ${firstProblem}`);

  const errors = failed + sendErrors;
  const eventLoopP99 = Math.max(openDelay.p99Ms, serveDelay.p99Ms);
  const met = errors === 0 && peakRss <= TARGET.rssBytes && eventLoopP99 <= TARGET.eventLoopP99Ms;
  return {
    scenario: ROW,
    broker,
    concurrency: watcherCount,
    payloadBytes: PAYLOAD_BYTES,
    throughput: results / serveSeconds,
    unit: "results/s",
    latencyMs: percentiles(latencies),
    errors,
    target: {
      goal: `all served (errors 0), RSS ≤ ${mib(TARGET.rssBytes)} MiB, event-loop delay p99 ≤ ${TARGET.eventLoopP99Ms} ms (open and serve phases)`,
      met,
      measured: `errors ${errors}, peak RSS ${mib(peakRss)} MiB, event-loop delay p99 ${openDelay.p99Ms} ms open / ${serveDelay.p99Ms} ms serve`,
    },
    extra: {
      streams,
      "watchers/stream": watchersPerStream,
      connections,
      "open watchers (server gauge)": openOnServer,
      "peak RSS MiB": mib(peakRss),
      "RSS before open MiB": mib(rssBefore),
      "RSS KiB/watcher": Math.round((peakRss - rssBefore) / 1024 / watcherCount),
      "ELD p99 open ms": openDelay.p99Ms,
      "ELD max open ms": openDelay.maxMs,
      "ELD p99 serve ms": serveDelay.p99Ms,
      "ELD max serve ms": serveDelay.maxMs,
      "heap used after open MiB": mib(metricValue(openDelay.metrics, "nodejs_heap_size_used_bytes")),
      "GC s open": gcSeconds(openDelay.metrics) - gcSeconds(startDelay.metrics),
      "GC s serve": gcSeconds(serveDelay.metrics) - gcSeconds(openDelay.metrics),
      "setup s": setupSeconds,
      "open s": openSeconds,
      "server CPU ms/open": (openCpu.server / watcherCount) * 1000,
      "bench CPU ms/open": (openCpu.bench / watcherCount) * 1000,
      "offered records/s": rate,
      "server CPU s/s serve": serveCpu.server / serveSeconds,
      "bench CPU s/s serve": serveCpu.bench / serveSeconds,
      // Where a slow delivery's time went: by stage, the server's own SendData-to-watcher time, and this process's lateness.
      "p99 ms by stage": `sent→accepted ${p99(stages.toAccepted)}, accepted→processed ${p99(stages.acceptedToProcessed)}, processed→read ${p99(stages.processedToRead)}`,
      "server e2e p99 serve ms (bucket ≤)": bucketQuantileMs(
        openDelay.metrics,
        serveDelay.metrics,
        "streamgate_end_to_end_seconds",
        0.99,
      ),
      "bench ELD p99 serve ms": ms(benchDelay.percentile(99)),
      "bench ELD max serve ms": ms(benchDelay.max),
      "send errors": sendErrors,
    },
  };
}
