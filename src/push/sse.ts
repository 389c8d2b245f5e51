/**
 * Results as Server-Sent Events: `GET /v1/streams/{streamId}/results` (with
 * `Accept: text/event-stream`, or anything: `curl -N` is enough). Each result
 * is one event, `id:` its result cursor, `event: result`, `data:` the JSON of
 * a Connect WatchResults message; `Last-Event-ID` (EventSource's reconnect)
 * or `?after=` resumes with no gap and no duplicate. A comment line every
 * SSE_HEARTBEAT_MS keeps proxies from closing an idle stream. A closed
 * stream ends with `event: end`; an error (fell behind, draining, removed)
 * with `event: error` carrying the code, message and resume cursor, then the
 * response ends. Refusals before the first event are plain HTTP errors with
 * a Connect error body. A client that does not read holds no results: its
 * watcher overflows as any other, and it is told so when it reads again.
 */
import type http from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { Code, type ConnectError } from "@connectrpc/connect";

import type { WatchResultsResponse } from "../../gen/streamgate/v1/stream_service_pb.js";
import { DomainError } from "../common/domain-error.js";
import { waitForWake } from "../common/waits.js";
import { traces } from "../observe/tracing.js";
import { codeName, toConnectError } from "../rpc/errors.js";
import { writeHead } from "../rpc/http-response.js";
import { httpRefusal } from "./http-refusal.js";
import { Interruption } from "./interruption.js";
import { type OpenWatchDeps, openWatch } from "./open-watch.js";
import { sseEvent } from "./result-text.js";
import { parseWatchUrl } from "./watch-request.js";

type Request = http.IncomingMessage | Http2ServerRequest;
type Response = http.ServerResponse | Http2ServerResponse;

/** The response as a writable: both kinds write text alike, but TypeScript cannot call a method on their union. */
const writable = (response: Response) => response as http.ServerResponse;

/** What the SSE endpoint needs besides opening watches. */
export interface SseDeps extends OpenWatchDeps {
  /** SSE_HEARTBEAT_MS: a comment line this often while no event is sent. */
  heartbeatMs: number;
}

/** Serves one SSE watch request (the caller has matched its path and method). */
export async function serveSse(deps: SseDeps, request: Request, response: Response, peer: string): Promise<void> {
  const ended = new AbortController();
  const abort = () => ended.abort();
  // The response closes when the client goes away (or once it has ended), on HTTP/1.1 and HTTP/2 alike.
  response.once("close", abort);
  let code = "ok";
  let release: (() => void) | undefined;
  const interruption = new Interruption();
  // While tracing is on, the watch's span (joining the GET's traceparent), opened inside it so deliveries link to it.
  const span = traces?.startWatch("sse", request.headers);
  try {
    let watch: Awaited<ReturnType<typeof openWatch>>;
    try {
      const url = parseWatchUrl(request.url ?? "", header(request, "last-event-id"));
      const open = () => openWatch(deps, url, request.headers, peer, ended.signal, () => interruption.notify());
      watch = await (span === undefined ? open() : span.run(open));
      span?.setStream(watch.tenant, watch.streamId);
    } catch (error) {
      const mapped = toConnectError(error, ended.signal);
      code = codeName(mapped.code);
      if (!ended.signal.aborted) refuse(response, mapped);
      return;
    }
    release = watch.release;
    writeHead(response, 200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      // Proxies (nginx) buffer responses unless told not to; events must pass at once.
      "x-accel-buffering": "no",
    });
    // Headers and a first line at once, so a client sees the stream open before the first result.
    writable(response).write(": watching\n\n");
    code = await stream(deps, watch.results, response, ended.signal, interruption);
  } finally {
    release?.();
    deps.metrics.httpWatches.inc({ transport: "sse", code });
    span?.end(code);
    if (!response.writableEnded) response.end();
  }
}

/** Sends the results as events until the watch ends; returns how it ended (a code name). */
async function stream(
  deps: SseDeps,
  results: AsyncIterable<WatchResultsResponse>,
  response: Response,
  signal: AbortSignal,
  interruption: Interruption,
): Promise<string> {
  let lastCursor = "";
  let idle = true;
  const heartbeat = setInterval(() => {
    if (idle) writable(response).write(": heartbeat\n\n");
    idle = true;
  }, deps.heartbeatMs);
  heartbeat.unref();
  try {
    for await (const message of results) {
      lastCursor = message.result?.cursor ?? lastCursor;
      idle = false;
      const event = sseEvent(message);
      if (!writable(response).write(event)) await drained(response, signal, interruption);
      if (signal.aborted) return "canceled";
    }
    // The fanout ends a watch quietly when its client has gone.
    if (signal.aborted) return "canceled";
    writable(response).write("event: end\ndata: {}\n\n");
    return "ok";
  } catch (error) {
    const mapped = toConnectError(error, signal);
    if (signal.aborted || mapped.code === Code.Canceled) return "canceled";
    const cursor = error instanceof DomainError && error.resumeCursor !== undefined ? error.resumeCursor : lastCursor;
    const data = JSON.stringify({ code: codeName(mapped.code), message: mapped.rawMessage, cursor });
    writable(response).write(`event: error\ndata: ${data}\n\n`);
    return codeName(mapped.code);
  } finally {
    clearInterval(heartbeat);
  }
}

/**
 * Resolves when the response can take more, the client has gone, or the
 * watch was interrupted: a client that stopped reading and fell behind is
 * then sent its error event at once (queued behind what it has not read) and
 * its watch ends, holding nothing, instead of waiting for it to read again.
 */
function drained(response: Response, signal: AbortSignal, interruption: Interruption): Promise<void> {
  if (interruption.happened) return Promise.resolve();
  return waitForWake(
    (wake) => {
      writable(response).once("drain", wake);
      interruption.wake = wake;
      return () => {
        writable(response).off("drain", wake);
        interruption.wake = undefined;
      };
    },
    { signal },
  );
}

/** Answers a refused watch as Connect answers a unary call: the HTTP status of its code and a JSON error body. */
function refuse(response: Response, error: ConnectError): void {
  const { status, headers, body } = httpRefusal(error);
  writeHead(response, status, headers);
  response.end(body);
}

function header(request: Request, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
