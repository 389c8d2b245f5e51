/**
 * One port for every protocol. Cleartext: each connection's first bytes decide
 * whether it is HTTP/2 with prior knowledge (gRPC from grpc-js, grpcurl, ghz)
 * or HTTP/1.1 (gRPC-Web and Connect from browsers and curl), since Node's
 * cleartext HTTP/2 server cannot take HTTP/1.1 by itself. With TLS, ALPN
 * chooses between h2 and http/1.1.
 */
import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { Duplex } from "node:stream";
import type { TlsConfig } from "./config.js";

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
}

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

  const handler: RequestHandler = (request, response) => {
    // HTTP/1.1 keep-alive connections are told to close after this response while draining.
    if (draining && request.httpVersionMajor === 1) response.setHeader("connection", "close");
    if (request.httpVersionMajor === 2) endUnreadRequestAfterResponse(request as http2.Http2ServerRequest);
    options.handler(request, response);
  };

  let server: net.Server;
  let h1: http.Server | undefined;
  if (options.tls) {
    const secure = http2.createSecureServer(
      { cert: readFileSync(options.tls.certFile), key: readFileSync(options.tls.keyFile), allowHTTP1: true },
      handler,
    );
    secure.on("session", (session) => trackSession(sessions, session));
    server = secure;
  } else {
    h1 = http.createServer(handler);
    // h1 never listens itself (connections are handed to it), but its connection
    // tracking (idle closing, request and header timeouts) starts on "listening".
    h1.emit("listening");
    const h2 = http2.createServer({}, handler);
    h2.on("session", (session) => trackSession(sessions, session));
    server = net.createServer((socket) => routeBySniffing(socket, h1!, h2));
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
        await new Promise((resolve) => setTimeout(resolve, 50));
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

/** Whether the client of a request has gone (stream reset, connection closed) before it was answered. */
export function clientGone(request: http.IncomingMessage | http2.Http2ServerRequest): boolean {
  return "stream" in request ? request.stream.destroyed : request.destroyed;
}

function trackSession(sessions: Set<http2.Http2Session>, session: http2.Http2Session): void {
  sessions.add(session);
  session.once("close", () => sessions.delete(session));
}

/**
 * Hands a cleartext connection to the HTTP/2 server when it opens with the
 * HTTP/2 connection preface, else to the HTTP/1.1 server. The bytes read to
 * decide are put back first, so each server sees the whole stream.
 */
function routeBySniffing(socket: net.Socket, h1: http.Server, h2: http2.Http2Server): void {
  let received = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
    const compared = Math.min(received.length, PREFACE.length);
    const isH2 = received.subarray(0, compared).equals(PREFACE.subarray(0, compared));
    if (isH2 && received.length < PREFACE.length) return; // a prefix of the preface: read more
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
 * read through. Node 20 would also take the socket itself with `head` put back
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
