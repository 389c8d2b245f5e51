/**
 * The send path shared by SendData and SendDataStream: check the record, store
 * it on the ingest topic keyed by stream id, and answer with its cursor only
 * once the broker has it. Repeated event ids are answered with the first
 * record's cursor and store nothing.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { StreamState } from "../gen/streamgate/v1/stream_service_pb.js";
import type { Broker, ProduceRecord, RecordPosition } from "./broker/broker.js";
import { coalesceProduces, type CoalescedProduce } from "./broker/coalescer.js";
import { encodeCursor } from "./cursor.js";
import { streamClosed, streamNotFound } from "./errors.js";
import { Lru, eventKey } from "./lru.js";
import { dataHeaders, controlHeaders } from "./records.js";
import type { StreamRegistry } from "./registry.js";
import type { StreamCounters } from "./stream-counters.js";
import { checkEventId, checkHeaders, encodePayload, requireStreamId, type RequestPayload } from "./validation.js";

/** One record to send, as both send RPCs carry it. */
export interface SendRequest {
  streamId: string;
  payload: RequestPayload;
  eventId: string;
  headers: Record<string, string>;
}

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
  maxPayloadBytes: number;
  /** Event ids remembered for deduplication at send time. */
  dedupWindow: number;
}

/** See the module comment. */
export class Ingest {
  /** Event id → the first send's cursor (a promise while it is being stored). */
  private readonly seen: Lru<string, Promise<string>>;
  /** Sends being stored, per stream, so CloseStream can wait for them. */
  private readonly inFlight = new Map<string, Set<Promise<unknown>>>();

  /** Coalesced writes to the ingest topic (see {@link send}). */
  private readonly produceCoalesced: CoalescedProduce;

  constructor(private readonly options: IngestOptions) {
    this.seen = new Lru(options.dedupWindow);
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
  send(request: SendRequest, coalesce = false): Promise<SendResult> {
    const { registry, counters } = this.options;
    const streamId = requireStreamId(request.streamId);
    const entry = registry.get(streamId);
    let payload;
    try {
      checkEventId(request.eventId);
      checkHeaders(request.headers);
      payload = encodePayload(request.payload, this.options.maxPayloadBytes);
    } catch (error) {
      if (entry) counters.add(streamId, "rejected");
      throw error;
    }
    if (!entry) throw streamNotFound(streamId);
    if (entry.stream.state !== StreamState.OPEN) throw streamClosed(streamId);

    const key = request.eventId === "" ? undefined : eventKey(streamId, request.eventId);
    const first = key === undefined ? undefined : this.seen.get(key);
    if (first) {
      counters.add(streamId, "duplicates");
      return first.then((cursor) => ({ cursor, duplicate: true }));
    }
    const record: ProduceRecord = {
      key: streamId,
      value: payload.bytes,
      headers: dataHeaders(payload.kind, request.headers, request.eventId, Date.now()),
    };
    const stored = this.track(
      streamId,
      coalesce
        ? this.produceCoalesced(record).then(toCursor)
        : this.options.broker.produce(this.options.ingestTopic, [record]).then(([position]) => toCursor(position!)),
    );
    if (key !== undefined) {
      this.seen.set(key, stored);
      // A failed write must not make a retry look like a duplicate.
      stored.catch(() => this.seen.delete(key));
    }
    return stored.then((cursor) => {
      counters.add(streamId, "accepted");
      return { cursor, duplicate: false };
    });
  }

  /**
   * Appends the close marker after every send already under way for the
   * stream, so that the processor sees it after the stream's last record.
   */
  async appendCloseMarker(streamId: string): Promise<void> {
    await this.drain(streamId);
    await this.options.broker.produce(this.options.ingestTopic, [
      { key: streamId, value: new Uint8Array(0), headers: controlHeaders("close", Date.now()) },
    ]);
  }

  /** Resolves when every send under way (for one stream, or all) has settled. */
  async drain(streamId?: string): Promise<void> {
    const sets = streamId === undefined ? [...this.inFlight.values()] : [this.inFlight.get(streamId)];
    await Promise.allSettled(sets.flatMap((set) => (set ? [...set] : [])));
  }

  private track<T>(streamId: string, promise: Promise<T>): Promise<T> {
    let set = this.inFlight.get(streamId);
    if (!set) this.inFlight.set(streamId, (set = new Set()));
    set.add(promise);
    const forget = () => {
      set.delete(promise);
      if (set.size === 0) this.inFlight.delete(streamId);
    };
    promise.then(forget, forget);
    return promise;
  }
}

/** The gRPC code name of an error, for SendDataStream's per-record rejections. */
export function codeName(error: unknown): string {
  return codeToString(error instanceof ConnectError ? error.code : Code.Internal);
}

/** The SendData cursor of an ingest record stored at `position`. */
function toCursor({ partition, offset }: RecordPosition): string {
  return encodeCursor("ingest", partition, offset);
}
