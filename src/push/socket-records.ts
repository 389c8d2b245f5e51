/**
 * Records a client sends on its results WebSocket, stored as SendData stores
 * them, on the stream the socket watches. Each text frame is one record:
 * `{"data": <any JSON>}` or `{"raw": "<base64>"}`, with optional `eventId`,
 * `headers` and `id` (the client's correlation, echoed in the answer). Each is
 * answered, in the order sent, with `{"type":"ack","id":..,"cursor":..,"duplicate":..}`
 * or `{"type":"error","id":..,"code":..,"message":..}`; a refused record
 * never closes the socket. The same checks and costs as SendData, in the same
 * order: the frame decoded, the scope streams:write, draining, one token of
 * the client's rate, the record's checks, then the ingest.
 */
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import type { ConnectError } from "@connectrpc/connect";
import type { RawData } from "ws";
import { SendDataRequestSchema, StreamService } from "../../gen/streamgate/v1/stream_service_pb.js";
import type { Principal } from "../guard/auth/api-keys.js";
import { limitedClient, takeToken } from "../guard/limits/admission.js";
import { codeName, invalidArgument, shuttingDown, toConnectError } from "../rpc/errors.js";
import { authorize } from "../rpc/interceptors/auth.js";
import type { SendResult } from "../streams/ingest.js";
import { checkSend, type SendRequest } from "../streams/requests.js";
import type { WebSocketDeps } from "./websocket.js";

/** What storing records needs: the endpoint's dependencies (limits, ingest, settings). */
export type RecordDeps = Pick<
  WebSocketDeps,
  "adminServices" | "limits" | "stats" | "ingest" | "maxPayloadBytes" | "isDraining"
>;

/** The stream a socket watches, and who watches it: where its records go, and as whom. */
export interface RecordTarget {
  principal: Principal;
  tenant: string;
  streamId: string;
}

/** The answer to one record frame. */
export type RecordAnswer =
  | { type: "ack"; id?: JsonValue; cursor: string; duplicate: boolean }
  | { type: "error"; id?: JsonValue; code: string; message: string };

/** Fields a record frame may have besides `id`: SendDataRequest's, but the stream (the socket's path names it). */
const RECORD_FIELDS = new Set(["data", "raw", "eventId", "headers"]);

/** Records of one socket: takes frames, answers each through `answer` in the order they came. */
export interface SocketRecords {
  /** Takes one frame of the client. */
  receive(data: RawData, isBinary: boolean): void;
  /** How many frames are not answered yet. */
  readonly pending: number;
  /** Resolves once every frame taken so far is answered. */
  settled(): Promise<void>;
}

/**
 * Stores the records of one socket. Records are handed to the ingest one
 * after another, each once its token is taken (so they are stored in the
 * order sent, as Ingest.send keeps call order), without waiting for the one
 * before to be stored; the answers wait for each other, so they go in order.
 */
export function socketRecords(
  deps: RecordDeps,
  target: RecordTarget,
  answer: (frame: RecordAnswer) => void,
): SocketRecords {
  const refusal = writeRefusal(deps, target.principal);
  /** Settles once the previous record is handed to the ingest (or refused). */
  let handed: Promise<unknown> = Promise.resolve();
  /** Settles once the previous record is answered. */
  let answered: Promise<void> = Promise.resolve();
  let pending = 0;

  /** Takes the record's token and checks it, then hands it to the ingest; resolves with the store under way. */
  const begin = async (request: SendRequest): Promise<{ stored: Promise<SendResult> }> => {
    if (refusal) throw refusal;
    if (deps.isDraining()) throw shuttingDown();
    const taking = takeToken(deps.limits, deps.stats, limitedClient(target.principal));
    if (taking) await taking;
    const stored = deps.ingest.send(target.tenant, target.streamId, checked(deps, target, request));
    // Awaited in order by the answers; this keeps a failure from being an unhandled rejection meanwhile.
    stored.catch(() => undefined);
    return { stored };
  };
  const store = (request: SendRequest): Promise<SendResult> => {
    const begun = handed.then(() => begin(request));
    handed = begun.catch(() => undefined);
    return begun.then((started) => started.stored);
  };

  /** Decodes a frame and starts storing its record; the outcome is its store, or why it was refused. */
  const start = (data: RawData, isBinary: boolean): { id?: JsonValue; outcome: Promise<SendResult> } => {
    let id: JsonValue | undefined;
    try {
      const { id: given, ...fields } = frameObject(data, isBinary);
      id = given;
      return { id, outcome: store(decodeRequest(fields)) };
    } catch (error) {
      return { id, outcome: Promise.reject(error) };
    }
  };

  return {
    receive(data, isBinary) {
      const { id, outcome } = start(data, isBinary);
      // Awaited in order below; this keeps a refusal from being an unhandled rejection meanwhile.
      outcome.catch(() => undefined);
      pending++;
      const settled = () =>
        outcome.then(
          (sent) => ackOf(id, sent),
          (error: unknown) => errorOf(id, error),
        );
      answered = answered.then(settled).then((frame) => {
        pending--;
        answer(frame);
      });
    },
    get pending() {
      return pending;
    },
    settled: () => answered,
  };
}

/** The refusal every record of `principal` gets when it may not send (no streams:write scope), else undefined. */
function writeRefusal(deps: RecordDeps, principal: Principal): ConnectError | undefined {
  try {
    // A ticket's principal carries the ticket's scopes; a key's or token's, its own. Its tenant is the watch's.
    authorize(principal, StreamService.typeName, "SendData", deps.adminServices, undefined);
    return undefined;
  } catch (error) {
    return toConnectError(error);
  }
}

/** The record checked as SendData checks it; a refused one counts as its stream's rejection, as there. */
function checked(deps: RecordDeps, target: RecordTarget, request: SendRequest) {
  try {
    return checkSend(request, deps.maxPayloadBytes);
  } catch (error) {
    deps.ingest.countRejected(target.tenant, target.streamId);
    throw error;
  }
}

/** A frame as the JSON object a record frame is; throws INVALID_ARGUMENT for anything else. */
function frameObject(data: RawData, isBinary: boolean): Record<string, JsonValue> {
  if (isBinary) {
    throw invalidArgument(
      'binary frames are not read: send each record as a JSON text frame, bytes as "raw" in base64',
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(textOf(data));
  } catch {
    throw invalidArgument('a frame must be JSON: {"data": <any JSON>} or {"raw": "<base64>"}');
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw invalidArgument('a frame must be a JSON object: {"data": <any JSON>} or {"raw": "<base64>"}');
  }
  return value as Record<string, JsonValue>;
}

/**
 * A record frame's fields (all but `id`) as SendData's request: they are
 * SendDataRequest's in proto3 JSON, so `data`, `raw` (base64), `eventId` and
 * `headers` mean what they mean to SendData, with the same decoding limits.
 * Throws INVALID_ARGUMENT for unknown or malformed ones.
 */
function decodeRequest(fields: Record<string, JsonValue>): SendRequest {
  const unknown = Object.keys(fields).find((name) => !RECORD_FIELDS.has(name));
  if (unknown !== undefined) {
    throw invalidArgument(
      `unknown field ${JSON.stringify(unknown.slice(0, 64))}: a record has data or raw, eventId, headers, id`,
    );
  }
  try {
    return fromJson(SendDataRequestSchema, fields);
  } catch (error) {
    throw invalidArgument(`cannot decode the record: ${(error as Error).message}`);
  }
}

/** A text frame's text (ws gives one Buffer by default; the other shapes only for other binaryType settings). */
function textOf(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString("utf8");
  if (Array.isArray(data)) return Buffer.concat(data).toString("utf8");
  return Buffer.from(data).toString("utf8");
}

/** The ack of a stored record. */
function ackOf(id: JsonValue | undefined, sent: SendResult): RecordAnswer {
  return { type: "ack", id, cursor: sent.cursor, duplicate: sent.duplicate };
}

/** The error answer of a refused record, with the code and message SendData would answer. */
function errorOf(id: JsonValue | undefined, error: unknown): RecordAnswer {
  const mapped = toConnectError(error);
  return { type: "error", id, code: codeName(mapped.code), message: mapped.rawMessage };
}
