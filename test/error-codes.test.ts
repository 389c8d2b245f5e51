/**
 * Codes that must not lie, against a real server over the
 * wire, each call made by hand where a generated client cannot misbehave so:
 * bytes that are not the request message are INVALID_ARGUMENT (not INTERNAL);
 * an unknown request encoding is UNIMPLEMENTED; a request envelope flagged as
 * anything but compressed (0x02, 0x80), or compressed without an encoding, is
 * INVALID_ARGUMENT and nothing of it is stored; a client that resets its stream
 * or drops its connection mid-call is CANCELED whatever reset code it sends;
 * JSON nested past protobuf-es's recursion limit is INVALID_ARGUMENT. Every
 * such call, including those connect fails before any handler runs, gets its
 * one "rpc" log line and its grpc_server_handled_total count with that code,
 * and another client is served afterwards. Over gRPC, gRPC-Web and Connect
 * (unary and streaming), on HTTP/2 (and HTTP/1.1 for the dropped connection).
 * The embedded broker only: none of this reaches the broker.
 */
import * as http2 from "node:http2";
import * as net from "node:net";
import { Writable } from "node:stream";
import { create, fromJsonString, toBinary } from "@bufbuild/protobuf";
import type { Code } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  SendDataRequestSchema,
  SendDataStreamRequestSchema,
  StartPosition,
  WatchResultsRequestSchema,
} from "../gen/streamgate/v1/stream_service_pb.js";
import { startTestServer, streamClient, type TestServer } from "./support/server.js";

const SERVICE = "streamgate.v1.StreamService";
const STREAM = "codes";

let logged = "";
let server: TestServer;
let calls = 0;

beforeAll(async () => {
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logged += chunk.toString("utf8");
      done();
    },
  });
  // A synchronous pino writing to the stream: a call's line is there once it is logged.
  server = await startTestServer({}, "memory", pino({ level: "info" }, destination));
  await streamClient(server).startStream({ streamId: STREAM });
});
afterAll(() => server?.close());

/** The wire protocols, as a raw request names them. */
type Protocol = "grpc" | "grpc-web" | "connect";

/** What a raw HTTP/2 call got back. */
interface RawResponse {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
}

/** A message in the 5-byte envelope of gRPC, gRPC-Web and Connect streaming, with `flags`. */
function envelope(message: Uint8Array, flags = 0): Buffer {
  const header = Buffer.alloc(5);
  header[0] = flags;
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

/** A valid SendData request for {@link STREAM}. */
const sendData = () =>
  toBinary(
    SendDataRequestSchema,
    create(SendDataRequestSchema, { streamId: STREAM, payload: { case: "raw", value: new Uint8Array([1]) } }),
  );

/** Bytes that are not a protobuf message (a field tag with no value). */
const NOT_PROTOBUF = new Uint8Array([0xff, 0xff, 0xff]);

/** Headers of a `protocol` call; `streaming` picks Connect's streaming content type. */
function headersFor(protocol: Protocol, streaming: boolean, requestId: string): Record<string, string> {
  const contentType = {
    grpc: "application/grpc",
    "grpc-web": "application/grpc-web+proto",
    connect: streaming ? "application/connect+proto" : "application/proto",
  }[protocol];
  return { "content-type": contentType, te: "trailers", "x-api-key": server.apiKey!, "x-request-id": requestId };
}

/** A fresh request id, to find the call's log line. */
function nextId(): string {
  return `codes-${++calls}`;
}

/**
 * Makes one HTTP/2 call with `body`. With `reset`, the request is left open and
 * its stream reset (destroy(): RST_STREAM CANCEL, or INTERNAL_ERROR with an
 * error) once `after` resolves, or else once `body` was handed to the
 * connection: frames leave in order, so the server has the request first.
 */
async function call(
  method: string,
  headers: Record<string, string>,
  body: Uint8Array,
  reset?: { error?: Error; after?: Promise<unknown> },
): Promise<RawResponse> {
  const session = http2.connect(server.baseUrl);
  try {
    return await new Promise<RawResponse>((resolve, reject) => {
      const request = session.request({ ":method": "POST", ":path": `/${SERVICE}/${method}`, ...headers });
      const chunks: Buffer[] = [];
      const response: RawResponse = { headers: {}, trailers: {}, body: Buffer.alloc(0) };
      request.on("response", (received) => (response.headers = received));
      request.on("trailers", (received) => (response.trailers = received));
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("error", (error) => (reset ? undefined : reject(error)));
      request.on("close", () => resolve({ ...response, body: Buffer.concat(chunks) }));
      if (!reset) return request.end(body);
      request.write(body, () => {
        if (!reset.after) request.destroy(reset.error);
      });
      void reset.after?.then(() => request.destroy(reset.error));
    });
  } finally {
    session.close();
  }
}

/** The code a raw response carries, as Connect names it ("ok", "invalid_argument", ...). */
function codeOf(protocol: Protocol, streaming: boolean, response: RawResponse): string {
  if (protocol === "grpc") return status(response.trailers["grpc-status"] ?? response.headers["grpc-status"]);
  if (protocol === "grpc-web") {
    const trailer = frames(response.body).find((frame) => frame.flags === 0x80);
    const match = /grpc-status: *(\d+)/i.exec(trailer?.data.toString("latin1") ?? "");
    return status(match?.[1]);
  }
  if (!streaming) {
    if (Number(response.headers[":status"]) === 200) return "ok";
    return (JSON.parse(response.body.toString("utf8")) as { code: string }).code;
  }
  const end = frames(response.body).find((frame) => frame.flags === 0x02);
  const parsed = JSON.parse(end?.data.toString("utf8") ?? "{}") as { error?: { code: string } };
  return parsed.error?.code ?? "ok";

  function status(value: unknown): string {
    if (value === undefined) return "missing grpc-status";
    return String(value) === "0" ? "ok" : codeToString(Number(value) as Code);
  }
}

/** The enveloped frames of a body. */
function frames(body: Buffer): { flags: number; data: Buffer }[] {
  const found: { flags: number; data: Buffer }[] = [];
  for (let at = 0; at + 5 <= body.length; ) {
    const length = body.readUInt32BE(at + 1);
    found.push({ flags: body[at]!, data: body.subarray(at + 5, at + 5 + length) });
    at += 5 + length;
  }
  return found;
}

/** Polls `condition` every few milliseconds until it holds, for at most `ms`. */
async function until(condition: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The "rpc" log lines of the call with request id `id`. */
function rpcLines(id: string): Record<string, unknown>[] {
  return logged
    .split("\n")
    .filter((line) => line.includes(`"${id}"`))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line.msg === "rpc" && line.request_id === id);
}

/** grpc_server_handled_total of one method and code (go-grpc-prometheus's name, e.g. "InvalidArgument"). */
async function handled(method: string, code: string): Promise<number> {
  const text = await (await fetch(`${server.baseUrl}/metrics`)).text();
  const line = text
    .split("\n")
    .find(
      (l) =>
        l.startsWith("grpc_server_handled_total{") &&
        l.includes(`grpc_method="${method}"`) &&
        l.includes(`grpc_code="${code}"`),
    );
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
}

const GRPC_NAME: Record<string, string> = {
  invalid_argument: "InvalidArgument",
  unimplemented: "Unimplemented",
  canceled: "Canceled",
  ok: "OK",
};

/**
 * Runs `make` (one call, with request id `id`) and checks the call was logged
 * once with `code` and counted once in grpc_server_handled_total with it, and
 * that no internal error was logged.
 */
async function expectObserved(method: string, code: string, id: string, make: () => Promise<unknown>): Promise<void> {
  const before = await handled(method, GRPC_NAME[code]!);
  const internalBefore = logged.split('"internal error"').length;
  await make();
  await until(() => rpcLines(id).length > 0);
  expect(rpcLines(id)).toMatchObject([{ procedure: `${SERVICE}/${method}`, code }]);
  expect(await handled(method, GRPC_NAME[code]!)).toBe(before + 1);
  expect(logged.split('"internal error"').length).toBe(internalBefore);
}

/** How many records {@link STREAM} accepted. */
async function accepted(): Promise<bigint> {
  return (await streamClient(server).getStream({ streamId: STREAM })).counts!.accepted;
}

/** Another client's ordinary call still succeeds. */
async function expectOthersServed(): Promise<void> {
  const sent = await streamClient(server, "connect-json").sendData({
    streamId: STREAM,
    payload: { case: "raw", value: new Uint8Array([2]) },
  });
  expect(sent.cursor).not.toBe("");
}

/** A unary SendData (or a SendDataStream, which Connect frames differently) over `protocol`, with `body` as the message. */
async function expectCode(
  protocol: Protocol,
  method: "SendData" | "SendDataStream",
  body: Uint8Array,
  code: string,
  extraHeaders: Record<string, string> = {},
) {
  const streaming = method !== "SendData";
  const id = nextId();
  let response: RawResponse | undefined;
  await expectObserved(method, code, id, async () => {
    response = await call(method, { ...headersFor(protocol, streaming, id), ...extraHeaders }, body);
  });
  expect(codeOf(protocol, streaming, response!)).toBe(code);
  return response!;
}

const PROTOCOLS: Protocol[] = ["grpc", "grpc-web", "connect"];

describe("bytes that are not the request message", () => {
  it.each(PROTOCOLS)("are INVALID_ARGUMENT over %s, unary and streaming, logged and counted", async (protocol) => {
    const unary = protocol === "connect" ? NOT_PROTOBUF : envelope(NOT_PROTOBUF);
    await expectCode(protocol, "SendData", unary, "invalid_argument");
    await expectCode(protocol, "SendDataStream", envelope(NOT_PROTOBUF), "invalid_argument");
    await expectOthersServed();
  });
});

describe("an unknown request encoding", () => {
  it.each(PROTOCOLS)("is UNIMPLEMENTED over %s, naming the supported ones, logged and counted", async (protocol) => {
    const compressed = envelope(new Uint8Array([1, 2, 3]), 0x01);
    const unaryHeader = protocol === "connect" ? "content-encoding" : "grpc-encoding";
    const streamHeader = protocol === "connect" ? "connect-content-encoding" : "grpc-encoding";
    const unary = await expectCode(
      protocol,
      "SendData",
      protocol === "connect" ? new Uint8Array([1, 2, 3]) : compressed,
      "unimplemented",
      {
        [unaryHeader]: "zstd-nope",
      },
    );
    // connect 2.3 keeps protocol headers such as accept-encoding out of error metadata; the message names them.
    if (protocol === "connect")
      expect(JSON.parse(unary.body.toString("utf8")).message).toContain("supported encodings are gzip");
    await expectCode(protocol, "SendDataStream", compressed, "unimplemented", { [streamHeader]: "zstd-nope" });
    await expectOthersServed();
  });
});

describe("request envelope flags", () => {
  it.each(PROTOCOLS)(
    "other than compressed (0x02, 0x80) are INVALID_ARGUMENT over %s, and store nothing",
    async (protocol) => {
      const before = await accepted();
      for (const flags of [0x02, 0x80, 0x82]) {
        if (protocol !== "connect")
          await expectCode(protocol, "SendData", envelope(sendData(), flags), "invalid_argument");
        // A Connect stream of one good message and then a flagged one; the flagged one fails the call.
        const stream = toBinary(
          SendDataStreamRequestSchema,
          create(SendDataStreamRequestSchema, {
            streamId: STREAM,
            payload: { case: "raw", value: new Uint8Array([3]) },
          }),
        );
        const response = await expectCode(protocol, "SendDataStream", envelope(stream, flags), "invalid_argument");
        expect(frames(response.body).filter((frame) => frame.flags === 0)).toEqual([]);
      }
      expect(await accepted()).toBe(before);
      await expectOthersServed();
    },
  );

  it.each(PROTOCOLS)(
    "compressed without a request encoding is INVALID_ARGUMENT over %s, not INTERNAL",
    async (protocol) => {
      await expectCode(protocol, "SendDataStream", envelope(new Uint8Array([1]), 0x01), "invalid_argument");
      await expectOthersServed();
    },
  );
});

describe("a client that goes away mid-call", () => {
  // A reset with INTERNAL_ERROR is what connect mapped to INTERNAL: any client could raise the internal-error rate.
  const resets = [
    ["RST_STREAM CANCEL", undefined],
    ["RST_STREAM INTERNAL_ERROR", new Error("client gone")],
  ] as const;

  it.each(resets)(
    "is CANCELED with %s on a unary call whose request it never finished (gRPC)",
    async (_name, error) => {
      const id = nextId();
      // Half an envelope: the server waits for the rest.
      const half = envelope(sendData()).subarray(0, 7);
      await expectObserved("SendData", "canceled", id, () =>
        call("SendData", headersFor("grpc", false, id), half, { error }),
      );
      await expectOthersServed();
    },
  );

  it.each(resets)("is CANCELED with %s on a client stream (gRPC-Web) and a watch (gRPC)", async (_name, error) => {
    const streamId = nextId();
    const message = toBinary(
      SendDataStreamRequestSchema,
      create(SendDataStreamRequestSchema, { streamId: STREAM, payload: { case: "raw", value: new Uint8Array([4]) } }),
    );
    const before = await accepted();
    await expectObserved("SendDataStream", "canceled", streamId, () =>
      // Reset once the message was stored: the server has read it.
      call("SendDataStream", headersFor("grpc-web", true, streamId), envelope(message), {
        error,
        after: waitForAccepted(before + 1n),
      }),
    );
    const watchId = nextId();
    // From the earliest result: the server answers (headers, a result) at once, so the call is running.
    const watch = toBinary(
      WatchResultsRequestSchema,
      create(WatchResultsRequestSchema, { streamId: STREAM, startPosition: StartPosition.EARLIEST }),
    );
    let answered!: () => void;
    const headersSeen = new Promise<void>((resolve) => (answered = resolve));
    await expectObserved("WatchResults", "canceled", watchId, async () => {
      const session = http2.connect(server.baseUrl);
      const request = session.request({
        ":method": "POST",
        ":path": `/${SERVICE}/WatchResults`,
        ...headersFor("grpc", true, watchId),
      });
      request.on("response", () => answered());
      request.on("error", () => undefined);
      request.end(envelope(watch));
      await headersSeen;
      request.destroy(error);
      await new Promise((resolve) => request.once("close", resolve));
      session.close();
    });
    await expectOthersServed();
  });

  it("is CANCELED when an HTTP/1.1 Connect client drops its connection mid-body", async () => {
    const id = nextId();
    await expectObserved("SendData", "canceled", id, async () => {
      const socket = net.connect(server.port, "127.0.0.1");
      await new Promise((resolve) => socket.once("connect", resolve));
      socket.write(
        `POST /${SERVICE}/SendData HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n` +
          `x-api-key: ${server.apiKey}\r\nx-request-id: ${id}\r\ncontent-length: 100\r\n\r\n{"streamId":`,
      );
      // Gone once the request is on the wire: bytes arrive in order, so the server has the request first.
      await new Promise((resolve) => socket.write("", resolve));
      socket.destroy();
    });
    await expectOthersServed();
  });
});

/** Waits until {@link STREAM} accepted `count` records. */
async function waitForAccepted(count: bigint): Promise<void> {
  for (let tries = 0; tries < 500; tries++) {
    if ((await accepted()) >= count) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`stream never accepted ${count} records`);
}

describe("JSON nested past protobuf-es's recursion limit (100 messages)", () => {
  /** `data` nested `depth` levels deep: [[[...1...]]]. */
  const nested = (depth: number) => `${"[".repeat(depth)}1${"]".repeat(depth)}`;

  it("is INVALID_ARGUMENT in Connect JSON past 97 levels, logged and counted", async () => {
    const at = async (depth: number, code: string) => {
      const id = nextId();
      await expectObserved("SendData", code, id, async () => {
        const response = await fetch(`${server.baseUrl}/${SERVICE}/SendData`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-api-key": server.apiKey!, "x-request-id": id },
          body: `{"streamId":"${STREAM}","data":${nested(depth)}}`,
        });
        const body = (await response.json()) as { code?: string; message?: string };
        expect(body.code ?? "ok").toBe(code);
        if (code !== "ok") expect(body.message).toContain("maximum recursion depth of 100");
      });
    };
    await at(97, "ok");
    await at(98, "invalid_argument");
    await expectOthersServed();
  });

  it("is INVALID_ARGUMENT in binary protobuf (gRPC) past 49 levels, not INTERNAL", async () => {
    // In binary each JSON level is two messages (Value, then ListValue or Struct).
    const encoded = (depth: number) =>
      toBinary(
        SendDataRequestSchema,
        fromJsonString(SendDataRequestSchema, `{"streamId":"${STREAM}","data":${nested(depth)}}`),
      );
    await expectCode("grpc", "SendData", envelope(encoded(49)), "ok");
    const response = await expectCode("grpc", "SendData", envelope(encoded(50)), "invalid_argument");
    expect(decodeURIComponent(String(response.trailers["grpc-message"]))).toContain("maximum recursion depth of 100");
    await expectOthersServed();
  });
});
