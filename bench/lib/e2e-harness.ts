/**
 * The end-to-end latency harness (scenarios/e2e.ts): a few streams, a
 * WatchResults call on each from LATEST (connect-node's gRPC transport), and
 * records sent open loop at a fixed rate over a few HTTP/2 connections (the
 * lean gRPC caller of lean-unary.ts): each as a SendData call, or ("stream"
 * ingestion) each written at its due time to one SendDataStream call per
 * connection that lasts the whole phase.
 *
 * Each record's raw payload carries its phase and sequence number; its latency
 * is the time from its due time (phase start + seq / rate, in this process's
 * monotonic clock) to its delivery to the watcher. A record not delivered
 * within the grace period after the phase's last due time is lost.
 */
import { performance } from "node:perf_hooks";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  type Result,
  SendDataRequestSchema,
  SendDataStreamRequestSchema,
  SendDataStreamResponseSchema,
  StartPosition,
  StreamService,
} from "../../gen/streamgate/v1/stream_service_pb.js";
import { leanCaller } from "./lean-unary.js";
import { BENCH_API_KEY, type StreamgateServer } from "./processes.js";
import { type Latency, p99, percentiles } from "./result.js";
import { cpuSeconds, DeliveryStages } from "./watch.js";

/** Streams (each with one watcher) the records are spread over, round robin. */
const STREAMS = 8;
/** HTTP/2 connections the sends are spread over; the watchers have one more of their own. */
const SEND_CONNECTIONS = 3;
/** The size of every record it sends (the e2e rows' payload size). */
export const PAYLOAD_BYTES = 128;
/**
 * How long after a phase's last due time a record may still arrive. Long
 * enough for an overloaded phase's backlog to drain (1,000 unary calls/s on
 * Kafka delivered up to ~12 s late here, and a 5 s grace called them lost),
 * so that "lost" means lost; a phase that keeps up ends as soon as its last
 * record is delivered.
 */
const GRACE_MS = 30_000;
/** Phase id of the probe records (see sync()). */
const PROBE = 0;
/** How long the watches get to deliver a probe (to show they are live, or to catch up after an overloaded phase). */
const SYNC_TIMEOUT_MS = 60_000;

/** What one phase measured. */
export interface PhaseReport {
  /** Records due. */
  count: number;
  /** Msg/s offered. */
  offered: number;
  /** Seconds from the first due time to the last. */
  seconds: number;
  /** Records delivered within the grace period (once each). */
  delivered: number;
  /** Records sent without error but not delivered within the grace period. */
  lost: number;
  /** Records whose send failed: a failed SendData call, or a record a SendDataStream call rejected or did not deliver when it failed. */
  sendErrors: number;
  firstError?: string;
  /** Due time to delivery, of the delivered records. */
  latencyMs: Latency;
  /** p99 of due time to SendData's answer; undefined for stream ingestion (a client stream is answered once, at its end). */
  ackP99: number | undefined;
  /** p99 of how late the generator issued a call after its due time (its own lag, included in the latencies). */
  lateP99: number;
  /** p99 of Result.send_time − the due time (wall clocks, ms resolution): the client, the connection and the server until SendData's handler. */
  dueToAcceptP99: number;
  /** p99 of Result.process_time − send_time (server clock, ms resolution): ingest, broker and processor. */
  acceptToProcessP99: number;
  /** p99 of delivery (this process's wall clock) − Result.process_time: results topic and fan-out. */
  processToWatcherP99: number;
  /** CPU time over wall time from the phase's start until it settled, in cores: this process (the load generator) and the server's. */
  generatorCores: number;
  serverCores: number;
  streams: number;
  connections: string;
}

/** How a phase's records are sent: one SendData call each, or written to a SendDataStream call per connection. */
export type Ingestion = "unary" | "stream";

/** The harness once its streams are started and watched; see the module comment. */
export interface Harness {
  /**
   * Runs one phase of `seconds` at `rate` msg/s, once every watch has shown it
   * is live and the previous phase's records are all delivered.
   */
  run(rate: number, seconds: number, ingestion?: Ingestion): Promise<PhaseReport>;
  /** Ends the watches. */
  close(): Promise<void>;
}

/** One phase's bookkeeping. */
class Phase {
  /** Latency of each record (NaN until delivered). */
  readonly latency: Float64Array;
  /** 1 once a record is delivered or failed: each counts once, as the first of the two. */
  private readonly finished: Uint8Array;
  readonly late: number[] = [];
  readonly acks: number[] = [];
  /** From each record's due time. */
  readonly stages = new DeliveryStages();
  delivered = 0;
  failed = 0;
  firstError: string | undefined;
  private settle: (() => void) | undefined;
  /** Resolves once every record is delivered or failed. */
  readonly settled = new Promise<void>((resolve) => (this.settle = resolve));

  constructor(
    readonly id: number,
    readonly count: number,
    readonly start: number,
    readonly interval: number,
  ) {
    this.latency = new Float64Array(count).fill(Number.NaN);
    this.finished = new Uint8Array(count);
  }

  due(seq: number): number {
    return this.start + seq * this.interval;
  }

  deliver(seq: number, at: number, result: Result): void {
    if (seq >= this.count || this.finished[seq]) return;
    this.finished[seq] = 1;
    this.latency[seq] = at - this.due(seq);
    this.delivered++;
    this.stages.add(result, this.due(seq));
    this.check();
  }

  /** Whether record `seq` is neither delivered nor failed yet. */
  pending(seq: number): boolean {
    return !this.finished[seq];
  }

  fail(seq: number, error: unknown): void {
    if (seq >= this.count || this.finished[seq]) return;
    this.finished[seq] = 1;
    this.failed++;
    this.firstError ??= (error as Error).message;
    this.check();
  }

  private check(): void {
    if (this.delivered + this.failed >= this.count) this.settle?.();
  }
}

function apiKey(): Interceptor {
  return (next) => (request) => {
    request.header.set("x-api-key", BENCH_API_KEY);
    return next(request);
  };
}

function payload(phase: number, seq: number): Uint8Array {
  const raw = new Uint8Array(PAYLOAD_BYTES).fill(0x61);
  raw[0] = phase;
  new DataView(raw.buffer).setUint32(1, seq);
  return raw;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** Starts the streams (ids "e2e-0"...) on `server` and opens a watch on each. */
export async function openHarness(server: StreamgateServer): Promise<Harness> {
  const baseUrl = `http://127.0.0.1:${server.port}`;
  // SendData goes through the lean caller (a fraction of connect-node's CPU per
  // call, see lean-unary.ts), one HTTP/2 connection each; the watches and
  // StartStream use connect-node's gRPC transport, on a connection of their own.
  const senders = Array.from({ length: SEND_CONNECTIONS }, () =>
    leanCaller(baseUrl, "/streamgate.v1.StreamService/SendData", SendDataRequestSchema, { "x-api-key": BENCH_API_KEY }),
  );
  // SendDataStream's calls, one per phase of stream ingestion, go over connections of their own.
  const streamSenders = Array.from({ length: SEND_CONNECTIONS }, () =>
    leanCaller(baseUrl, "/streamgate.v1.StreamService/SendDataStream", SendDataStreamRequestSchema, {
      "x-api-key": BENCH_API_KEY,
    }),
  );
  const watcher = createClient(StreamService, createGrpcTransport({ baseUrl, interceptors: [apiKey()] }));
  const streams = Array.from({ length: STREAMS }, (_, i) => `e2e-${i}`);
  for (const streamId of streams) await watcher.startStream({ streamId });

  const abort = new AbortController();
  /** Per stream, the newest sync round whose probe its watch delivered. */
  const synced = new Map<string, number>();
  let round = 0;
  let wake: (() => void) | undefined;
  let phase: Phase | undefined;
  let nextPhaseId = PROBE + 1;
  let watchError: unknown;
  const unsynced = () => streams.filter((id) => (synced.get(id) ?? -1) < round);

  const receive = (result: Result, at: number) => {
    if (result.payload.case !== "raw" || result.payload.value.length < 5) return;
    const raw = result.payload.value;
    const id = raw[0]!;
    const seq = new DataView(raw.buffer, raw.byteOffset, raw.byteLength).getUint32(1);
    if (id === PROBE) {
      synced.set(result.streamId, Math.max(seq, synced.get(result.streamId) ?? -1));
      if (unsynced().length === 0) wake?.();
    } else if (phase && id === phase.id) {
      phase.deliver(seq, at, result);
    }
  };
  const watches = streams.map(async (streamId) => {
    try {
      for await (const response of watcher.watchResults(
        { streamId, startPosition: StartPosition.LATEST },
        { signal: abort.signal },
      )) {
        if (response.result) receive(response.result, performance.now());
      }
      if (!abort.signal.aborted) throw new Error(`e2e: the watch of ${streamId} ended`);
    } catch (error) {
      if (abort.signal.aborted) return;
      watchError ??= error;
      wake?.();
    }
  });

  /**
   * Sends a probe record to each stream and waits until every watch has
   * delivered it. A stream's results arrive in order, so this also waits out
   * whatever an earlier phase left in the pipeline; and since a watch from
   * LATEST misses records sent before it is registered (no event says when),
   * a stream whose probe does not arrive soon is probed again, less and less often.
   */
  const sync = async () => {
    round++;
    const deadline = performance.now() + SYNC_TIMEOUT_MS;
    for (let wait = 100; unsynced().length > 0; wait = Math.min(2 * wait, 2000)) {
      if (watchError) throw watchError;
      if (performance.now() > deadline) {
        throw new Error(
          `e2e: no probe result reached the watches of ${unsynced().join(", ")} in ${SYNC_TIMEOUT_MS} ms`,
        );
      }
      const payloadInit = { case: "raw" as const, value: payload(PROBE, round) };
      // A probe refused (an overloaded server's UNAVAILABLE) is simply sent again next time round.
      await Promise.all(
        unsynced().map((streamId) => senders[0]!.call({ streamId, payload: payloadInit }).catch(() => undefined)),
      );
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
    if (watchError) throw watchError;
  };

  return {
    async run(rate, seconds, ingestion = "unary") {
      await sync();
      const count = Math.max(1, Math.round(rate * seconds));
      const cpuBefore = {
        generator: process.cpuUsage(),
        server: await cpuSeconds(server.pid),
        wall: performance.now(),
      };
      // Stream ingestion: the calls are open before the first record is due.
      const calls =
        ingestion === "stream" ? streamSenders.map((sender) => sender.clientStream(SendDataStreamResponseSchema)) : [];
      const current = new Phase(nextPhaseId++, count, performance.now() + 5, 1000 / rate);
      if (current.id > 255) throw new Error("e2e: at most 255 phases per harness");
      phase = current;
      const send = (seq: number, due: number) => {
        const request = {
          streamId: streams[seq % STREAMS]!,
          payload: { case: "raw" as const, value: payload(current.id, seq) },
        };
        if (ingestion === "stream") {
          calls[seq % SEND_CONNECTIONS]!.write(request);
        } else {
          senders[seq % SEND_CONNECTIONS]!.call(request).then(
            () => current.acks.push(performance.now() - due),
            (error: unknown) => current.fail(seq, error),
          );
        }
      };
      // Open loop: each record goes out at its due time (or as soon after as this
      // process gets to it), whatever the earlier calls are doing.
      for (let seq = 0; seq < count; ) {
        const now = performance.now();
        for (; seq < count && current.due(seq) <= now; seq++) {
          current.late.push(now - current.due(seq));
          send(seq, current.due(seq));
        }
        if (seq < count) await sleep(current.due(seq) - performance.now());
      }
      // Call c of stream ingestion carried records c, c + SEND_CONNECTIONS, ...:
      // its k-th is record c + k × SEND_CONNECTIONS. A rejected record is a send
      // error; so are the undelivered records of a call that failed, did not
      // answer within the grace period, or rejected more than it listed.
      const unaccounted = new Map<number, unknown>(
        calls.map((_, c) => [c, new Error("e2e: SendDataStream did not answer within the grace period")]),
      );
      const ended = Promise.all(
        calls.map(async (call, c) => {
          try {
            const response = await call.end();
            for (const rejection of response.rejections) {
              current.fail(
                c + Number(rejection.index) * SEND_CONNECTIONS,
                new Error(`SendDataStream rejected: ${rejection.code} ${rejection.reason}`),
              );
            }
            if (response.rejected > BigInt(response.rejections.length))
              unaccounted.set(c, new Error(`SendDataStream rejected ${response.rejected} records`));
            else unaccounted.delete(c);
          } catch (error) {
            unaccounted.set(c, error);
          }
        }),
      );
      let timer: NodeJS.Timeout | undefined;
      const lastDue = current.due(count - 1);
      const graceOver = new Promise((resolve) => (timer = setTimeout(resolve, lastDue + GRACE_MS - performance.now())));
      await Promise.all([Promise.race([current.settled, graceOver]), Promise.race([ended, graceOver])]);
      clearTimeout(timer);
      for (const [c, error] of unaccounted) {
        for (let seq = c; seq < count; seq += SEND_CONNECTIONS) if (current.pending(seq)) current.fail(seq, error);
      }
      phase = undefined;
      const wall = (performance.now() - cpuBefore.wall) / 1000;
      const generator = process.cpuUsage(cpuBefore.generator);
      const serverCpu = (await cpuSeconds(server.pid)) - cpuBefore.server;
      if (watchError) throw watchError;
      const latencies = Array.from(current.latency).filter((value) => !Number.isNaN(value));
      return {
        count,
        offered: rate,
        seconds: (count * current.interval) / 1000,
        delivered: current.delivered,
        lost: Math.max(0, count - current.delivered - current.failed),
        sendErrors: current.failed,
        firstError: current.firstError,
        latencyMs: percentiles(latencies),
        ackP99: ingestion === "stream" ? undefined : p99(current.acks),
        lateP99: p99(current.late),
        dueToAcceptP99: Math.round(p99(current.stages.toAccepted)),
        acceptToProcessP99: p99(current.stages.acceptedToProcessed),
        processToWatcherP99: p99(current.stages.processedToRead),
        generatorCores: (generator.user + generator.system) / 1e6 / wall,
        serverCores: serverCpu / wall,
        streams: STREAMS,
        connections:
          ingestion === "stream"
            ? `${SEND_CONNECTIONS} for sends (one SendDataStream call each for the phase), 1 for watches`
            : `${SEND_CONNECTIONS} for sends, 1 for watches`,
      };
    },

    async close() {
      abort.abort();
      await Promise.all(watches);
      for (const sender of [...senders, ...streamSenders]) sender.close();
    },
  };
}
