/**
 * One port for every protocol. Cleartext: each connection's first bytes decide
 * whether it is HTTP/2 with prior knowledge (gRPC from grpc-js, grpcurl, ghz)
 * or HTTP/1.1 (gRPC-Web and Connect from browsers and curl), since Node's
 * cleartext HTTP/2 server cannot take HTTP/1.1 by itself. With TLS, ALPN
 * chooses between h2 and http/1.1.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { Duplex } from "node:stream";
import { delay } from "../common/waits.js";
import type { EdgeConfig, TlsConfig } from "../config/config.js";
import type { RefusalReason } from "../observe/metrics.js";
// A type only, erased at run time: the push layer imports this module, never the reverse.
import type { UpgradeHandler } from "../push/websocket.js";
import { ConnectionCaps, normalisePeer, peerGroup, refuseClearly } from "./connection-admission.js";
import { clientErrorListener } from "./http1-client-error.js";
import { guardSession } from "./http2-guard.js";

/** A request handler for both HTTP versions. */
export type RequestHandler = (
  request: http.IncomingMessage | http2.Http2ServerRequest,
  response: http.ServerResponse | http2.Http2ServerResponse,
) => void;

/** Where and how to listen. */
export interface ListenOptions {
  port: number;
  host: string;
  tls: TlsConfig | undefined;
  handler: RequestHandler;
  /**
   * Bounds of connections and requests (see README "Limits and protections").
   * Omitted only by the bench's bare baseline server, which measures the RPC
   * layer without them: no caps, no timeouts but Node's, no session guard.
   */
  edge?: EdgeLimits;
  /** Told of each connection refused, closed or request reset by a bound, with the peer address ("" when unknown). */
  onRefused?: (reason: RefusalReason, peer: string) => void;
  /**
   * Takes HTTP/1.1 WebSocket upgrade requests (cleartext and TLS); without it
   * they are answered 404. Other upgrades (`Upgrade: h2c` from `curl --http2`)
   * are served as the plain requests they also are.
   */
  upgrade?: UpgradeHandler;
}

/** The connection and request bounds the listener enforces. */
export type EdgeLimits = Pick<
  EdgeConfig,
  | "maxConnections"
  | "maxConnectionsPerPeer"
  | "firstBytesTimeoutMs"
  | "http2IdleTimeoutMs"
  | "http2MaxConcurrentStreams"
  | "requestBodyTimeoutMs"
  | "connectionMaxBufferedBytes"
>;

/** A listening server. */
export interface Listener {
  /** The bound port (useful with port 0). */
  readonly port: number;
  /**
   * Stops accepting connections, lets calls in progress finish, and destroys
   * what is still open after `timeoutMs`.
   */
  close(timeoutMs: number): Promise<void>;
}

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** Starts listening; resolves once the port is bound. */
export async function listen(options: ListenOptions): Promise<Listener> {
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.Http2Session>();
  let draining = false;
  const { edge } = options;
  const onRefused = options.onRefused ?? (() => undefined);
  const caps = edge && new ConnectionCaps(edge.maxConnections, edge.maxConnectionsPerPeer);
  /**
   * Counts an accepted connection against the caps (until it closes), or
   * refuses it: `answer` says whether to answer it first (cleartext) or close
   * it at once (TLS, where an answer would cost a handshake).
   */
  const admitted = (socket: net.Socket, answer: boolean): boolean => {
    if (!edge || !caps) return true;
    if (socket.remoteAddress === undefined) {
      socket.destroy(); // already gone
      return false;
    }
    const peer = normalisePeer(socket.remoteAddress);
    const group = peerGroup(peer);
    const refusal = caps.admit(group);
    if (refusal === undefined) {
      socket.once("close", () => caps.release(group));
      return true;
    }
    onRefused(refusal, peer);
    if (answer) refuseClearly(socket, refusal, edge.firstBytesTimeoutMs);
    else socket.destroy();
    return false;
  };
  const http2Settings = edge ? { maxConcurrentStreams: edge.http2MaxConcurrentStreams } : {};
  const onSession = (session: http2.ServerHttp2Session) => {
    trackSession(sessions, session);
    if (!edge) return;
    guardSession(session, {
      idleTimeoutMs: edge.http2IdleTimeoutMs,
      bodyTimeoutMs: edge.requestBodyTimeoutMs,
      maxBufferedBytes: edge.connectionMaxBufferedBytes,
      onRefused: (reason, guarded) => onRefused(reason, sessionPeer(guarded)),
    });
  };
  const onClientError = clientErrorListener((reason, socket) =>
    onRefused(reason, normalisePeer((socket as net.Socket).remoteAddress)),
  );

  const handler: RequestHandler = (request, response) => {
    // HTTP/1.1 keep-alive connections are told to close after this response while draining.
    if (draining && request.httpVersionMajor === 1) response.setHeader("connection", "close");
    if (request.httpVersionMajor === 2) endUnreadRequestAfterResponse(request as http2.Http2ServerRequest);
    options.handler(request, response);
  };
  // The socket is the connection's own, so the connection caps still count it until it closes.
  const onUpgrade = (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node's HTTP server stops listening for the socket's errors once it hands the socket over.
    socket.on("error", () => socket.destroy());
    if (options.upgrade) options.upgrade(request, socket, head);
    else refuseUpgrade(socket, 404);
  };

  let server: net.Server;
  let h1: http.Server | undefined;
  if (options.tls) {
    const secure = http2.createSecureServer(
      {
        cert: options.tls.cert,
        key: options.tls.key,
        allowHTTP1: true,
        settings: http2Settings,
        // The first-bytes bound for TLS: the handshake must be done within it.
        ...(edge && { handshakeTimeout: edge.firstBytesTimeoutMs }),
      },
      handler,
    );
    // HTTP/1.1 over TLS: read when the server starts listening, so set before.
    if (edge) setHttp1Timeouts(secure, edge);
    secure.on("clientError", onClientError);
    // Checked on the TCP connection, before any TLS work is spent on it.
    secure.on("connection", (socket: net.Socket) => void admitted(socket, false));
    secure.on("session", onSession);
    // Read by its HTTP/1.1 side as a property only (as the timeouts above), not from the options.
    Object.assign(secure, { shouldUpgradeCallback: isWebSocketUpgrade });
    secure.on("upgrade", onUpgrade);
    server = secure;
  } else {
    h1 = http.createServer({ ...(edge && http1Options(edge)), shouldUpgradeCallback: isWebSocketUpgrade }, handler);
    h1.on("clientError", onClientError);
    h1.on("upgrade", onUpgrade);
    // h1 never listens itself (connections are handed to it), but its connection
    // tracking (idle closing, request and header timeouts) starts on "listening".
    h1.emit("listening");
    const h2 = http2.createServer({ settings: http2Settings }, handler);
    h2.on("session", onSession);
    server = net.createServer((socket) => {
      if (admitted(socket, true)) {
        routeBySniffing(socket, h1!, h2, edge?.firstBytesTimeoutMs, () =>
          onRefused("first_bytes_timeout", normalisePeer(socket.remoteAddress)),
        );
      }
    });
  }
  server.on("connection", (socket: net.Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    async close(timeoutMs) {
      draining = true;
      server.close();
      // GOAWAY: HTTP/2 clients open no new streams; streams in progress finish.
      for (const session of sessions) session.close();
      const deadline = Date.now() + timeoutMs;
      while (sockets.size > 0 && Date.now() < deadline) {
        h1?.closeIdleConnections();
        await delay(50);
      }
      for (const socket of sockets) socket.destroy();
      // Stops h1's connection-checking timer; it was never bound, so ignore that error.
      h1?.close(() => undefined);
    },
  };
}

/**
 * An HTTP/2 answer given before the request body ended (a body over
 * readMaxBytes is refused unread) leaves the client sending into a stream no
 * one reads: the stream never ends, and a shutdown waits its whole timeout for
 * that connection. Once the response is complete (Node's compatibility layer
 * sends trailers, gRPC's status among them, after the last of the body), such a
 * stream is ended with RST_STREAM(NO_ERROR), as RFC 9113 section 8.1 provides.
 */
function endUnreadRequestAfterResponse(request: http2.Http2ServerRequest): void {
  const { stream } = request;
  stream.once("wantTrailers", () =>
    setImmediate(() => {
      if (!request.complete && !stream.closed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
    }),
  );
}

/**
 * Whether a request asks to switch to WebSocket: only these reach the
 * "upgrade" event. Any other upgrade is served as a plain request, as HTTP
 * allows (RFC 9110 section 7.8), and as Node serves upgrades no listener takes.
 */
function isWebSocketUpgrade(request: http.IncomingMessage): boolean {
  return /(?:^|,)[ \t]*websocket[ \t]*(?:,|$)/i.test(request.headers.upgrade ?? "");
}

/**
 * Answers an upgrade request with a plain HTTP response (RFC 6455 section
 * 4.2.2: a handshake the server refuses gets an HTTP error), then closes its
 * socket once the answer is written.
 */
export function refuseUpgrade(socket: Duplex, status: number, body = "", headers: Record<string, string> = {}): void {
  if (socket.destroyed) return;
  const lines = [
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ""}`,
    "connection: close",
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
    `content-length: ${Buffer.byteLength(body)}`,
  ];
  socket.once("finish", () => socket.destroy());
  socket.end(`${lines.join("\r\n")}\r\n\r\n${body}`);
}

/**
 * Whether the client of a request has gone (stream reset, connection closed)
 * before it was answered. An HTTP/2 stream reset before its request body was
 * read is closed at once but destroyed only later: closed counts as gone.
 */
export function clientGone(request: http.IncomingMessage | http2.Http2ServerRequest): boolean {
  return "stream" in request ? request.stream.closed || request.stream.destroyed : request.destroyed;
}

/**
 * HTTP/1.1 timeouts from the edge bounds: the whole request (headers and body)
 * within requestBodyTimeoutMs, its headers within Node's 60 s or that if
 * shorter (a new connection that sends nothing is closed after it too). Node
 * checks them on an interval, a quarter of the shorter, so that a timeout is
 * enforced within 25 % of its length.
 */
function http1Options(edge: EdgeLimits): http.ServerOptions {
  const headersTimeout = Math.min(60_000, edge.requestBodyTimeoutMs);
  return {
    requestTimeout: edge.requestBodyTimeoutMs,
    headersTimeout,
    connectionsCheckingInterval: Math.min(30_000, Math.max(25, Math.floor(headersTimeout / 4))),
  };
}

/** {@link http1Options} on the secure server, whose HTTP/1.1 side takes them only as properties. */
function setHttp1Timeouts(server: http2.Http2SecureServer, edge: EdgeLimits): void {
  const options = http1Options(edge);
  Object.assign(server, {
    requestTimeout: options.requestTimeout,
    headersTimeout: options.headersTimeout,
    connectionsCheckingInterval: options.connectionsCheckingInterval,
  });
}

/** The peer address of an HTTP/2 session (cleartext sessions read through the replaying duplex: see {@link peerAddress}). */
function sessionPeer(session: http2.Http2Session): string {
  const socket = session.socket as (net.Socket & { stream?: { remoteAddress?: string } }) | undefined;
  return normalisePeer(socket?.remoteAddress ?? socket?.stream?.remoteAddress);
}

function trackSession(sessions: Set<http2.Http2Session>, session: http2.Http2Session): void {
  sessions.add(session);
  session.once("close", () => sessions.delete(session));
}

/**
 * Hands a cleartext connection to the HTTP/2 server when it opens with the
 * HTTP/2 connection preface, else to the HTTP/1.1 server. The bytes read to
 * decide are put back first, so each server sees the whole stream. A
 * connection that has not sent enough to decide within `firstBytesTimeoutMs`
 * (nothing, or only part of the preface) is closed; from then on the chosen
 * server's own bounds apply.
 */
function routeBySniffing(
  socket: net.Socket,
  h1: http.Server,
  h2: http2.Http2Server,
  firstBytesTimeoutMs: number | undefined,
  onFirstBytesTimeout: () => void,
): void {
  let received = Buffer.alloc(0);
  const timer =
    firstBytesTimeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          socket.off("data", onData);
          onFirstBytesTimeout();
          socket.destroy();
        }, firstBytesTimeoutMs).unref();
  if (timer) socket.once("close", () => clearTimeout(timer));
  const onData = (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
    const compared = Math.min(received.length, PREFACE.length);
    const isH2 = received.subarray(0, compared).equals(PREFACE.subarray(0, compared));
    if (isH2 && received.length < PREFACE.length) return; // a prefix of the preface: read more
    clearTimeout(timer);
    socket.off("data", onData);
    socket.pause();
    if (isH2) {
      h2.emit("connection", replaying(socket, received));
    } else {
      // The HTTP/1.1 server reads through the socket's stream, so putting the bytes back suffices.
      socket.unshift(received);
      h1.emit("connection", socket);
      socket.resume();
    }
  };
  socket.on("data", onData);
  socket.on("error", () => socket.destroy());
}

/**
 * A duplex over `socket` that first yields `head`, for the HTTP/2 session to
 * read through. Node would also take the socket itself with `head` put back
 * (it replays bytes already read), but under 64 unary callers that measured
 * 10-15 % more CPU per call than this duplex (bench/ANALYSIS.md). Nagle is
 * disabled, as the HTTP/2 server does for the sockets it reads directly, or
 * small frames wait.
 */
function replaying(socket: net.Socket, head: Buffer): Duplex {
  socket.setNoDelay(true);
  const duplex = new Duplex({
    read: () => socket.resume(),
    write: (chunk, encoding, callback) => socket.write(chunk, encoding, callback),
    // The session hands over each batch of frames corked; passing the batch on
    // as one corked write makes it one writev system call instead of one per frame.
    writev: (chunks, callback) => {
      socket.cork();
      for (let i = 0; i < chunks.length - 1; i++) socket.write(chunks[i]!.chunk);
      socket.write(chunks[chunks.length - 1]!.chunk, callback);
      socket.uncork();
    },
    // The session ends its side only after GOAWAY and its last stream: nothing
    // more is to be read, so close rather than wait for the peer to hang up.
    final: (callback) => {
      socket.destroySoon();
      callback();
    },
    destroy: (error, callback) => {
      socket.destroy(error ?? undefined);
      callback(error);
    },
  });
  const push = (chunk: Buffer) => {
    if (!duplex.push(chunk)) socket.pause();
  };
  push(head);
  socket.on("data", push);
  socket.on("end", () => duplex.push(null));
  socket.on("close", () => duplex.destroy());
  socket.on("error", (error) => duplex.destroy(error));
  // Peer details for logs and metrics, as on a socket.
  Object.defineProperties(duplex, {
    remoteAddress: { get: () => socket.remoteAddress },
    remotePort: { get: () => socket.remotePort },
    remoteFamily: { get: () => socket.remoteFamily },
  });
  return duplex;
}

/**
 * The remote address of a request's connection ("" when unknown). A cleartext
 * HTTP/2 connection reaches the session as the replaying duplex, which Node
 * wraps in a socket of its own (JSStreamSocket) with no address; the duplex,
 * which carries the real socket's, is that wrapper's `stream`.
 */
export function peerAddress(request: http.IncomingMessage | http2.Http2ServerRequest): string {
  const socket = request.socket as net.Socket & { stream?: { remoteAddress?: string } };
  return socket.remoteAddress ?? socket.stream?.remoteAddress ?? "";
}
