/**
 * How streamgate's records look on the broker. Keys are stream keys,
 * `<tenant>/<stream id>` (src/streams/stream-key.ts); values are
 * the payload as sent (JSON text or raw bytes); metadata travels in headers, so
 * any Kafka client (kcat, a Java consumer) can read the topics without
 * streamgate's code.
 */
import type { RecordHeaders, StoredRecord } from "../broker/broker.js";
import { type StreamKey, streamIdOf } from "../streams/stream-key.js";

/** Header names written by streamgate (the "streamgate-" prefix is reserved). */
export const HEADER = {
  contentType: "content-type",
  eventId: "streamgate-event-id",
  sendTime: "streamgate-send-time",
  processTime: "streamgate-process-time",
  sourceCursor: "streamgate-source-cursor",
  control: "streamgate-control",
} as const;

/** The prefix of header names that clients may not set. */
export const RESERVED_HEADER_PREFIX = "streamgate-";

/**
 * The W3C Trace Context headers, under their standard names so that any
 * traced Kafka consumer continues the trace: streamgate writes them on ingest
 * and result records while tracing is on (src/observe/otel-traces.ts). They
 * are streamgate's, as content-type is for JSON: a client's record header of
 * either name is dropped, never stored, whether tracing is on or not (stored,
 * it would graft the processing onto a trace of the client's choosing on an
 * instance that traces), and they are never passed on as a record's client
 * headers. A client joins a trace with the request's own `traceparent`.
 */
export const TRACE_HEADER = { parent: "traceparent", state: "tracestate" } as const;

/** Content types of the two payload kinds. */
export const CONTENT_TYPE = {
  json: "application/json",
  bytes: "application/octet-stream",
} as const;

/** Control records: a close marker on ingest becomes an end marker on results. */
export type ControlKind = "close" | "end";

/** A payload: JSON text or raw bytes. */
export type Payload = { kind: "json"; bytes: Uint8Array } | { kind: "raw"; bytes: Uint8Array };

/** A record as a processor or watcher sees it, decoded from its headers. */
export interface DecodedRecord {
  /** The record's key: its stream's tenant and id. */
  key: StreamKey;
  /** The stream's id, as its clients name it (without the tenant). */
  streamId: string;
  payload: Payload;
  eventId: string;
  /** Client headers (reserved, trace and content-type headers removed). */
  headers: RecordHeaders;
  sendTime: number;
  control: ControlKind | undefined;
}

/** Builds the headers of a data record. */
export function dataHeaders(
  payloadKind: Payload["kind"],
  clientHeaders: RecordHeaders,
  eventId: string,
  sendTime: number,
): RecordHeaders {
  const headers: RecordHeaders =
    clientHeaders[TRACE_HEADER.parent] === undefined && clientHeaders[TRACE_HEADER.state] === undefined
      ? { ...clientHeaders }
      : withoutTraceContext(clientHeaders);
  headers[HEADER.contentType] =
    payloadKind === "json" ? CONTENT_TYPE.json : (clientHeaders[HEADER.contentType] ?? CONTENT_TYPE.bytes);
  if (eventId !== "") headers[HEADER.eventId] = eventId;
  headers[HEADER.sendTime] = String(sendTime);
  return headers;
}

/** `headers` but the trace context's (a client's, dropped: see TRACE_HEADER). */
function withoutTraceContext(headers: RecordHeaders): RecordHeaders {
  const kept: RecordHeaders = {};
  for (const name in headers) {
    if (name !== TRACE_HEADER.parent && name !== TRACE_HEADER.state) kept[name] = headers[name]!;
  }
  return kept;
}

/** Builds the headers of a control record. */
export function controlHeaders(kind: ControlKind, sendTime: number): RecordHeaders {
  return { [HEADER.control]: kind, [HEADER.sendTime]: String(sendTime) };
}

/** Decodes a stored record's metadata from its headers. */
export function decodeRecord(record: StoredRecord): DecodedRecord {
  const headers: RecordHeaders = {};
  // for-in, not Object.entries: this runs for every record read, and entries() builds an array per header.
  for (const name in record.headers) {
    if (
      !name.startsWith(RESERVED_HEADER_PREFIX) &&
      name !== HEADER.contentType &&
      name !== TRACE_HEADER.parent &&
      name !== TRACE_HEADER.state
    ) {
      headers[name] = record.headers[name]!;
    }
  }
  const contentType = record.headers[HEADER.contentType];
  if (contentType !== undefined && contentType !== CONTENT_TYPE.json && contentType !== CONTENT_TYPE.bytes) {
    headers[HEADER.contentType] = contentType;
  }
  const control = record.headers[HEADER.control];
  // A send-time header a foreign producer garbled falls back to the record's
  // timestamp: NaN, or a time a Timestamp cannot hold, would make every
  // result built from it unreadable.
  const sent = Number(record.headers[HEADER.sendTime] ?? record.timestamp);
  return {
    key: record.key,
    streamId: streamIdOf(record.key),
    payload: { kind: contentType === CONTENT_TYPE.json ? "json" : "raw", bytes: record.value },
    eventId: record.headers[HEADER.eventId] ?? "",
    headers,
    sendTime: isTimestampMs(sent) ? sent : record.timestamp,
    control: control === "close" || control === "end" ? control : undefined,
  };
}

/** The range of google.protobuf.Timestamp (0001-01-01 to 9999-12-31), in milliseconds. */
const TIMESTAMP_MS = { min: -62_135_596_800_000, max: 253_402_300_799_999 } as const;

/** Whether `ms` is a time a Timestamp can hold. */
function isTimestampMs(ms: number): boolean {
  return Number.isFinite(ms) && ms >= TIMESTAMP_MS.min && ms <= TIMESTAMP_MS.max;
}
