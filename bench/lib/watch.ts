/**
 * What the WatchResults scenarios (fanout, watchers) share: gRPC clients over
 * several real HTTP/2 connections, one WatchResults call run to its end, record
 * payloads that carry their send time and sequence number (so a watcher times
 * and checks each result without a lookup), watchers of any transport behind
 * one interface (WatcherPool; the SSE and WebSocket ones are in
 * http-watch.ts), and the server-side figures they report (CPU time, peak RSS,
 * event-loop delay from /metrics).
 */
import { readFile } from "node:fs/promises";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type CallOptions, type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { type Result, StreamService } from "../../gen/streamgate/v1/stream_service_pb.js";
import { AUTH } from "./load.js";
import { rssBytes, type StreamgateServer } from "./processes.js";

/** A StreamService client. */
export type StreamClient = Client<typeof StreamService>;

/**
 * Calls per HTTP/2 connection. streamgate's listener sets no
 * SETTINGS_MAX_CONCURRENT_STREAMS (Node's default: unlimited; a Node client
 * assumes 100 only until the server's SETTINGS arrive), and one connection
 * can carry 10,000 calls; but many clients mean many connections, and this
 * spreads the server's work over sockets as they would.
 */
export const CALLS_PER_CONNECTION = 100;

/** The options of a WatchResults call: the bench key, and no deadline. */
const WATCH: CallOptions = { headers: AUTH };

/** The options of a unary call: the bench key, and a deadline, so a server that stops answering fails the run instead of hanging it. */
export const UNARY: CallOptions = { headers: AUTH, timeoutMs: 30_000 };

/** gRPC clients, each on its own HTTP/2 connection to one server. */
export interface Connections {
  clients: StreamClient[];
  /** Destroys every connection: calls still open fail on the client and are reset on the server. */
  close(): void;
}

/** Opens `count` connections (lazily, on their first call) to `server`. */
export function connect(server: StreamgateServer, count: number): Connections {
  const baseUrl = `http://127.0.0.1:${server.port}`;
  const managers = Array.from({ length: count }, () => new Http2SessionManager(baseUrl));
  return {
    clients: managers.map((sessionManager) =>
      createClient(StreamService, createGrpcTransport({ baseUrl, sessionManager })),
    ),
    close: () => managers.forEach((manager) => manager.abort()),
  };
}

/** Record payload layout: send time (float64, performance.now() of this process), then sequence number (uint32). */
const SENT_AT = 0;
const SEQ = 8;
const STAMP_BYTES = 12;

/** A raw payload of `bytes` bytes (at least 12) stamped with `seq` and the time now. */
export function stampedPayload(seq: number, bytes: number): Uint8Array {
  const payload = Buffer.alloc(Math.max(bytes, STAMP_BYTES), 0x61);
  payload.writeDoubleLE(performance.now(), SENT_AT);
  payload.writeUInt32LE(seq, SEQ);
  return payload;
}

/** What a stamped result says: when its record was sent and its sequence number; undefined for any other result. */
export function readStamp(result: Result): { sentAt: number; seq: number } | undefined {
  return readRawStamp(result.payload.case === "raw" ? result.payload.value : undefined);
}

/** What a stamped payload's raw bytes say (see {@link readStamp}); undefined for no bytes, or too few. */
export function readRawStamp(raw: Uint8Array | undefined): { sentAt: number; seq: number } | undefined {
  if (raw === undefined || raw.length < STAMP_BYTES) return undefined;
  const view = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  return { sentAt: view.readDoubleLE(SENT_AT), seq: view.readUInt32LE(SEQ) };
}

/** What a watcher hands on of each result, whatever its transport: the stream it names and its raw payload (undefined for a JSON one). */
export type OnWatchedResult = (streamId: string, raw: Uint8Array | undefined) => void;

/** Watchers of one transport (gRPC WatchResults, Server-Sent Events, WebSocket) to one server. */
export interface WatcherPool {
  /** How they connect, for a row's notes. */
  transport: string;
  /** Connections they open to the server. */
  connections: number;
  /**
   * Opens watcher `index` on `streamId`, passing each result to `onResult`,
   * until its watch ends; resolves with the error it ended with (undefined
   * when it ended as a watch of a closed stream does). Never rejects.
   */
  watch(index: number, streamId: string, onResult: OnWatchedResult): Promise<unknown>;
  /** Destroys every connection: watches still open end on the client and are canceled on the server. */
  close(): void;
}

/** `watchers` WatchResults calls, CALLS_PER_CONNECTION per HTTP/2 connection: watcher i on connection i % connections. */
export function grpcWatchers(server: StreamgateServer, watchers: number): WatcherPool {
  const connections = Math.ceil(watchers / CALLS_PER_CONNECTION);
  const { clients, close } = connect(server, connections);
  return {
    transport: `gRPC WatchResults (connect-node), ${CALLS_PER_CONNECTION} calls per HTTP/2 connection`,
    connections,
    watch: (index, streamId, onResult) =>
      watch(clients[index % connections]!, streamId, (result) =>
        onResult(result.streamId, result.payload.case === "raw" ? result.payload.value : undefined),
      ),
    close,
  };
}

/**
 * Runs one WatchResults call on `streamId`, passing each result to `onResult`,
 * until the call ends; resolves with the error it ended with (undefined when
 * it ended OK). Never rejects.
 */
export async function watch(
  client: StreamClient,
  streamId: string,
  onResult: (result: Result) => void,
): Promise<unknown> {
  try {
    for await (const { result } of client.watchResults({ streamId }, WATCH)) {
      if (result) onResult(result);
    }
    return undefined;
  } catch (error) {
    return error;
  }
}

/** Runs `task(i)` for i in [0, count) with at most `concurrency` in flight. */
export async function eachLimited(
  count: number,
  concurrency: number,
  task: (i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

/** Resolves once `done()` is true, checking every 20 ms; false if `timeoutMs` passed first. */
export async function until(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!done()) {
    if (performance.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

/** Resolves true once `promise` settles, or false when `timeoutMs` passes first. */
export async function within(promise: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * CPU seconds (user + system) process `pid` has used, with its child
 * processes' (a cluster's workers: WORKERS > 1), those running and those
 * ended (Linux /proc; clock ticks of 1/100 s).
 */
export async function cpuSeconds(pid: number): Promise<number> {
  const own = await statFields(pid);
  // utime, stime, and cutime, cstime: the children it has waited for.
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  const children = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => "");
  for (const child of children.split(" ").filter(Boolean)) {
    const fields = await statFields(Number(child)).catch(() => undefined);
    if (fields) ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / 100;
}

/** The fields of /proc/<pid>/stat after the command name (which is in parentheses and may hold spaces). */
async function statFields(pid: number): Promise<string[]> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** This process's CPU seconds (user + system). */
export function ownCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/** CPU seconds used by the server and by this process since the meter was made. */
export async function cpuMeter(
  server: StreamgateServer,
): Promise<{ read(): Promise<{ server: number; bench: number }> }> {
  const server0 = await cpuSeconds(server.pid);
  const bench0 = ownCpuSeconds();
  return {
    read: async () => ({ server: (await cpuSeconds(server.pid)) - server0, bench: ownCpuSeconds() - bench0 }),
  };
}

/** Samples a process's RSS every `intervalMs` until stopped; stop() resolves with the peak, in bytes. */
export function sampleRss(pid: number, intervalMs = 100): { stop(): Promise<number> } {
  let peak = 0;
  const sample = async () => {
    peak = Math.max(peak, await rssBytes(pid).catch(() => 0));
  };
  void sample();
  const timer = setInterval(() => void sample(), intervalMs);
  return {
    stop: async () => {
      clearInterval(timer);
      await sample();
      return peak;
    },
  };
}

/**
 * Where deliveries' time went, by stage, from the server's wall-clock stamps
 * on each result: from when the record was sent (or due) here to the server
 * accepting it, from acceptance to processing, and from processing to its
 * reading here.
 */
export class DeliveryStages {
  readonly toAccepted: number[] = [];
  readonly acceptedToProcessed: number[] = [];
  readonly processedToRead: number[] = [];

  /** Records `result`, read now, whose record was sent or due at `fromMs` (this process's performance.now()). */
  add(result: Result, fromMs: number): void {
    if (!result.sendTime || !result.processTime) return;
    const accepted = timestampMs(result.sendTime);
    const processed = timestampMs(result.processTime);
    this.toAccepted.push(accepted - (performance.timeOrigin + fromMs));
    this.acceptedToProcessed.push(processed - accepted);
    this.processedToRead.push(Date.now() - processed);
  }
}

/** A metric's value in a /metrics text (the first sample of that name), or NaN. */
export function metricValue(text: string, name: string): number {
  const line = text
    .split("\n")
    .find((candidate) => candidate.startsWith(`${name} `) || candidate.startsWith(`${name}{`));
  return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** Seconds spent in garbage collection so far, all kinds (prom-client's nodejs_gc_duration_seconds). */
export function gcSeconds(text: string): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("nodejs_gc_duration_seconds_sum{")) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

/**
 * The upper bound, in milliseconds, of the bucket of histogram `name` that
 * holds its `quantile` among the observations made between two /metrics
 * scrapes: what the server itself measured over that window, at its buckets'
 * resolution. NaN when nothing was observed.
 */
export function bucketQuantileMs(before: string, after: string, name: string, quantile: number): number {
  const buckets = (text: string) =>
    new Map(
      text
        .split("\n")
        .filter((line) => line.startsWith(`${name}_bucket{`))
        .map((line) => [/le="([^"]+)"/.exec(line)![1]!, Number(line.slice(line.lastIndexOf(" ") + 1))] as const),
    );
  const start = buckets(before);
  const counts = [...buckets(after)].map(([le, count]) => [le, count - (start.get(le) ?? 0)] as const);
  const total = counts[counts.length - 1]?.[1] ?? 0;
  if (total === 0) return Number.NaN;
  const [le] = counts.find(([, count]) => count >= quantile * total)!;
  return le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le) * 1000;
}

/** The server's event-loop delay since its previous scrape, in milliseconds. */
export interface EventLoopDelay {
  p99Ms: number;
  maxMs: number;
}

/**
 * Scrapes the server's /metrics and returns its event-loop delay since the
 * previous scrape. prom-client (15.x) feeds nodejs_eventloop_lag_* from
 * perf_hooks.monitorEventLoopDelay (a 10 ms timer: each sample is how late it
 * fired) and resets that histogram on every scrape, so a scrape before a phase
 * starts the window and a scrape after it reads the phase alone. Nothing else
 * may scrape the server in between.
 */
export async function eventLoopDelay(server: StreamgateServer): Promise<EventLoopDelay & { metrics: string }> {
  const metrics = await server.metrics();
  const round = (seconds: number) => Math.round(seconds * 1e5) / 100;
  return {
    p99Ms: round(metricValue(metrics, "nodejs_eventloop_lag_p99_seconds")),
    maxMs: round(metricValue(metrics, "nodejs_eventloop_lag_max_seconds")),
    metrics,
  };
}

/** Mebibytes, rounded to 0.1. */
export function mib(bytes: number): number {
  return Math.round((bytes / 2 ** 20) * 10) / 10;
}
