/**
 * Calls that a generated client would never make: hand-written Connect JSON
 * bodies over fetch, hand-encoded protobuf over Connect and gRPC, and the same
 * JSON request sent over either Connect JSON or gRPC, each reduced to one
 * outcome (code name, message, response) so a test can compare transports.
 */
import * as http2 from "node:http2";
import { fromJson, type JsonObject, type JsonValue, toJson } from "@bufbuild/protobuf";
import { ConnectError, createClient } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { StreamService } from "../../gen/streamgate/v1/stream_service_pb.js";
import { apiKeyHeader, authHeaders, type TestServer, TRANSPORTS } from "./server.js";

/** How a call ended: "ok" with its response as JSON, or an error's code name and message. */
export interface Outcome {
  /** "ok" or a Connect code name such as "invalid_argument". */
  code: string;
  /** The error message ("" when ok). */
  message: string;
  /** The response as proto3 JSON (Connect JSON and gRPC calls that succeeded). */
  response?: JsonValue;
  /** The HTTP status (fetch calls only). */
  status?: number;
}

/** A StreamService method name, as the generated client spells it. */
export type MethodName = keyof typeof StreamService.method;

/** Sends a request given as proto3 JSON and returns its outcome. */
export type JsonCaller = (method: MethodName, request: JsonObject) => Promise<Outcome>;

/**
 * Callers for unary methods over Connect JSON (fetch, as curl would send it)
 * and over gRPC (the generated client, with the JSON turned into a message
 * first), so one table of requests runs over both.
 */
export function jsonCallers(server: TestServer): Record<"connect-json" | "grpc", JsonCaller> {
  const grpc = createClient(
    StreamService,
    TRANSPORTS.grpc!(server.baseUrl, server.apiKey === undefined ? [] : [apiKeyHeader(server.apiKey)]),
  );
  return {
    "connect-json": (method, request) => postJson(server, method, JSON.stringify(request)),
    grpc: async (method, request) => {
      const desc = StreamService.method[method];
      const call = grpc[method] as (message: unknown) => Promise<never>;
      try {
        const response = await call(fromJson(desc.input, request));
        return { code: "ok", message: "", response: toJson(desc.output, response) };
      } catch (error) {
        return failed(error);
      }
    },
  };
}

/** POSTs `body` as a Connect unary JSON request (content-type application/json), as curl would. */
export async function postJson(server: TestServer, method: MethodName, body: string): Promise<Outcome> {
  return post(server, method, "application/json", body);
}

/** POSTs `bytes` as a Connect unary binary request (content-type application/proto). */
export async function postProto(server: TestServer, method: MethodName, bytes: Uint8Array): Promise<Outcome> {
  return post(server, method, "application/proto", bytes);
}

async function post(server: TestServer, method: MethodName, contentType: string, body: string | Uint8Array) {
  const response = await fetch(`${server.baseUrl}${path(method)}`, {
    method: "POST",
    headers: { "content-type": contentType, ...authHeaders(server) },
    body,
  });
  const status = response.status;
  if (contentType === "application/proto" && status === 200) {
    await response.arrayBuffer();
    return { code: "ok", message: "", status };
  }
  const json = (await response.json()) as { code?: string; message?: string };
  return status === 200
    ? { code: "ok", message: "", status, response: json as JsonValue }
    : { code: json.code ?? "", message: json.message ?? "", status };
}

/** The outcome of a gRPC call made by hand, with its response messages still encoded. */
export interface GrpcOutcome extends Outcome {
  /** The response messages, unframed. */
  messages: Uint8Array[];
}

/**
 * Makes one gRPC call over HTTP/2 with hand-encoded request messages (each
 * framed in the 5-byte envelope), for input a generated client cannot produce.
 * `method` names a StreamService method or is a full path ("/pkg.Service/Method").
 */
export async function grpcRaw(
  server: TestServer,
  method: MethodName | `/${string}`,
  messages: Uint8Array[],
): Promise<GrpcOutcome> {
  const session = http2.connect(server.baseUrl);
  try {
    return await new Promise<GrpcOutcome>((resolve, reject) => {
      const request = session.request({
        ":method": "POST",
        ":path": method.startsWith("/") ? method : path(method as MethodName),
        "content-type": "application/grpc",
        te: "trailers",
        ...authHeaders(server),
      });
      const chunks: Buffer[] = [];
      let status: string | undefined;
      let grpcMessage = "";
      const readStatus = (headers: http2.IncomingHttpHeaders) => {
        if (headers["grpc-status"] !== undefined) {
          status = String(headers["grpc-status"]);
          grpcMessage = decodeURIComponent(String(headers["grpc-message"] ?? ""));
        }
      };
      request.on("response", readStatus); // a trailers-only response carries the status here
      request.on("trailers", readStatus);
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("error", reject);
      request.on("end", () => {
        const code =
          status === undefined ? "missing grpc-status" : status === "0" ? "ok" : codeToString(Number(status));
        resolve({ code, message: grpcMessage, messages: unframe(Buffer.concat(chunks)) });
      });
      request.end(Buffer.concat(messages.map(frame)));
    });
  } finally {
    session.close();
  }
}

function frame(message: Uint8Array): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

function unframe(body: Buffer): Uint8Array[] {
  const messages: Uint8Array[] = [];
  for (let at = 0; at + 5 <= body.length; ) {
    const length = body.readUInt32BE(at + 1);
    messages.push(body.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
  return messages;
}

function path(method: MethodName): string {
  return `/${StreamService.typeName}/${StreamService.method[method].name}`;
}

function failed(error: unknown): Outcome {
  const connectError = ConnectError.from(error);
  return { code: codeToString(connectError.code), message: connectError.rawMessage };
}

/**
 * Protobuf wire encoding by hand, for fields holding what an encoder refuses
 * to write (invalid UTF-8). Concatenate fields to build a message.
 */
export const wire = {
  /** A length-delimited field (string, bytes, message, map entry). */
  bytes(field: number, value: Uint8Array | number[]): Uint8Array {
    const body = Uint8Array.from(value);
    return Uint8Array.from([...varint((field << 3) | 2), ...varint(body.length), ...body]);
  },
  /** A string field with valid UTF-8 text. */
  string(field: number, value: string): Uint8Array {
    return wire.bytes(field, new TextEncoder().encode(value));
  },
  /** Concatenates encoded fields into one message. */
  message(...fields: Uint8Array[]): Uint8Array {
    return Uint8Array.from(fields.flatMap((field) => [...field]));
  },
};

function varint(value: number): number[] {
  const bytes: number[] = [];
  while (value > 0x7f) {
    bytes.push((value & 0x7f) | 0x80);
    value >>>= 7;
  }
  bytes.push(value);
  return bytes;
}
