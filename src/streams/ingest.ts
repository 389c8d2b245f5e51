/**
 * The send path shared by SendData and SendDataStream: store a checked record
 * on the ingest topic keyed by its stream key (`<tenant>/<stream id>`), and
 * answer with its cursor only once the broker has it. Repeated event ids are
 * answered with the first record's cursor and store nothing (each tenant's
 * ids are remembered apart: src/streams/dedup.ts).
 */
import { StreamState } from "../../gen/streamgate/v1/stream_service_pb.js";
import type { Broker, ProduceRecord, RecordPosition } from "../broker/broker.js";
import { type CoalescedProduce, coalesceProduces } from "../broker/coalescer.js";
import { streamClosed, streamNotFound } from "../common/domain-error.js";
import { traces } from "../observe/tracing.js";
import { controlHeaders, dataHeaders } from "../topics/record-format.js";
import { encodeCursor } from "./cursor.js";
import { dedupScope, TenantDedup } from "./dedup.js";
import type { StreamRegistry } from "./registry.js";
import type { CheckedSend } from "./requests.js";
import type { StreamCounters } from "./stream-counters.js";
import { type StreamKey, splitStreamKey, streamKey } from "./stream-key.js";

/** The answer to a send. */
export interface SendResult {
  cursor: string;
  duplicate: boolean;
}

/** Dependencies of the send path. */
export interface IngestOptions {
  broker: Broker;
  ingestTopic: string;
  registry: StreamRegistry;
  counters: StreamCounters;
  /** Event ids remembered for deduplication at send time, per tenant. */
  dedupWindow: number;
}

/** See the module comment. */
export class Ingest {
  /** Event id → the first send's cursor (a promise while it is being stored). */
  private readonly seen: TenantDedup<Promise<string>>;
  /** Sends being stored, per stream, so CloseStream can wait for them. */
  private readonly inFlight = new Map<string, Set<Promise<unknown>>>();

  /** Coalesced writes to the ingest topic (see {@link send}). */
  private readonly produceCoalesced: CoalescedProduce;

  constructor(private readonly options: IngestOptions) {
    this.seen = new TenantDedup(options.dedupWindow);
    this.produceCoalesced = coalesceProduces(options.broker, options.ingestTopic);
  }

  /**
   * Stores one record. Everything up to the broker call runs synchronously, so
   * calls made one after another are stored in call order.
   *
   * With `coalesce` (a client stream's messages), the record goes to the
   * broker in one call with the other coalesced records sent in the same run
   * of code (broker/coalescer.ts), still in order among them; a call without
   * `coalesce` made in that run reaches the broker before them.
   */
  send(tenant: string, streamId: string, request: CheckedSend, coalesce = false): Promise<SendResult> {
    const { registry, counters } = this.options;
    const key = streamKey(tenant, streamId);
    const entry = registry.get(key);
    if (!entry) throw streamNotFound(streamId);
    if (entry.stream.state !== StreamState.OPEN) throw streamClosed(streamId);

    const { eventId } = request;
    const scope = eventId === "" ? undefined : dedupScope(key, entry);
    const first = scope === undefined ? undefined : this.seen.get(scope, eventId);
    if (first) {
      counters.add(key, "duplicates");
      return first.then((cursor) => ({ cursor, duplicate: true }));
    }
    const record: ProduceRecord = {
      key,
      value: request.payload.bytes,
      headers: dataHeaders(request.payload.kind, request.headers, eventId, Date.now()),
    };
    // Undefined while tracing is off, and then nothing below does any tracing work. On, the record's
    // producer span (a child of the call's) writes its context into the record's headers.
    const span = traces?.startSend(this.options.ingestTopic, tenant, streamId, record.headers);
    const cursorOf =
      span === undefined
        ? toCursor
        : (position: RecordPosition) => {
            span.stored(position);
            return toCursor(position);
          };
    const stored = this.track(
      key,
      coalesce
        ? this.produceCoalesced(record).then(cursorOf)
        : this.options.broker.produce(this.options.ingestTopic, [record]).then(([position]) => cursorOf(position!)),
    );
    if (span !== undefined) stored.catch(span.failed);
    if (scope !== undefined) {
      this.seen.set(scope, eventId, stored);
      // A failed write must not make a retry look like a duplicate.
      stored.catch(() => this.seen.delete(scope, eventId));
    }
    return stored.then((cursor) => {
      counters.add(key, "accepted");
      return { cursor, duplicate: false };
    });
  }

  /** Counts a record refused by its checks as its stream's (GetStream's `rejected`), if the stream exists. */
  countRejected(tenant: string, streamId: string): void {
    const key = streamKey(tenant, streamId);
    if (this.options.registry.get(key)) this.options.counters.add(key, "rejected");
  }

  /**
   * Appends the close marker after every send already under way for the
   * stream, so that the processor sees it after the stream's last record.
   */
  async appendCloseMarker(key: StreamKey): Promise<void> {
    await this.drain(key);
    const headers = controlHeaders("close", Date.now());
    // Traced like a record: the close's way to the watchers' end is part of the CloseStream call's trace.
    const stream = splitStreamKey(key);
    const span =
      stream === undefined
        ? undefined
        : traces?.startSend(this.options.ingestTopic, stream.tenant, stream.streamId, headers);
    try {
      const [position] = await this.options.broker.produce(this.options.ingestTopic, [
        { key, value: new Uint8Array(0), headers },
      ]);
      span?.stored(position!);
    } catch (error) {
      span?.failed(error);
      throw error;
    }
  }

  /** Resolves when every send under way (for one stream, or all) has settled. */
  async drain(key?: StreamKey): Promise<void> {
    const sets = key === undefined ? [...this.inFlight.values()] : [this.inFlight.get(key)];
    await Promise.allSettled(sets.flatMap((set) => (set ? [...set] : [])));
  }

  private track<T>(key: StreamKey, promise: Promise<T>): Promise<T> {
    let set = this.inFlight.get(key);
    if (!set) this.inFlight.set(key, (set = new Set()));
    set.add(promise);
    const forget = () => {
      set.delete(promise);
      if (set.size === 0) this.inFlight.delete(key);
    };
    promise.then(forget, forget);
    return promise;
  }
}

/** The SendData cursor of an ingest record stored at `position`. */
function toCursor({ partition, offset }: RecordPosition): string {
  return encodeCursor("ingest", partition, offset);
}
