/**
 * A result as the fanout holds it: the stored record, decoded once and only
 * when a watcher needs it, shared by every window and watcher that holds it.
 */
import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  type Result,
  ResultSchema,
  type WatchResultsResponse,
  WatchResultsResponseSchema,
} from "../../gen/streamgate/v1/stream_service_pb.js";
import type { StoredRecord } from "../broker/broker.js";
import type { ResultTrace } from "../observe/trace-points.js";
import { type CelProgram, type CelRecord, celRecordOf, passes } from "../processing/cel.js";
import { decodeCursor, encodeCursor } from "../streams/cursor.js";
import { type DecodedRecord, decodeRecord, HEADER } from "../topics/record-format.js";

const decoder = new TextDecoder();

/** One result record, decoded lazily (most are never watched). */
export class ResultEntry {
  private cachedResponse: WatchResultsResponse | undefined;
  private cachedDecoded: DecodedRecord | undefined;
  private cachedJson: JsonValue | undefined;
  private cachedSourceOffset: number | undefined;
  /** Whether the result decodes: undefined until tried. */
  private decodes: boolean | undefined;
  private reported = false;
  readonly end: boolean;
  /**
   * The trace context the result carries, read once as it arrived (Fanout.accept), while tracing is on:
   * each live delivery to a watcher is a span of that trace. Undefined while tracing is off.
   */
  trace: ResultTrace | undefined;

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

/** The Result message of a result record. */
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
export function passesFilter(filter: CelProgram | undefined, entry: ResultEntry): boolean {
  if (!filter) return true;
  try {
    return passes(filter, entry.celRecord());
  } catch {
    return false;
  }
}
