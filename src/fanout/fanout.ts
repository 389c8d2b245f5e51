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
import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  type Result,
  ResultSchema,
  StartPosition,
  StreamState,
  type WatchResultsResponse,
  WatchResultsResponseSchema,
} from "../../gen/streamgate/v1/stream_service_pb.js";
import type { Broker, RecordBatch, StoredRecord, Subscription } from "../broker/broker.js";
import type { Logger } from "../observe/logger.js";
import { type RateLimitedLog, warnTo } from "../observe/rate-limited-log.js";
import { CelCompiler, type CelProgram, type CelRecord, celRecordOf, passes } from "../processing/cel.js";
import {
  invalidArgument,
  streamNotFound,
  streamRemoved,
  watcherQuotaReached,
  watchInterrupted,
} from "../rpc/errors.js";
import { decodeCursor, encodeCursor } from "../streams/cursor.js";
import type { StreamRegistry } from "../streams/registry.js";
import { type StreamKey, streamKey, tenantOf } from "../streams/stream-key.js";
import { requireStreamId } from "../streams/validation.js";
import { type DecodedRecord, decodeRecord, HEADER } from "../topics/record-format.js";

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
  /** Compiles watcher filters within the CEL settings (default: the default settings). */
  cel?: CelCompiler;
  /** Where the warn lines of unreadable results go: the app's rate-limited log; the logger when omitted. */
  failureLog?: RateLimitedLog;
  /** Open watchers one tenant may have on this instance (TENANT_MAX_WATCHERS); 0 or omitted: no quota. */
  maxWatchersPerTenant?: number;
  /** Told of each watch refused by that quota (streamgate_refusals_total). */
  onQuotaRefused?: () => void;
}

/** What a WatchResults call asks for. */
export interface WatchRequest {
  streamId: string;
  afterCursor: string;
  startPosition: StartPosition;
  filter: string;
}

const decoder = new TextDecoder();
const CATCH_UP_BATCH = 500;
/** For a fanout given no CEL settings (tests). */
const defaultCompiler = new CelCompiler();

/** Creates the fanout; call `start()` to follow the results topic. */
export function createFanout(options: FanoutOptions): Fanout {
  return new Fanout(options);
}

/** See the module comment. */
export class Fanout {
  /** Windows in least-recently-updated order, for eviction. */
  private readonly windows = new Map<string, StreamWindow>();
  /** Per partition, the next offset this fanout will read. */
  private readonly consumed: number[] = [];
  /**
   * Per partition, the offset from which every result of a stream that has no
   * window has passed through this fanout: where it started reading, raised
   * past the entries of each window it dropped. A new window is complete from
   * there, so a new watcher of a young stream reads nothing back from the
   * broker (only other streams' results lie between).
   */
  private readonly unwindowedFrom: number[] = [];
  private readonly watchers = new Set<Watcher>();
  /** Open watchers per tenant, for TENANT_MAX_WATCHERS. */
  private readonly tenantWatchers = new Map<string, number>();
  private cached = 0;
  private subscription: Subscription | undefined;
  private stopped = false;

  constructor(private readonly options: FanoutOptions) {
    // A stream removed (deleted, or closed long enough ago): its watchers end NOT_FOUND, its window goes.
    options.registry.onRemoved((key) => this.removed(key));
  }

  /** Starts following the results topic from its current end. */
  async start(): Promise<void> {
    const { broker, resultsTopic } = this.options;
    const partitions = broker.partitionCount(resultsTopic);
    for (let partition = 0; partition < partitions; partition++) {
      this.consumed[partition] = (await broker.offsets(resultsTopic, partition)).high;
      this.unwindowedFrom[partition] = this.consumed[partition];
    }
    this.subscription = await broker.subscribe({
      topic: resultsTopic,
      from: "latest",
      startOffsets: [...this.consumed],
      eachBatch: async (batch) => this.accept(batch),
      onError: (error) => this.options.logger.error({ err: error }, "fanout failed to deliver results"),
    });
  }

  /** Ends every watcher with UNAVAILABLE and its resume cursor, then stops reading. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const watcher of this.watchers) watcher.interrupt("shutdown");
    await this.subscription?.close();
  }

  /** How many WatchResults calls are open. */
  get watcherCount(): number {
    return this.watchers.size;
  }

  /**
   * Checks a watch request (INVALID_ARGUMENT, NOT_FOUND) and returns the results
   * to stream. Checks run before the first result is asked for, so a bad
   * request fails the call instead of ending an empty stream.
   */
  watch(tenant: string, request: WatchRequest, signal: AbortSignal): AsyncIterable<WatchResultsResponse> {
    const streamId = requireStreamId(request.streamId);
    const filter =
      request.filter === "" ? undefined : (this.options.cel ?? defaultCompiler).compile(request.filter, "filter");
    const key = streamKey(tenant, streamId);
    const entry = this.options.registry.get(key);
    if (!entry) throw streamNotFound(streamId);
    const partition = this.options.broker.partitionFor(this.options.resultsTopic, key);
    let start: number;
    if (request.afterCursor !== "") {
      const cursor = decodeCursor(request.afterCursor, "results", "after_cursor");
      if (cursor.partition !== partition) throw invalidArgument("after_cursor belongs to another stream");
      // Never before the stream began: results of a deleted stream of the same id are not its.
      start = Math.max(cursor.offset + 1, entry.resultsStart);
    } else if (request.startPosition === StartPosition.LATEST) {
      if (entry.stream.state === StreamState.CLOSED) return empty();
      start = this.consumed[partition]!;
    } else {
      start = entry.resultsStart;
    }
    const watcher = new Watcher(this.options.watchBuffer, request.afterCursor, streamId);
    return this.stream(key, partition, start, entry.ingestStart, filter, watcher, signal);
  }

  /** Ends the watchers of a removed stream and drops its window. */
  private removed(key: StreamKey): void {
    const window = this.windows.get(key);
    if (!window) return;
    for (const watcher of window.watchers) watcher.interrupt("removed");
    // Emptied as eviction empties a window: complete again only from past what it held.
    const last = window.entries[window.entries.length - 1];
    if (last) window.completeFrom = last.offset + 1;
    this.cached -= window.entries.length;
    window.entries = [];
  }

  private async *stream(
    key: StreamKey,
    partition: number,
    start: number,
    ingestStart: number,
    filter: CelProgram | undefined,
    watcher: Watcher,
    signal: AbortSignal,
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
        window = this.window(key, partition);
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
          const entry = new Entry(record);
          if (entry.sourceOffset < ingestStart) continue;
          if (entry.end) return;
          watcher.passed(entry);
          if (this.readable(entry) && matches(filter, entry)) yield entry.response;
          if (signal.aborted || watcher.interruption) break;
        }
      }
      if (watcher.interruption) throw watcher.error();
      if (signal.aborted) return;
      // Same turn as the snapshot: join the live feed.
      // Removed while catching up: nothing more to join.
      if (!this.options.registry.get(key)) watcher.interrupt("removed");
      if (watcher.interruption) throw watcher.error();
      window = this.window(key, partition);
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
        if (this.readable(entry) && matches(filter, entry)) {
          // Live results only: a catch-up read of old results says nothing of latency.
          this.options.onDeliver?.(entry.result);
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
  private readable(entry: Entry): boolean {
    if (entry.readable()) return true;
    if (entry.report()) {
      (this.options.failureLog ?? warnTo(this.options.logger))(
        { stream: entry.key, cursor: entry.cursor },
        "unreadable result skipped",
      );
    }
    return false;
  }

  /** Applies a batch of results: windows first, then every watcher of each stream. */
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
      const window = this.window(record.key, batch.partition);
      const entry = new Entry(record);
      window.entries.push(entry);
      this.cached++;
      if (window.entries.length > this.options.window) {
        window.completeFrom = window.entries.shift()!.offset + 1;
        this.cached--;
      }
      for (const watcher of window.watchers) watcher.push(entry);
      this.consumed[batch.partition] = record.offset + 1;
    }
    this.evict();
  }

  /** The window of a stream, created empty (complete from what is read next) when missing. */
  private window(streamId: string, partition: number): StreamWindow {
    let window = this.windows.get(streamId);
    if (window) {
      // Re-inserting keeps the map in least-recently-used order.
      this.windows.delete(streamId);
    } else {
      window = { partition, entries: [], completeFrom: this.unwindowedFrom[partition]!, watchers: new Set() };
    }
    this.windows.set(streamId, window);
    return window;
  }

  /** Drops the least recently updated windows while the cache is over its bound. */
  private evict(): void {
    for (const [streamId, window] of this.windows) {
      if (this.cached <= this.options.cacheResults) return;
      this.cached -= window.entries.length;
      const last = window.entries[window.entries.length - 1];
      if (window.watchers.size > 0) {
        // Watchers hold the window object for the live feed; keep it, empty.
        if (last) window.completeFrom = last.offset + 1;
        window.entries = [];
      } else {
        this.windows.delete(streamId);
        // Its results up to here are no longer in memory: a later window starts after them.
        const through = last ? last.offset + 1 : window.completeFrom;
        this.unwindowedFrom[window.partition] = Math.max(this.unwindowedFrom[window.partition]!, through);
      }
    }
  }
}

/** A stream's recent results and its live watchers. */
interface StreamWindow {
  partition: number;
  entries: Entry[];
  /** Every result of the stream at or past this offset (and read so far) is in `entries`. */
  completeFrom: number;
  watchers: Set<Watcher>;
}

/** One result record, decoded lazily (most are never watched). */
class Entry {
  private cachedResponse: WatchResultsResponse | undefined;
  private cachedDecoded: DecodedRecord | undefined;
  private cachedJson: JsonValue | undefined;
  private cachedSourceOffset: number | undefined;
  /** Whether the result decodes: undefined until tried. */
  private decodes: boolean | undefined;
  private reported = false;
  readonly end: boolean;

  constructor(private readonly record: StoredRecord) {
    this.end = record.headers[HEADER.control] === "end";
  }

  /**
   * The ingest offset of the record this result came from (its source
   * cursor), or Infinity when it names none (a foreign producer's result):
   * results whose record came before the stream began are a deleted
   * stream's of the same id.
   */
  get sourceOffset(): number {
    if (this.cachedSourceOffset === undefined) {
      const source = this.record.headers[HEADER.sourceCursor];
      try {
        this.cachedSourceOffset =
          source === undefined ? Infinity : decodeCursor(source, "ingest", "source cursor").offset;
      } catch {
        this.cachedSourceOffset = Infinity;
      }
    }
    return this.cachedSourceOffset;
  }

  get offset(): number {
    return this.record.offset;
  }

  get key(): string {
    return this.record.key;
  }

  /** Whether the result decodes into a response (tried once, however many watchers see it). */
  readable(): boolean {
    if (this.decodes === undefined) {
      try {
        this.decodes = this.response !== undefined;
      } catch {
        this.decodes = false;
      }
    }
    return this.decodes;
  }

  /** True the first time only: an unreadable result is logged once, not once per watcher. */
  report(): boolean {
    const first = !this.reported;
    this.reported = true;
    return first;
  }

  get cursor(): string {
    return encodeCursor("results", this.record.partition, this.record.offset);
  }

  /** The result as WatchResults sends it: one message for every watcher of the stream, which connect passes on as it is. */
  get response(): WatchResultsResponse {
    return (this.cachedResponse ??= create(WatchResultsResponseSchema, {
      result: toResult(this.record, this.decoded(), this.json()),
    }));
  }

  get result(): Result {
    return this.response.result!;
  }

  /** The record's metadata, decoded once. */
  decoded(): DecodedRecord {
    return (this.cachedDecoded ??= decodeRecord(this.record));
  }

  /** The data as JSON, or null for raw results, parsed once however many watchers see it. */
  json(): JsonValue {
    if (this.cachedJson === undefined) {
      const { payload } = this.decoded();
      this.cachedJson = payload.kind === "json" ? (JSON.parse(decoder.decode(payload.bytes)) as JsonValue) : null;
    }
    return this.cachedJson;
  }

  celRecord(): CelRecord {
    return celRecordOf(this.decoded(), this.json());
  }
}

function toResult(record: StoredRecord, decoded: DecodedRecord, json: JsonValue): Result {
  return create(ResultSchema, {
    streamId: decoded.streamId,
    cursor: encodeCursor("results", record.partition, record.offset),
    eventId: decoded.eventId,
    payload:
      decoded.payload.kind === "json"
        ? { case: "data", value: fromJson(ValueSchema, json) }
        : { case: "raw", value: decoded.payload.bytes },
    headers: decoded.headers,
    sendTime: timestampFromMs(decoded.sendTime),
    processTime: timestampFromMs(Number(record.headers[HEADER.processTime] ?? record.timestamp)),
    sourceCursor: record.headers[HEADER.sourceCursor] ?? "",
  });
}

/**
 * A watcher's filter; a result the filter cannot evaluate is skipped, not
 * fatal, whatever the failure (a CEL error, its cost budget, an exception):
 * thrown, it would end the watch at that result, and every resume with it.
 */
function matches(filter: CelProgram | undefined, entry: Entry): boolean {
  if (!filter) return true;
  try {
    return passes(filter, entry.celRecord());
  } catch {
    return false;
  }
}

/** One WatchResults call's live buffer and resume position. */
class Watcher {
  queue: Entry[] = [];
  interruption: "overflow" | "shutdown" | "removed" | undefined;
  private wake: (() => void) | undefined;
  /** Room for the window's snapshot on top of the live buffer. */
  private snapshot = 0;

  constructor(
    private readonly limit: number,
    /** The cursor to resume from: the last result passed, else the request's own. */
    private cursor: string,
    /** The stream's id, as the client named it. */
    private readonly streamId: string,
  ) {}

  /** Records that the watcher has passed `entry` (delivered it or filtered it out). */
  passed(entry: Entry): void {
    this.cursor = entry.cursor;
  }

  /** Adds the window's snapshot, which is at most a window long and does not count as falling behind. */
  enqueue(entries: Entry[]): void {
    this.snapshot = entries.length;
    this.queue.push(...entries);
  }

  /** The next buffered result; taking a snapshot entry gives its room back. */
  take(): Entry | undefined {
    const entry = this.queue.shift();
    if (entry && this.snapshot > 0) this.snapshot--;
    return entry;
  }

  /** Adds a live result, or ends the watcher when it is too far behind. */
  push(entry: Entry): void {
    if (this.interruption) return;
    if (this.queue.length >= this.limit + this.snapshot) {
      this.interrupt("overflow");
      return;
    }
    this.queue.push(entry);
    this.notify();
  }

  /** Drops what the watcher buffered, for good: its client has gone, or its call ended. */
  drop(): void {
    this.queue = [];
    this.notify();
  }

  /** Ends the watcher at its next step; what it buffered is dropped, the cursor says where to resume. */
  interrupt(reason: "overflow" | "shutdown" | "removed"): void {
    this.interruption ??= reason;
    this.queue = [];
    this.notify();
  }

  error(): Error {
    if (this.interruption === "removed") return streamRemoved(this.streamId);
    return watchInterrupted(this.interruption!, this.cursor, this.limit);
  }

  /** Resolves on the next push, interruption or abort. */
  wait(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener("abort", done);
        this.wake = undefined;
        resolve();
      };
      this.wake = done;
      signal.addEventListener("abort", done, { once: true });
    });
  }

  private notify(): void {
    this.wake?.();
  }
}

async function* empty(): AsyncGenerator<WatchResultsResponse> {}
