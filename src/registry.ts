/**
 * The stream registry: every stream's current state, kept as a compacted topic
 * (one record per stream id) and materialised in memory by every instance, so a
 * stream started on one instance is known to all with no extra database.
 */
import { create, equals, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  ProcessingSchema,
  StreamSchema,
  StreamState,
  type Processing,
  type Stream,
} from "../gen/streamgate/v1/stream_service_pb.js";
import type { Broker, StoredRecord, Subscription } from "./broker/broker.js";
import { streamExists, streamNotFound } from "./errors.js";
import type { Logger } from "./logger.js";

/** A registry entry: the public Stream plus where its results begin. */
export interface StreamEntry {
  stream: Stream;
  /** The results-partition offset when the stream was created: EARLIEST watches start here. */
  resultsStart: number;
  /** The registry offset this state came from, so older records never overwrite newer ones. */
  version: number;
}

/** What StartStream asks for. */
export interface StreamSpec {
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
  logger: Logger;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Creates the registry; call `start()` before use. */
export function createRegistry(options: RegistryOptions): StreamRegistry {
  return new StreamRegistry(options);
}

/** See the module comment. */
export class StreamRegistry {
  private readonly entries = new Map<string, StreamEntry>();
  private readonly creating = new Map<string, Promise<{ entry: StreamEntry; created: boolean }>>();
  private subscription: Subscription | undefined;
  /** Callers waiting for a stream this instance has not seen yet. */
  private readonly waiting = new Map<string, Array<() => void>>();
  /** Results partitions' high watermarks being read, shared by the StartStream calls made meanwhile. */
  private readonly resultsHigh = new Map<number, Promise<number>>();

  constructor(private readonly options: RegistryOptions) {}

  /** Reads the registry topic from the start and resolves once caught up with it. */
  async start(): Promise<void> {
    const { broker, topic } = this.options;
    const { high } = await broker.offsets(topic, 0);
    let caughtUp!: () => void;
    const ready = new Promise<void>((resolve) => (caughtUp = resolve));
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
  }

  /** Stops following the registry topic. */
  async stop(): Promise<void> {
    await this.subscription?.close();
  }

  /** The entry of a stream, if it exists. */
  get(streamId: string): StreamEntry | undefined {
    return this.entries.get(streamId);
  }

  /**
   * Resolves once the stream is known here, or after `timeoutMs` (a stream
   * started on another instance arrives through the registry topic).
   */
  whenKnown(streamId: string, timeoutMs = 5000): Promise<void> {
    if (this.entries.has(streamId)) return Promise.resolve();
    return new Promise((resolve) => {
      let list = this.waiting.get(streamId);
      if (!list) this.waiting.set(streamId, (list = []));
      const waiters = list;
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(done), 1);
        if (waiters.length === 0) this.waiting.delete(streamId);
        resolve();
      }, timeoutMs);
      waiters.push(done);
    });
  }

  /** How many streams exist, open or closed. */
  get size(): number {
    return this.entries.size;
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
    const existing = this.entries.get(spec.streamId);
    if (existing) return { entry: sameSpec(existing, spec), created: false };
    const pending = this.creating.get(spec.streamId);
    if (pending) {
      const { entry } = await pending;
      return { entry: sameSpec(entry, spec), created: false };
    }
    const creation = this.write(spec);
    this.creating.set(spec.streamId, creation);
    try {
      return await creation;
    } finally {
      this.creating.delete(spec.streamId);
    }
  }

  /** Marks a stream closed (idempotent); NOT_FOUND for an unknown stream. */
  async close(streamId: string): Promise<StreamEntry> {
    const entry = this.entries.get(streamId);
    if (!entry) throw streamNotFound(streamId);
    if (entry.stream.state === StreamState.CLOSED) return entry;
    const stream = create(StreamSchema, { ...entry.stream, state: StreamState.CLOSED, closeTime: timestampFromMs(Date.now()) });
    return this.put({ ...entry, stream });
  }

  private async write(spec: StreamSpec): Promise<{ entry: StreamEntry; created: boolean }> {
    const { broker, resultsTopic } = this.options;
    const partition = broker.partitionFor(resultsTopic, spec.streamId);
    // Where the stream's results begin needs only a lower bound: a new stream has
    // no result before it exists, so any high watermark read before it is written
    // will do, and concurrent StartStream calls share one read (on Kafka an admin
    // request each, which limited StartStream to about half the embedded rate).
    let reading = this.resultsHigh.get(partition);
    if (!reading) {
      reading = broker.offsets(resultsTopic, partition).then(({ high }) => high);
      this.resultsHigh.set(partition, reading);
      const forget = () => this.resultsHigh.delete(partition);
      reading.then(forget, forget);
    }
    const high = await reading;
    const stream = create(StreamSchema, {
      streamId: spec.streamId,
      state: StreamState.OPEN,
      labels: spec.labels,
      processing: spec.processing,
      createTime: timestampFromMs(Date.now()),
    });
    const entry = await this.put({ stream, resultsStart: high, version: -1 });
    return { entry, created: true };
  }

  /** Stores an entry and applies it here at once, so this instance reads its own writes. */
  private async put(entry: StreamEntry): Promise<StreamEntry> {
    const value: JsonValue = { stream: toJson(StreamSchema, entry.stream), resultsStart: entry.resultsStart };
    const [position] = await this.options.broker.produce(this.options.topic, [
      { key: entry.stream.streamId, value: encoder.encode(JSON.stringify(value)), headers: {} },
    ]);
    const stored = { ...entry, version: position!.offset };
    this.install(stored);
    return this.entries.get(entry.stream.streamId)!;
  }

  private apply(record: StoredRecord): void {
    try {
      const value = JSON.parse(decoder.decode(record.value)) as { stream: JsonValue; resultsStart: number };
      // An offset that is not one would fail every EARLIEST watch of the stream later.
      if (!Number.isSafeInteger(value.resultsStart) || value.resultsStart < 0) throw new Error("resultsStart is not an offset");
      this.install({
        stream: fromJson(StreamSchema, value.stream),
        resultsStart: value.resultsStart,
        version: record.offset,
      });
    } catch (error) {
      this.options.logger.warn({ err: error, key: record.key, offset: record.offset }, "unreadable registry record skipped");
    }
  }

  private install(entry: StreamEntry): void {
    const current = this.entries.get(entry.stream.streamId);
    if (!current || current.version < entry.version) this.entries.set(entry.stream.streamId, entry);
    const waiting = this.waiting.get(entry.stream.streamId);
    if (waiting) {
      this.waiting.delete(entry.stream.streamId);
      for (const wake of waiting) wake();
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
