/**
 * The stream registry: every stream's current state, kept as a compacted topic
 * (one record per stream, keyed `<tenant>/<stream id>`; a deleted stream's is a
 * tombstone) and materialised in memory by every instance, so a stream started
 * on one instance is known to all with no extra database.
 *
 * Per tenant it enforces the stream quota (TENANT_MAX_STREAMS) and lists the
 * tenant's streams; closed streams are removed from memory
 * CLOSED_STREAM_RETENTION_MS after their close, on every instance alike (the
 * close time is stored). Records stored before tenants existed (keys without
 * a tenant) are not served: they are counted and skipped.
 */
import { create, equals, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import {
  type Processing,
  ProcessingSchema,
  type Stream,
  StreamSchema,
  StreamState,
} from "../../gen/streamgate/v1/stream_service_pb.js";
import type { Broker, StoredRecord, Subscription } from "../broker/broker.js";
import { streamExists, streamNotFound, streamQuotaReached } from "../common/domain-error.js";
import { Lru } from "../common/lru.js";
import type { Logger } from "../observe/logger.js";
import { type StreamKey, splitStreamKey, streamIdOf, streamKey } from "./stream-key.js";

/** A registry entry: the public Stream (its id without the tenant), its tenant and key, and where its results begin. */
export interface StreamEntry {
  key: StreamKey;
  tenant: string;
  stream: Stream;
  /** The results-partition offset when the stream was created: EARLIEST watches start here. */
  resultsStart: number;
  /**
   * The ingest-partition offset when the stream was created: records before it
   * are a deleted stream's of the same id (its last records, its close marker),
   * which the processor must not make results of this one. 0 for entries
   * stored before it was recorded.
   */
  ingestStart: number;
  /** The registry offset this state came from, so older records never overwrite newer ones. */
  version: number;
}

/** What StartStream asks for. */
export interface StreamSpec {
  tenant: string;
  streamId: string;
  labels: Record<string, string>;
  processing: Processing | undefined;
}

/** Dependencies of the registry. */
export interface RegistryOptions {
  broker: Broker;
  /** The compacted registry topic. */
  topic: string;
  /** The results topic, to record where a new stream's results begin. */
  resultsTopic: string;
  /** The ingest topic, to record where a new stream's records begin (ingestStart 0 without it). */
  ingestTopic?: string;
  logger: Logger;
  /** Streams a tenant may have, open or closed (TENANT_MAX_STREAMS); 0: no quota. */
  maxStreamsPerTenant?: number;
  /** How long a closed stream stays (CLOSED_STREAM_RETENTION_MS); 0: for ever. */
  closedRetentionMs?: number;
  /** Told of each StartStream refused by the quota (streamgate_refusals_total). */
  onQuotaRefused?: () => void;
}

/** Which streams ListStreams asks for, and from where. */
export interface ListQuery {
  /** Only streams in this state; undefined: any. */
  state: StreamState | undefined;
  /** Only streams with every one of these labels. */
  labels: Record<string, string>;
  /** Only stream ids after this one (the previous page's last). */
  after: string;
  /** At most this many. */
  limit: number;
}

/** Deleted streams remembered, so the processor skips their last records at once rather than wait for them to be known. */
const DELETED_REMEMBERED = 100_000;
/** Closed streams are looked for expiry at most this often. */
const SWEEP_INTERVAL_MS = 60_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Creates the registry; call `start()` before use. */
export function createRegistry(options: RegistryOptions): StreamRegistry {
  return new StreamRegistry(options);
}

/** See the module comment. */
export class StreamRegistry {
  private readonly entries = new Map<StreamKey, StreamEntry>();
  /** Per tenant, its streams by id: for the quota and ListStreams. */
  private readonly tenants = new Map<string, Map<string, StreamEntry>>();
  private readonly creating = new Map<StreamKey, Promise<{ entry: StreamEntry; created: boolean }>>();
  /** Per tenant, its StartStream writes under way (they count against the quota). */
  private readonly creatingCount = new Map<string, number>();
  /** Recently deleted streams, by key: the registry offset of the deletion. */
  private readonly deletions = new Lru<StreamKey, number>(DELETED_REMEMBERED);
  private readonly removedListeners: Array<(key: StreamKey) => void> = [];
  /** Registry records skipped because their key has no tenant (stored before tenants existed). */
  private untenanted = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private subscription: Subscription | undefined;
  /** Callers waiting for a stream this instance has not seen yet. */
  private readonly waiting = new Map<string, Array<() => void>>();
  /** Results partitions' high watermarks being read, shared by the StartStream calls made meanwhile. */
  /** High watermarks being read, by topic and partition: concurrent StartStream calls share one read. */
  private readonly highs = new Map<string, Promise<number>>();

  constructor(private readonly options: RegistryOptions) {}

  /** Reads the registry topic from the start and resolves once caught up with it. */
  async start(): Promise<void> {
    const { broker, topic } = this.options;
    const { high } = await broker.offsets(topic, 0);
    const { promise: ready, resolve: caughtUp } = Promise.withResolvers<void>();
    if (high === 0) caughtUp();
    this.subscription = await broker.subscribe({
      topic,
      from: "earliest",
      eachBatch: async (batch) => {
        for (const record of batch.records) this.apply(record);
        if (batch.records[batch.records.length - 1]!.offset + 1 >= high) caughtUp();
      },
      onError: (error) => this.options.logger.error({ err: error }, "registry update failed"),
    });
    await ready;
    if (this.untenanted > 0) {
      this.options.logger.warn(
        { records: this.untenanted },
        'registry records without a tenant (stored before tenants existed) are not served; see README "Tenants"',
      );
    }
    const retention = this.options.closedRetentionMs ?? 0;
    if (retention > 0) {
      this.sweep();
      this.sweeper = setInterval(() => this.sweep(), Math.min(retention, SWEEP_INTERVAL_MS)).unref();
    }
  }

  /** Stops following the registry topic. */
  async stop(): Promise<void> {
    clearInterval(this.sweeper);
    await this.subscription?.close();
  }

  /** The entry of a stream, if it exists. */
  get(key: StreamKey): StreamEntry | undefined {
    return this.entries.get(key);
  }

  /** Whether the stream was deleted and not started again (as far as this instance remembers: the last {@link DELETED_REMEMBERED}). */
  wasDeleted(key: StreamKey): boolean {
    return !this.entries.has(key) && this.deletions.has(key);
  }

  /** Calls `listener` with the key of each stream removed from memory (deleted, or closed long enough ago). */
  onRemoved(listener: (key: StreamKey) => void): void {
    this.removedListeners.push(listener);
  }

  /** How many streams `tenant` has, open or closed. */
  countOf(tenant: string): number {
    return this.tenants.get(tenant)?.size ?? 0;
  }

  /** A page of `tenant`'s streams, by stream id, as `query` asks. */
  list(tenant: string, query: ListQuery): StreamEntry[] {
    const streams = this.tenants.get(tenant);
    if (!streams) return [];
    const ids = [...streams.keys()].filter((id) => id > query.after).sort();
    const page: StreamEntry[] = [];
    const labels = Object.entries(query.labels);
    for (const id of ids) {
      const entry = streams.get(id)!;
      if (query.state !== undefined && entry.stream.state !== query.state) continue;
      if (!labels.every(([key, value]) => entry.stream.labels[key] === value)) continue;
      page.push(entry);
      if (page.length === query.limit) break;
    }
    return page;
  }

  /**
   * Resolves once the stream is known here, or after `timeoutMs` (a stream
   * started on another instance arrives through the registry topic).
   */
  whenKnown(key: StreamKey, timeoutMs = 5000): Promise<void> {
    // A key without a tenant never will be; a deleted stream's records are skipped.
    if (this.entries.has(key) || this.deletions.has(key) || !splitStreamKey(key)) return Promise.resolve();
    return new Promise((resolve) => {
      let list = this.waiting.get(key);
      if (!list) this.waiting.set(key, (list = []));
      const waiters = list;
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(done), 1);
        if (waiters.length === 0) this.waiting.delete(key);
        resolve();
      }, timeoutMs);
      waiters.push(done);
    });
  }

  /** How many streams are open (counted when asked: for the metrics scrape, not a hot path). */
  get openCount(): number {
    let open = 0;
    for (const entry of this.entries.values()) if (entry.stream.state === StreamState.OPEN) open++;
    return open;
  }

  /**
   * Creates a stream, or returns the existing one when it has the same labels
   * and processing (ALREADY_EXISTS when they differ). Concurrent calls for one id
   * share one write.
   */
  async create(spec: StreamSpec): Promise<{ entry: StreamEntry; created: boolean }> {
    const key = streamKey(spec.tenant, spec.streamId);
    const existing = this.entries.get(key);
    if (existing) return { entry: sameSpec(existing, spec), created: false };
    const pending = this.creating.get(key);
    if (pending) {
      const { entry } = await pending;
      return { entry: sameSpec(entry, spec), created: false };
    }
    // Checked against the streams this instance knows and the starts under way
    // here: starts made at once on several instances may pass it together.
    const max = this.options.maxStreamsPerTenant ?? 0;
    const underWay = this.creatingCount.get(spec.tenant) ?? 0;
    if (max > 0 && this.countOf(spec.tenant) + underWay >= max) {
      this.options.onQuotaRefused?.();
      throw streamQuotaReached(max);
    }
    const creation = this.write(key, spec);
    this.creating.set(key, creation);
    this.creatingCount.set(spec.tenant, underWay + 1);
    try {
      return await creation;
    } finally {
      this.creating.delete(key);
      const left = (this.creatingCount.get(spec.tenant) ?? 1) - 1;
      if (left > 0) this.creatingCount.set(spec.tenant, left);
      else this.creatingCount.delete(spec.tenant);
    }
  }

  /** Marks a stream closed (idempotent); NOT_FOUND for an unknown stream. */
  async close(key: StreamKey): Promise<StreamEntry> {
    const entry = this.entries.get(key);
    if (!entry) throw streamNotFound(streamIdOf(key));
    if (entry.stream.state === StreamState.CLOSED) return entry;
    const stream = create(StreamSchema, {
      ...entry.stream,
      state: StreamState.CLOSED,
      closeTime: timestampFromMs(Date.now()),
    });
    return this.put({ ...entry, stream });
  }

  /**
   * Deletes a stream: a tombstone on the registry topic (compaction removes
   * its registry record; its records age out with the topics' retention), and
   * the stream is gone from this instance's memory at once, from the others'
   * as the tombstone reaches them.
   */
  async delete(key: StreamKey): Promise<void> {
    const entry = this.entries.get(key);
    if (!entry) throw streamNotFound(streamIdOf(key));
    const [position] = await this.options.broker.produce(this.options.topic, [
      { key, value: new Uint8Array(0), headers: {}, tombstone: true },
    ]);
    this.remove(key, position!.offset);
  }

  private async write(key: StreamKey, spec: StreamSpec): Promise<{ entry: StreamEntry; created: boolean }> {
    const { resultsTopic, ingestTopic } = this.options;
    // Where the stream's results and records begin needs only a lower bound: a
    // new stream has none before it exists, so any high watermark read before
    // it is written will do.
    const [resultsStart, ingestStart] = await Promise.all([
      this.highOf(resultsTopic, key),
      ingestTopic === undefined ? 0 : this.highOf(ingestTopic, key),
    ]);
    const stream = create(StreamSchema, {
      streamId: spec.streamId,
      state: StreamState.OPEN,
      labels: spec.labels,
      processing: spec.processing,
      createTime: timestampFromMs(Date.now()),
    });
    const entry = await this.put({ key, tenant: spec.tenant, stream, resultsStart, ingestStart, version: -1 });
    return { entry, created: true };
  }

  /**
   * The high watermark of `key`'s partition of `topic`. Concurrent StartStream
   * calls share one read (on Kafka an admin request each, which limited
   * StartStream to about half the embedded rate).
   */
  private highOf(topic: string, key: StreamKey): Promise<number> {
    const partition = this.options.broker.partitionFor(topic, key);
    const slot = `${topic}/${partition}`;
    let reading = this.highs.get(slot);
    if (!reading) {
      reading = this.options.broker.offsets(topic, partition).then(({ high }) => high);
      this.highs.set(slot, reading);
      const forget = () => this.highs.delete(slot);
      reading.then(forget, forget);
    }
    return reading;
  }

  /** Stores an entry and applies it here at once, so this instance reads its own writes. */
  private async put(entry: StreamEntry): Promise<StreamEntry> {
    const value: JsonValue = {
      stream: toJson(StreamSchema, entry.stream),
      resultsStart: entry.resultsStart,
      ingestStart: entry.ingestStart,
    };
    const [position] = await this.options.broker.produce(this.options.topic, [
      { key: entry.key, value: encoder.encode(JSON.stringify(value)), headers: {} },
    ]);
    const stored = { ...entry, version: position!.offset };
    this.install(stored);
    // Deleted meanwhile (another instance's DeleteStream read first): the stream is gone.
    const installed = this.entries.get(entry.key);
    if (!installed) throw streamNotFound(entry.stream.streamId);
    return installed;
  }

  private apply(record: StoredRecord): void {
    const owner = splitStreamKey(record.key);
    if (!owner) {
      this.untenanted++;
      return;
    }
    if (record.value.byteLength === 0) {
      this.remove(record.key, record.offset);
      return;
    }
    try {
      const value = JSON.parse(decoder.decode(record.value)) as {
        stream: JsonValue;
        resultsStart: number;
        ingestStart?: number;
      };
      // An offset that is not one would fail every EARLIEST watch of the stream later.
      if (!Number.isSafeInteger(value.resultsStart) || value.resultsStart < 0)
        throw new Error("resultsStart is not an offset");
      const ingestStart = value.ingestStart ?? 0;
      if (!Number.isSafeInteger(ingestStart) || ingestStart < 0) throw new Error("ingestStart is not an offset");
      const stream = fromJson(StreamSchema, value.stream);
      // The key says whose stream it is; the id stored with it must agree.
      if (stream.streamId !== owner.streamId) throw new Error("the stream id does not match the record's key");
      this.install({
        key: record.key,
        tenant: owner.tenant,
        stream,
        resultsStart: value.resultsStart,
        ingestStart,
        version: record.offset,
      });
    } catch (error) {
      this.options.logger.warn(
        { err: error, key: record.key, offset: record.offset },
        "unreadable registry record skipped",
      );
    }
  }

  private install(entry: StreamEntry): void {
    const current = this.entries.get(entry.key);
    // A record older than the stream's deletion (read late) must not bring it back.
    if ((!current && !this.deletedAfter(entry.key, entry.version)) || (current && current.version < entry.version)) {
      this.entries.set(entry.key, entry);
      let streams = this.tenants.get(entry.tenant);
      if (!streams) this.tenants.set(entry.tenant, (streams = new Map()));
      streams.set(entry.stream.streamId, entry);
    }
    const waiting = this.waiting.get(entry.key);
    if (waiting) {
      this.waiting.delete(entry.key);
      for (const wake of waiting) wake();
    }
  }

  private deletedAfter(key: StreamKey, version: number): boolean {
    const at = this.deletions.get(key);
    return at !== undefined && at > version;
  }

  /** Removes a stream from memory: deleted at registry offset `version` (-1: expired, nothing stored). */
  private remove(key: StreamKey, version: number): void {
    const current = this.entries.get(key);
    if (version >= 0) this.deletions.set(key, version);
    if (current && (version < 0 || current.version < version)) {
      this.entries.delete(key);
      const streams = this.tenants.get(current.tenant);
      streams?.delete(current.stream.streamId);
      if (streams?.size === 0) this.tenants.delete(current.tenant);
      for (const listener of this.removedListeners) listener(key);
    }
    const waiting = this.waiting.get(key);
    if (waiting) {
      this.waiting.delete(key);
      for (const wake of waiting) wake();
    }
  }

  /** Removes the streams closed more than CLOSED_STREAM_RETENTION_MS ago. */
  private sweep(): void {
    const cutoff = Date.now() - (this.options.closedRetentionMs ?? 0);
    for (const [key, entry] of this.entries) {
      const closed = entry.stream.closeTime;
      if (entry.stream.state === StreamState.CLOSED && closed && timestampMs(closed) <= cutoff) this.remove(key, -1);
    }
  }
}

/** Returns `entry` when it matches what StartStream asked for; ALREADY_EXISTS otherwise. */
function sameSpec(entry: StreamEntry, spec: StreamSpec): StreamEntry {
  const { stream } = entry;
  const processing = spec.processing ?? create(ProcessingSchema);
  const labelsMatch =
    Object.keys(stream.labels).length === Object.keys(spec.labels).length &&
    Object.entries(spec.labels).every(([key, value]) => stream.labels[key] === value);
  if (!labelsMatch || !equals(ProcessingSchema, stream.processing ?? create(ProcessingSchema), processing)) {
    throw streamExists(spec.streamId);
  }
  return entry;
}
