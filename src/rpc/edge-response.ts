/**
 * Error answers written at the edge, before connect has seen the request and
 * without reading its body: the same bytes connect itself would send for the
 * error, in the caller's protocol, built with connect's own protocol helpers.
 *
 * The body is never read. HTTP/2: the stream is reset once the response is
 * complete (src/rpc/listener.ts, endUnreadRequestAfterResponse). HTTP/1.1: the
 * response says `connection: close`, so the unread body is never parsed as a
 * next request, and the socket closes after the answer.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { ConnectError } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  contentTypeStreamJson,
  contentTypeStreamProto,
  contentTypeUnaryJson,
  createEndStreamSerialization,
  endStreamFlag,
  errorToJsonBytes,
  parseContentType as parseConnectContentType,
} from "@connectrpc/connect/protocol-connect";
import {
  contentTypeJson as grpcContentTypeJson,
  contentTypeProto as grpcContentTypeProto,
  parseContentType as parseGrpcContentType,
  setTrailerStatus,
} from "@connectrpc/connect/protocol-grpc";
import {
  contentTypeJson as grpcWebContentTypeJson,
  contentTypeProto as grpcWebContentTypeProto,
  parseContentType as parseGrpcWebContentType,
} from "@connectrpc/connect/protocol-grpc-web";

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;

/** The protocol of a call, as far as its error answer is concerned, and whether its messages are binary. */
export interface Wire {
  protocol: "grpc" | "grpc-web" | "connect" | "connect-stream";
  binary: boolean;
}

/**
 * The protocol of `request` from its method and content type, or undefined
 * when connect would refuse it from its headers anyway (a content type it does
 * not serve, such as gRPC-Web text, or a method other than POST and GET).
 */
export function wireOf(request: Request): Wire | undefined {
  // Connect's GET form of a unary call: its errors are Connect unary errors (JSON).
  if (request.method === "GET") return CONNECT_GET;
  if (request.method !== "POST") return undefined;
  const type = request.headers["content-type"] ?? "";
  // Every call asks this: the answers for the few content types clients send are kept.
  let wire = wires.get(type);
  if (wire === undefined && !wires.has(type)) {
    wire = wireOfContentType(type);
    if (wires.size < MAX_KEPT_WIRES) wires.set(type, wire);
  }
  return wire;
}

const CONNECT_GET: Wire = { protocol: "connect", binary: false };
/** Content types whose wire is kept: they are the client's to choose, so only so many. */
const MAX_KEPT_WIRES = 64;
const wires = new Map<string, Wire | undefined>();

function wireOfContentType(type: string): Wire | undefined {
  const grpc = parseGrpcContentType(type);
  if (grpc) return { protocol: "grpc", binary: grpc.binary };
  const grpcWeb = parseGrpcWebContentType(type);
  if (grpcWeb) return grpcWeb.text ? undefined : { protocol: "grpc-web", binary: grpcWeb.binary };
  const connect = parseConnectContentType(type);
  if (connect) return { protocol: connect.stream ? "connect-stream" : "connect", binary: connect.binary };
  return undefined;
}

/** `headers` as Node's header object. */
function nodeHeaders(headers: Headers): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  headers.forEach((value, key) => (out[key] = value));
  return out;
}

/** Serializes the Connect end-stream message (JSON whatever the codec, as the protocol says). */
const endStream = createEndStreamSerialization(undefined);

/**
 * Answers `request` with `error` in `wire`'s protocol, without reading the
 * request body: gRPC as HTTP 200 with the status in trailers (as connect
 * sends an error before any message), gRPC-Web with the status in the headers
 * (trailers-only), Connect unary as the HTTP status and JSON error body,
 * Connect streaming as HTTP 200 and an end-stream message carrying the error.
 * Headers already set on `response` (CORS, x-request-id) are kept.
 */
export function writeEdgeError(request: Request, response: Response, wire: Wire, error: ConnectError): void {
  // The unread body must not be taken for the next request on this connection.
  if (request.httpVersionMajor === 1) response.setHeader("connection", "close");
  const res = response as ServerResponse; // both response types have the calls used here
  switch (wire.protocol) {
    case "grpc": {
      res.writeHead(200, { "content-type": wire.binary ? grpcContentTypeProto : grpcContentTypeJson });
      res.addTrailers(nodeHeaders(setTrailerStatus(new Headers(), error)));
      res.end();
      return;
    }
    case "grpc-web": {
      const headers = nodeHeaders(setTrailerStatus(new Headers(), error));
      res.writeHead(200, {
        ...headers,
        "content-type": wire.binary ? grpcWebContentTypeProto : grpcWebContentTypeJson,
      });
      res.end();
      return;
    }
    case "connect": {
      const body = errorToJsonBytes(error, undefined);
      res.writeHead(codeToHttpStatus(error.code), {
        ...nodeHeaders(error.metadata),
        "content-type": contentTypeUnaryJson,
        "content-length": String(body.byteLength),
      });
      res.end(body);
      return;
    }
    case "connect-stream": {
      const body = encodeEnvelope(endStreamFlag, endStream.serialize({ metadata: new Headers(), error }));
      res.writeHead(200, { "content-type": wire.binary ? contentTypeStreamProto : contentTypeStreamJson });
      res.end(body);
      return;
    }
  }
}
