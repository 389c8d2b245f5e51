/**
 * Results over WebSocket (RFC 6455, served by the `ws` library) on the path
 * of the Server-Sent Events endpoint, `/v1/streams/{streamId}/results`, with
 * its query (`after`, `from=earliest|latest`, `filter`, `ticket`) and its
 * semantics: the watch is opened by openWatch (credential, scope, tenant,
 * draining, the client's watcher slot and token, the request's checks) before
 * the handshake completes, so a refusal is a plain HTTP error with a Connect
 * error body. Once open, every frame is a JSON text frame:
 *
 * - `{"type":"result","cursor":"<result cursor>","result":<Result in proto3 JSON>}`
 * - `{"type":"end"}` when a closed stream's results are all delivered, then close 1000;
 * - `{"type":"error","code":"<code>","message":"...","cursor":"<resume cursor>"}`
 *   when the watch ends otherwise (fell behind, draining, stream removed), then
 *   close 1013 (try again later) for unavailable and resource_exhausted, 1011
 *   for internal, 1008 (policy) for any other code.
 *
 * The client may send records on the same socket (src/push/socket-records.ts).
 * A ping goes out every SSE_HEARTBEAT_MS; a socket that leaves two unanswered
 * is terminated. A client that does not read holds at most about
 * MAX_BUFFERED_BYTES here: past that no further result is pulled, so its
 * watcher overflows in the fanout as any other, and it reads the error frame
 * with its resume cursor once it reads again.
 */
import type http from "node:http";
import type { Duplex } from "node:stream";
import type { JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { type WebSocket, WebSocketServer } from "ws";
import type { WatchResultsResponse } from "../../gen/streamgate/v1/stream_service_pb.js";
import { DomainError } from "../common/domain-error.js";
import { waitForWake } from "../common/waits.js";
import type { CallSpan } from "../observe/trace-points.js";
import { traces } from "../observe/tracing.js";
import { codeName, invalidArgument, toConnectError } from "../rpc/errors.js";
import { peerAddress, refuseUpgrade } from "../rpc/listener.js";
import type { Ingest } from "../streams/ingest.js";
import { httpRefusal } from "./http-refusal.js";
import { Interruption } from "./interruption.js";
import { type OpenedWatch, type OpenWatchDeps, openWatch } from "./open-watch.js";
import { resultFrame } from "./result-text.js";
import { type RecordAnswer, type SocketRecords, socketRecords } from "./socket-records.js";
import { isWatchPath, parseWatchUrl } from "./watch-request.js";

/** Handles an HTTP/1.1 upgrade request on the listener's socket. */
export type UpgradeHandler = (request: http.IncomingMessage, socket: Duplex, head: Buffer) => void;

/** What the WebSocket endpoint needs besides opening watches. */
export interface WebSocketDeps extends OpenWatchDeps {
  /** A ping this often (SSE_HEARTBEAT_MS). */
  heartbeatMs: number;
  /** Where records sent on the socket go, as SendData's do. */
  ingest: Ingest;
  /** MAX_PAYLOAD_BYTES. */
  maxPayloadBytes: number;
}

/** Room in a frame for a record's fields besides its payload (as REQUEST_OVERHEAD_BYTES for RPCs). */
const FRAME_OVERHEAD_BYTES = 64 * 1024;

/**
 * The largest frame read: a record of MAX_PAYLOAD_BYTES in its longest form,
 * raw bytes as base64 (4 characters per 3 bytes), and its other fields.
 */
export function maxFrameBytes(maxPayloadBytes: number): number {
  return Math.ceil(maxPayloadBytes / 3) * 4 + FRAME_OVERHEAD_BYTES;
}
/** Bytes queued for a client past which no further result is pulled. */
export const MAX_BUFFERED_BYTES = 1024 * 1024;
/** Records of one socket whose answers are not yet written, past which its frames are not read. */
const MAX_PENDING_RECORDS = 512;
/** Pings a socket may leave unanswered; at the next beat it is terminated. */
const MAX_UNANSWERED_PINGS = 2;

/** The close codes (RFC 6455 section 7.4.1) a watch ends with. */
export const CLOSE_CODES = { ended: 1000, policy: 1008, internal: 1011, tryAgainLater: 1013 } as const;

/** A frame the server sends. */
type ServerFrame =
  | { type: "result"; cursor: string; result: JsonValue }
  | { type: "end" }
  | { type: "error"; code: string; message: string; cursor: string }
  | RecordAnswer;

/** How a watch ended: the code counted, and the close code to send (none when the client has gone). */
interface Ending {
  code: string;
  close?: number;
}

const CANCELED: Ending = { code: "canceled" };

/** Creates the upgrade handler: WebSocket watches on the results path, 404 anywhere else. */
export function createWebSocketEndpoint(deps: WebSocketDeps): UpgradeHandler {
  const server = new WebSocketServer({
    noServer: true,
    // The sockets are the listener's to track; a set of them here would only hold memory.
    clientTracking: false,
    maxPayload: maxFrameBytes(deps.maxPayloadBytes),
  });
  return (request, socket, head) => {
    if (!isWatchPath(request.url)) {
      refuseWith(socket, new ConnectError("no WebSocket endpoint at this path", Code.NotFound));
      return;
    }
    // Checked before the watch is opened, so a malformed handshake costs no token and holds no slot.
    const problem = handshakeProblem(request);
    if (problem) {
      deps.metrics.httpWatches.inc({ transport: "websocket", code: "invalid_argument" });
      refuseWith(socket, invalidArgument(problem), { "sec-websocket-version": "13" });
      return;
    }
    void upgrade(deps, server, request, socket, head);
  };
}

/** The close code of a watch that ended with `code` (see the module comment). */
export function closeCodeOf(code: Code): number {
  if (code === Code.Internal) return CLOSE_CODES.internal;
  if (code === Code.Unavailable || code === Code.ResourceExhausted) return CLOSE_CODES.tryAgainLater;
  return CLOSE_CODES.policy;
}

/** Opens the watch, then completes the handshake and serves the socket; or refuses the upgrade. */
async function upgrade(
  deps: WebSocketDeps,
  server: WebSocketServer,
  request: http.IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<void> {
  // While tracing is on, the watch's span (joining the GET's traceparent): deliveries link to it, and the
  // records sent on the socket are its children.
  const span = traces?.startWatch("websocket", request.headers);
  const count = (code: string) => {
    deps.metrics.httpWatches.inc({ transport: "websocket", code });
    span?.end(code);
  };
  const ended = new AbortController();
  const interruption = new Interruption();
  const gone = () => ended.abort();
  socket.once("close", gone);
  let watch: OpenedWatch;
  try {
    // No Last-Event-ID here: `after` alone resumes.
    const url = parseWatchUrl(request.url ?? "", undefined);
    const open = () =>
      openWatch(deps, url, request.headers, peerAddress(request), ended.signal, () => interruption.notify());
    watch = await (span === undefined ? open() : span.run(open));
    span?.setStream(watch.tenant, watch.streamId);
  } catch (error) {
    socket.off("close", gone);
    const mapped = toConnectError(error, ended.signal);
    count(codeName(mapped.code));
    if (!ended.signal.aborted) refuseWith(socket, mapped);
    return;
  }
  // Until ws has the socket, its close (the client gone, or a handshake ws refused) ends the watch.
  const unserved = () => {
    watch.release();
    count(CANCELED.code);
  };
  socket.off("close", gone);
  if (ended.signal.aborted) return unserved();
  socket.once("close", unserved);
  server.handleUpgrade(request, socket, head, (ws) => {
    socket.off("close", unserved);
    void serve(deps, ws, watch, ended, interruption, span).then((ending) => count(ending.code));
  });
}

/**
 * Serves an open socket: results out, records in, pings, until the watch or
 * the socket ends; returns how the watch ended. The watch (opened with
 * `ended`'s signal) is aborted and its watcher slot released however it ends.
 */
async function serve(
  deps: WebSocketDeps,
  ws: WebSocket,
  watch: OpenedWatch,
  ended: AbortController,
  interruption: Interruption,
  span: CallSpan | undefined,
): Promise<Ending> {
  // The signal ends the fanout's watch at once, even while no result is being pulled.
  ws.once("close", () => ended.abort());
  // ws closes the socket after any error it reports; the "close" above follows.
  ws.on("error", () => undefined);
  const { writer, records, stopReading } = readRecords(deps, ws, watch, span);
  const stopBeating = heartbeat(ws, writer, deps.heartbeatMs);
  let ending: Ending;
  try {
    ending = await pushResults(watch.results, writer, ended.signal, interruption);
  } finally {
    // The watch is over: its fanout watcher and its slot go now, whatever the socket still does.
    ended.abort();
    watch.release();
    stopBeating();
    stopReading();
  }
  await closeAfter(ws, ending, records);
  return ending;
}

/**
 * Takes the client's record frames (src/push/socket-records.ts), answering
 * them through the returned writer, which the results use too. The client's
 * frames are not read while MAX_PENDING_RECORDS of its records are not
 * answered or their answers not written, so a client that sends without
 * reading is slowed down instead of filling memory. One that only reads is
 * never paused: its pongs must come through.
 */
function readRecords(deps: WebSocketDeps, ws: WebSocket, watch: OpenedWatch, span: CallSpan | undefined) {
  let unwritten = 0;
  const gate = () => {
    const full = records.pending + unwritten >= MAX_PENDING_RECORDS;
    if (full && !ws.isPaused) ws.pause();
    else if (!full && ws.isPaused) ws.resume();
  };
  const writer = frameWriter(ws);
  const records = socketRecords(deps, watch, (frame) => {
    unwritten++;
    writer.send(frame, () => {
      unwritten--;
      gate();
    });
  });
  const receive = (data: Parameters<SocketRecords["receive"]>[0], isBinary: boolean) => {
    records.receive(data, isBinary);
    gate();
  };
  // The socket's events run outside the watch's span: bound to it, a record's send is its child.
  const onMessage = span === undefined ? receive : span.bind(receive);
  ws.on("message", onMessage);
  return { writer, records, stopReading: () => ws.off("message", onMessage) };
}

/**
 * Closes the socket once the watch has ended: after the answers to the
 * records sent before the end, with the ending's close code. A watch canceled
 * while the socket is still open (nothing left to say on it) is cut off.
 */
async function closeAfter(ws: WebSocket, ending: Ending, records: SocketRecords): Promise<void> {
  if (ending.close === undefined) {
    if (ws.readyState === ws.OPEN) ws.terminate();
    return;
  }
  await records.settled();
  ws.close(ending.close, ending.code);
}

/** Sends each result as a frame until the watch ends; returns how it ended, having sent its end or error frame. */
async function pushResults(
  results: AsyncIterable<WatchResultsResponse>,
  writer: FrameWriter,
  signal: AbortSignal,
  interruption: Interruption,
): Promise<Ending> {
  let lastCursor = "";
  try {
    for await (const message of results) {
      if (!message.result) continue;
      lastCursor = message.result.cursor;
      writer.send(resultFrame(message));
      // Pulling no more while the client is behind: its watcher overflows in the fanout, not memory here,
      // and the interruption wakes the wait, so the error frame is queued and the watch let go at once.
      await writer.drained(signal, interruption);
      if (signal.aborted) return CANCELED;
    }
    // The fanout ends a watch quietly when it is aborted.
    if (signal.aborted) return CANCELED;
    writer.send({ type: "end" });
    return { code: "ok", close: CLOSE_CODES.ended };
  } catch (error) {
    const mapped = toConnectError(error, signal);
    if (signal.aborted || mapped.code === Code.Canceled) return CANCELED;
    const cursor = error instanceof DomainError && error.resumeCursor !== undefined ? error.resumeCursor : lastCursor;
    const code = codeName(mapped.code);
    writer.send({ type: "error", code, message: mapped.rawMessage, cursor });
    return { code, close: closeCodeOf(mapped.code) };
  }
}

/** Sends frames, and tells when what is queued for the client is back under MAX_BUFFERED_BYTES. */
interface FrameWriter {
  /** Queues `frame`; `onWritten` is told once it has left the queue (or the socket has closed). */
  /** `frame` as an object, or as its JSON text already made (a result's, shared by its watchers). */
  send(frame: ServerFrame | string, onWritten?: () => void): void;
  ping(): void;
  /** Resolves at once when the queue is within the bound, else once it is, `signal` aborts, or the watch is interrupted. */
  drained(signal: AbortSignal, interruption: Interruption): Promise<void>;
}

/** A writer of `ws`. */
function frameWriter(ws: WebSocket): FrameWriter {
  let wake: (() => void) | undefined;
  // Every write reports here, so the last one to leave a long queue wakes the wait.
  const written = () => {
    if (wake && ws.bufferedAmount <= MAX_BUFFERED_BYTES) {
      const woken = wake;
      wake = undefined;
      woken();
    }
  };
  return {
    send: (frame, onWritten) =>
      ws.send(typeof frame === "string" ? frame : JSON.stringify(frame), () => {
        written();
        onWritten?.();
      }),
    ping: () => ws.ping(undefined, undefined, written),
    drained: (signal, interruption) =>
      ws.bufferedAmount <= MAX_BUFFERED_BYTES || interruption.happened
        ? Promise.resolve()
        : waitForWake(
            (woken) => {
              wake = woken;
              interruption.wake = woken;
              return () => {
                wake = undefined;
                interruption.wake = undefined;
              };
            },
            { signal },
          ),
  };
}

/** Pings every `intervalMs`; terminates the socket at a beat that finds MAX_UNANSWERED_PINGS unanswered. Returns the stop. */
function heartbeat(ws: WebSocket, writer: FrameWriter, intervalMs: number): () => void {
  let unanswered = 0;
  const answered = () => (unanswered = 0);
  ws.on("pong", answered);
  const timer = setInterval(() => {
    if (unanswered >= MAX_UNANSWERED_PINGS) {
      ws.terminate();
      return;
    }
    unanswered++;
    writer.ping();
  }, intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    ws.off("pong", answered);
  };
}

/** Why `request` is no WebSocket handshake ws would complete (RFC 6455 section 4.2.1), or undefined. */
function handshakeProblem(request: http.IncomingMessage): string | undefined {
  if (request.method !== "GET") return "a WebSocket handshake is a GET request";
  if (!/^[+/0-9A-Za-z]{22}==$/.test(request.headers["sec-websocket-key"] ?? "")) {
    return "missing or malformed Sec-WebSocket-Key";
  }
  if (request.headers["sec-websocket-version"] !== "13") return "Sec-WebSocket-Version must be 13";
  return undefined;
}

/** Refuses an upgrade as Connect answers a unary call: the HTTP status of the code and a JSON error body. */
function refuseWith(socket: Duplex, error: ConnectError, extraHeaders: Record<string, string> = {}): void {
  const { status, headers, body } = httpRefusal(error);
  refuseUpgrade(socket, status, body, { ...headers, ...extraHeaders });
}
