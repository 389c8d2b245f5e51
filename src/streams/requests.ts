/**
 * The edge of the streams domain: each request of StreamService turned into
 * checked values, once, before any domain code runs. Everything below (the
 * registry, the send path, the fanout) takes these and checks nothing of the
 * request again. A bad request is refused here (DomainError "invalid", which
 * the RPC layer answers INVALID_ARGUMENT) and changes nothing.
 */
import { create } from "@bufbuild/protobuf";
import {
  type Processing,
  ProcessingSchema,
  type StartPosition,
  type StartStreamRequest,
  type WatchResultsRequest,
} from "../../gen/streamgate/v1/stream_service_pb.js";
import { invalidInput } from "../common/domain-error.js";
import type { CelCompiler, CelProgram } from "../processing/cel.js";
import type { CompiledProcessing, StreamPrograms } from "../processing/stream-programs.js";
import type { Payload } from "../topics/record-format.js";
import { type Cursor, decodeCursor } from "./cursor.js";
import { checkEventId, checkHeaders, checkLabels, encodePayload, type RequestPayload } from "./validation.js";

const MAX_RATE_PER_SECOND = 1_000_000;

/** A StartStream request, checked; its expressions compiled. */
export interface CheckedStart {
  labels: Record<string, string>;
  processing: Processing | undefined;
  /** The processing's compiled expressions, to keep once the stream is started. */
  programs: CompiledProcessing | undefined;
}

/** Checks a StartStream request but its stream id; CEL expressions are compiled here, so a bad one fails StartStream. */
export function checkStart(request: StartStreamRequest, programs: StreamPrograms): CheckedStart {
  const labels = checkLabels(request.labels);
  const { processing } = request;
  if (!processing) return { labels, processing: undefined, programs: undefined };
  const rate = processing.ratePerSecond;
  if (!Number.isFinite(rate) || rate < 0 || rate > MAX_RATE_PER_SECOND) {
    throw invalidInput(`processing.rate_per_second must be from 0 (no throttle) to ${MAX_RATE_PER_SECOND}`);
  }
  return {
    labels,
    processing: create(ProcessingSchema, processing),
    programs: programs.compile(processing, "processing."),
  };
}

/** One record to send, as both send RPCs carry it. */
export interface SendRequest {
  payload: RequestPayload;
  eventId: string;
  headers: Record<string, string>;
}

/** A record to send, checked: its payload encoded as stored. */
export interface CheckedSend {
  payload: Payload;
  eventId: string;
  headers: Record<string, string>;
}

/** Checks a record to send (its stream id is checked apart: a bad record still counts as its stream's rejection). */
export function checkSend(request: SendRequest, maxPayloadBytes: number): CheckedSend {
  return {
    eventId: checkEventId(request.eventId),
    headers: checkHeaders(request.headers),
    payload: encodePayload(request.payload, maxPayloadBytes),
  };
}

/** A WatchResults request, checked: its cursor decoded, its filter compiled. */
export interface CheckedWatch {
  /** Where to resume: after this result, as given (to resume from again should the watch end before a result). */
  after: { cursor: string; position: Cursor } | undefined;
  startPosition: StartPosition;
  filter: CelProgram | undefined;
}

/** Checks a WatchResults request but its stream id; `cel` compiles the watcher's filter. */
export function checkWatch(
  request: Omit<WatchResultsRequest, "streamId" | "$typeName">,
  cel: CelCompiler,
): CheckedWatch {
  const filter = request.filter === "" ? undefined : cel.compile(request.filter, "filter");
  const after =
    request.afterCursor === ""
      ? undefined
      : { cursor: request.afterCursor, position: decodeCursor(request.afterCursor, "results", "after_cursor") };
  return { after, startPosition: request.startPosition, filter };
}
