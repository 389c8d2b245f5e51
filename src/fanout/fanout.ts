/**
 * The fanout: every instance reads the results topic and pushes each result to
 * the WatchResults calls watching its stream. A recent window per stream serves
 * new watchers from memory; older results are read back from the broker
 * (catch-up), then the watcher joins the live feed in the same turn of the event
 * loop it took the window's snapshot, so no result is missed or repeated.
 *
 * Memory is bounded: windows hold at most `window` results each and
 * `cacheResults` in all; each watcher buffers at most `watchBuffer` results, and
 * one that falls further behind is ended with RESOURCE_EXHAUSTED and the cursor
 * to resume from, never silently skipped.
 */

import {
  type Result,
  StartPosition,
  StreamState,
  type WatchResultsResponse,
} from "../../gen/streamgate/v1/stream_service_pb.js";
import type { Broker, RecordBatch, Subscription } from "../broker/broker.js";
import { invalidInput, streamNotFound, watcherQuotaReached } from "../common/domain-error.js";
import type { Logger } from "../observe/logger.js";
import { type RateLimitedLog, warnTo } from "../observe/rate-limited-log.js";
import type { WatchLink } from "../observe/trace-points.js";
import { traces } from "../observe/tracing.js";
import type { CelProgram } from "../processing/cel.js";
import type { StreamRegistry } from "../streams/registry.js";
import type { CheckedWatch } from "../streams/requests.js";
import { type StreamKey, streamKey, tenantOf } from "../streams/stream-key.js";
import { passesFilter, ResultEntry } from "./result-entry.js";
import { type StreamWindow, StreamWindows } from "./stream-window.js";
import { type Interruption, Watcher } from "./watcher.js";

/** Dependencies and limits of the fanout. */
export interface FanoutOptions {
  broker: Broker;
  resultsTopic: string;
  registry: StreamRegistry;
  logger: Logger;
  /** Results kept per stream. */
  window: number;
  /** Results kept in all windows together. */
  cacheResults: number;
  /** Results buffered per watcher. */
  watchBuffer: number;
  /** Called with each live result as it is delivered to a watcher (end-to-end latency). */
  onDeliver?: (result: Result) => void;
  /** Where the warn lines of unreadable results go: the app's rate-limited log; the logger when omitted. */
  failureLog?: RateLimitedLog;
  /** Open watchers one tenant may have on this instance (TENANT_MAX_WATCHERS); 0 or omitted: no quota. */
  maxWatchersPerTenant?: number;
  /** Told of each watch refused by that quota (streamgate_refusals_total). */
  onQuotaRefused?: () => void;
  /** Told of each watcher ended early, and why (streamgate_watchers_interrupted_total). */
  onInterrupted?: (reason: Interruption) => void;
}

const CATCH_UP_BATCH = 500;

/** Creates the fanout; call `start()` to follow the results topic. */
export function createFanout(options: FanoutOptions): Fanout {
  return new Fanout(options);
}

/** See the module comment. */
export class Fanout {
  private readonly windows: StreamWindows;
  /** Per partition, the next offset this fanout will read. */
  private readonly consumed: number[] = [];
  private readonly watchers = new Set<Watcher>();
  /** Open watchers per tenant, for TENANT_MAX_WATCHERS. */
  private readonly tenantWatchers = new Map<string, number>();
  private subscription: Subscription | undefined;
  private stopped = false;
  private stopping: Promise<void> | undefined;

  constructor(private readonly options: FanoutOptions) {
    this.windows = new StreamWindows(options.window, options.cacheResults);
    // A stream removed (deleted, or closed long enough ago): its watchers end NOT_FOUND, its window goes.
    options.registry.onRemoved((key) => this.removed(key));
  }

  /** Starts following the results topic from its current end. */
  async start(): Promise<void> {
    const { broker, resultsTopic } = this.options;
    const partitions = broker.partitionCount(resultsTopic);
    for (let partition = 0; partition < partitions; partition++) {
      this.consumed[partition] = (await broker.offsets(resultsTopic, partition)).high;
      this.windows.startAt(partition, this.consumed[partition]);
    }
    this.subscription = await broker.subscribe({
      topic: resultsTopic,
      from: "latest",
      startOffsets: [...this.consumed],
      eachBatch: async (batch) => this.accept(batch),
      onError: (error) => this.options.logger.error({ err: error }, "fanout failed to deliver results"),
    });
  }

  /** Ends every watcher with UNAVAILABLE and its resume cursor, then stops reading (once, however often called). */
  stop(): Promise<void> {
    this.stopping ??= this.stopOnce();
    return this.stopping;
  }

  private async stopOnce(): Promise<void> {
    this.stopped = true;
    for (const watcher of this.watchers) watcher.interrupt("shutdown");
    await this.subscription?.close();
  }

  /** How many WatchResults calls are open. */
  get watcherCount(): number {
    return this.watchers.size;
  }

  /**
   * The results of a stream, for a checked WatchResults request; refuses an
   * unknown stream (not_found) and a cursor of another stream's partition
   * before the first result is asked for, so a refusal fails the call instead
   * of ending an empty stream. `onInterrupt` is told at once when the watch
   * must end (fell behind, server stopping, stream removed), even while its
   * caller is not asking for results.
   */
  watch(
    tenant: string,
    streamId: string,
    request: CheckedWatch,
    signal: AbortSignal,
    onInterrupt?: () => void,
  ): AsyncIterable<WatchResultsResponse> {
    const key = streamKey(tenant, streamId);
    const entry = this.options.registry.get(key);
    if (!entry) throw streamNotFound(streamId);
    const partition = this.options.broker.partitionFor(this.options.resultsTopic, key);
    let start: number;
    if (request.after) {
      if (request.after.position.partition !== partition) throw invalidInput("after_cursor belongs to another stream");
      // Never before the stream began: results of a deleted stream of the same id are not its.
      start = Math.max(request.after.position.offset + 1, entry.resultsStart);
    } else if (request.startPosition === StartPosition.LATEST) {
      if (entry.stream.state === StreamState.CLOSED) return empty();
      start = this.consumed[partition]!;
    } else {
      start = entry.resultsStart;
    }
    const { filter } = request;
    const watcher = new Watcher(this.options.watchBuffer, request.after?.cursor ?? "", streamId, (reason) => {
      this.options.onInterrupted?.(reason);
      onInterrupt?.();
    });
    // While tracing is on, the call opening the watch (WatchResults, SSE, WebSocket): each delivery links to it.
    const link = traces?.watchLink();
    return this.stream(key, partition, start, entry.ingestStart, filter, watcher, signal, link);
  }

  /** Ends the watchers of a removed stream and drops its window. */
  private removed(key: StreamKey): void {
    const window = this.windows.clear(key);
    for (const watcher of window?.watchers ?? []) watcher.interrupt("removed");
  }

  private async *stream(
    key: StreamKey,
    partition: number,
    start: number,
    ingestStart: number,
    filter: CelProgram | undefined,
    watcher: Watcher,
    signal: AbortSignal,
    link: WatchLink | undefined,
  ): AsyncGenerator<WatchResultsResponse> {
    // Checked at the first step, where the watcher is counted: calls started
    // together take their steps one after another, so none slips past the quota.
    const tenant = tenantOf(key);
    const open = this.tenantWatchers.get(tenant) ?? 0;
    const max = this.options.maxWatchersPerTenant ?? 0;
    if (max > 0 && open >= max) {
      this.options.onQuotaRefused?.();
      throw watcherQuotaReached(max);
    }
    this.tenantWatchers.set(tenant, open + 1);
    this.watchers.add(watcher);
    // A call accepted just before the stop, whose first step runs after it.
    if (this.stopped) watcher.interrupt("shutdown");
    let window: StreamWindow | undefined;
    // The client going away frees the watcher at once, not when this generator
    // next runs: one suspended in `yield` while its client is not reading may
    // never be resumed (connect-node waits for the write's "drain", which a
    // closed HTTP/2 stream does not emit), and its finally would not run.
    const release = () => {
      window?.watchers.delete(watcher);
      // Released once, whether by the abort or the end.
      if (this.watchers.delete(watcher)) {
        const left = (this.tenantWatchers.get(tenant) ?? 1) - 1;
        if (left > 0) this.tenantWatchers.set(tenant, left);
        else this.tenantWatchers.delete(tenant);
      }
      watcher.drop();
    };
    signal.addEventListener("abort", release, { once: true });
    try {
      let next = start;
      // Catch up from the broker until the window covers the rest.
      for (;;) {
        window = this.windows.of(key, partition);
        if (next >= window.completeFrom) break;
        const boundary = window.completeFrom;
        const records = await this.options.broker.fetch(this.options.resultsTopic, partition, next, CATCH_UP_BATCH);
        if (signal.aborted || watcher.interruption) break;
        if (records.length === 0) {
          next = boundary;
          continue;
        }
        for (const record of records) {
          if (record.offset >= boundary) break;
          next = record.offset + 1;
          if (record.key !== key) continue;
          const entry = new ResultEntry(record);
          if (entry.sourceOffset < ingestStart) continue;
          if (entry.end) return;
          watcher.passed(entry);
          if (this.readable(entry) && passesFilter(filter, entry)) yield entry.response;
          if (signal.aborted || watcher.interruption) break;
        }
      }
      if (watcher.interruption) throw watcher.error();
      if (signal.aborted) return;
      // Same turn as the snapshot: join the live feed.
      // Removed while catching up: nothing more to join.
      if (!this.options.registry.get(key)) watcher.interrupt("removed");
      if (watcher.interruption) throw watcher.error();
      window = this.windows.of(key, partition);
      watcher.enqueue(window.entries.filter((entry) => entry.offset >= next));
      window.watchers.add(watcher);
      for (;;) {
        const entry = watcher.take();
        if (!entry) {
          if (watcher.interruption) throw watcher.error();
          await watcher.wait(signal);
          if (signal.aborted) return;
          continue;
        }
        // A deleted stream's of the same id (its end marker, processed after this stream began): not this one's.
        if (entry.sourceOffset < ingestStart) continue;
        if (entry.end) return;
        watcher.passed(entry);
        if (this.readable(entry) && passesFilter(filter, entry)) {
          // Live results only: a catch-up read of old results says nothing of latency (nor adds to old traces).
          this.options.onDeliver?.(entry.result);
          if (entry.trace !== undefined) traces?.delivered(entry.trace, link);
          yield entry.response;
        }
      }
    } finally {
      signal.removeEventListener("abort", release);
      release();
    }
  }

  /**
   * Whether a result can be sent. One that cannot be decoded (a foreign
   * producer wrote it to the results topic) is skipped, as a watcher's filter
   * skips a result, with one warn line (stream id and cursor, never the
   * payload): thrown, it would end every watch of the stream, and every
   * resume from before it, at that result.
   */
  private readable(entry: ResultEntry): boolean {
    if (entry.readable()) return true;
    if (entry.report()) {
      (this.options.failureLog ?? warnTo(this.options.logger))(
        { stream: entry.key, cursor: entry.cursor },
        "unreadable result skipped",
      );
    }
    return false;
  }

  /**
   * Offers a batch's results to the windows and their watchers. A batch may
   * hold more results of one stream than a watcher buffers (one Kafka fetch
   * brings up to a megabyte of a partition), and a watcher drains only
   * between turns of the event loop: offered all at once, they would end
   * even a watcher that keeps up. So every half a watcher buffer the offering
   * waits a turn; a watcher that does not drain still overflows.
   */
  private async accept(batch: RecordBatch): Promise<void> {
    const turn = Math.max(1, Math.floor(this.options.watchBuffer / 2));
    let offered = 0;
    for (const record of batch.records) {
      if (offered > 0 && offered % turn === 0) await new Promise((resolve) => setImmediate(resolve));
      offered++;
      this.consumed[batch.partition] = record.offset;
      const entry = new ResultEntry(record);
      // Undefined while tracing is off: then this is the only trace of tracing here.
      const tracing = traces;
      if (tracing !== undefined) entry.trace = tracing.arrived(record);
      const window = this.windows.append(record.key, batch.partition, entry);
      for (const watcher of window.watchers) watcher.push(entry);
      this.consumed[batch.partition] = record.offset + 1;
    }
    this.windows.evict();
  }
}

async function* empty(): AsyncGenerator<WatchResultsResponse> {}
