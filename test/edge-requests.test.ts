/**
 * The edge's request bounds, on the transport: what one HTTP/2 connection
 * may hold of the server through its requests. Concurrent streams are capped
 * (SETTINGS_MAX_CONCURRENT_STREAMS), a request message begun must arrive whole
 * within REQUEST_BODY_TIMEOUT_MS, and the bytes of messages not yet whole are
 * bounded per connection (CONNECTION_MAX_BUFFERED_BYTES). Each test makes the
 * attack with a valid key (the credential check before the body is another
 * bound) against a real server, checks the safe outcome and its count in
 * streamgate_refusals_total{reason}, and that a normal client is still served.
 */
import * as http2 from "node:http2";
import * as net from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SendDataStreamRequestSchema } from "../gen/streamgate/v1/stream_service_pb.js";
import { FLAG, FRAME, frame, headersFrame, PREFACE, RawH2, settingsOf } from "./support/h2-frames.js";
import { freePort } from "./support/ports.js";
import { startTestServer, streamClient, TEST_API_KEY, type TestServer } from "./support/server.js";

const MAX_STREAMS = 4;
const BODY_TIMEOUT_MS = 400;
const MAX_BUFFERED = 256 * 1024;

let server: TestServer;
let metricsPort: number;
beforeAll(async () => {
  metricsPort = await freePort();
  server = await startTestServer({
    METRICS_PORT: String(metricsPort),
    HTTP2_MAX_CONCURRENT_STREAMS: String(MAX_STREAMS),
    REQUEST_BODY_TIMEOUT_MS: String(BODY_TIMEOUT_MS),
    CONNECTION_MAX_BUFFERED_BYTES: String(MAX_BUFFERED),
  });
  await streamClient(server).startStream({ streamId: "edge" });
});
afterAll(() => server.close());

async function refusals(reason: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`streamgate_refusals_total{reason="${reason}"}`));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

/** A normal client's SendData succeeds. */
async function normalCallSucceeds(): Promise<void> {
  const sent = await streamClient(server).sendData({
    streamId: "edge",
    payload: { case: "raw", value: new Uint8Array([1]) },
  });
  expect(sent.cursor).toMatch(/\S/);
}

const grpcHeaders = (method: string) => ({
  ":method": "POST",
  ":scheme": "http",
  ":authority": "127.0.0.1",
  ":path": `/streamgate.v1.StreamService/${method}`,
  "content-type": "application/grpc",
  te: "trailers",
  "x-api-key": TEST_API_KEY,
});

/** A gRPC envelope header announcing a message of `length` bytes. */
function envelopeHeader(length: number): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(length, 1);
  return header;
}

/** The RST_STREAM code a client stream was closed with (0 for a normal close). */
const closeCode = (stream: http2.ClientHttp2Stream) =>
  new Promise<number>((resolve) =>
    stream.closed ? resolve(stream.rstCode ?? 0) : stream.once("close", () => resolve(stream.rstCode ?? 0)),
  );

describe("concurrent streams", () => {
  it("advertises HTTP2_MAX_CONCURRENT_STREAMS and refuses a stream over it", async () => {
    const raw = await RawH2.connect(server.port);
    try {
      raw.write(PREFACE, frame(FRAME.SETTINGS, 0, 0));
      const settings = await raw.frame((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0);
      expect(settingsOf(settings.payload).get(0x3)).toBe(MAX_STREAMS);
      // One stream more than allowed, each left open (a request body never sent).
      const ids = Array.from({ length: MAX_STREAMS + 1 }, (_, i) => 1 + 2 * i);
      raw.write(...ids.map((id) => headersFrame(id, grpcHeaders("SendData"))));
      const refused = await raw.frame((f) => f.type === FRAME.RST_STREAM || f.type === FRAME.GOAWAY);
      expect(refused.type).toBe(FRAME.RST_STREAM);
      expect(refused.streamId).toBe(ids[MAX_STREAMS]);
      expect(refused.payload.readUInt32BE(0)).toBe(http2.constants.NGHTTP2_REFUSED_STREAM);
    } finally {
      raw.close();
    }
    await normalCallSucceeds();
  });
});

describe("request body deadline", () => {
  it("resets a request whose message is not whole within REQUEST_BODY_TIMEOUT_MS, not a client stream pausing between messages", async () => {
    const before = await refusals("request_body_timeout");
    const session = http2.connect(server.baseUrl);
    session.on("error", () => undefined);
    try {
      // A client stream that sends one whole message, then pauses.
      const pausing = session.request(grpcHeaders("SendDataStream"), { endStream: false });
      pausing.on("error", () => undefined);
      const message = Buffer.from(
        toBinary(
          SendDataStreamRequestSchema,
          create(SendDataStreamRequestSchema, {
            streamId: "edge",
            payload: { case: "raw", value: new Uint8Array([2]) },
          }),
        ),
      );
      pausing.write(Buffer.concat([envelopeHeader(message.length), message]));
      // A unary gRPC call whose message stops half way.
      const slowGrpc = session.request(grpcHeaders("SendData"), { endStream: false });
      slowGrpc.on("error", () => undefined);
      slowGrpc.write(Buffer.concat([envelopeHeader(1000), Buffer.alloc(10)]));
      // A Connect unary call whose body stops half way (the whole body is the message).
      const slowConnect = session.request(
        { ...grpcHeaders("SendData"), "content-type": "application/proto", "connect-protocol-version": "1" },
        { endStream: false },
      );
      slowConnect.on("error", () => undefined);
      slowConnect.write(Buffer.from([0x0a]));

      expect(await closeCode(slowGrpc)).toBe(http2.constants.NGHTTP2_CANCEL);
      expect(await closeCode(slowConnect)).toBe(http2.constants.NGHTTP2_CANCEL);
      expect(await refusals("request_body_timeout")).toBe(before + 2);

      // The pausing stream, older than both, was left alone; it finishes normally.
      expect(pausing.closed).toBe(false);
      const status = new Promise<string | undefined>((resolve) =>
        pausing.once("trailers", (trailers) => resolve(trailers["grpc-status"] as string | undefined)),
      );
      pausing.resume();
      pausing.end(Buffer.concat([envelopeHeader(message.length), message]));
      expect(await status).toBe("0");
    } finally {
      session.destroy();
    }
    await normalCallSucceeds();
  });
});

describe("bytes held per connection", () => {
  it("resets the stream whose unfinished message takes a connection over CONNECTION_MAX_BUFFERED_BYTES", async () => {
    const before = await refusals("connection_buffer");
    const session = http2.connect(server.baseUrl);
    session.on("error", () => undefined);
    try {
      // Three calls each announce a 900 KB message and send 100 KB of it: 300 KB together, over 256 KB.
      const streams = Array.from({ length: 3 }, () => {
        const stream = session.request(grpcHeaders("SendData"), { endStream: false });
        stream.on("error", () => undefined);
        stream.write(Buffer.concat([envelopeHeader(900_000), Buffer.alloc(100_000)]));
        return stream;
      });
      const firstReset = await Promise.race(streams.map(async (stream) => ({ stream, code: await closeCode(stream) })));
      expect(firstReset.code).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      expect(await refusals("connection_buffer")).toBe(before + 1);
      // Only that one: the other two hold 200 KB, under the bound.
      await normalCallSucceeds();
      for (const stream of streams) if (stream !== firstReset.stream) expect(stream.closed).toBe(false);
    } finally {
      session.destroy();
    }
    // Released when their connection closes: a new connection may hold as much again.
    await normalCallSucceeds();
  });
});

describe("HTTP/1.1 request deadline", () => {
  it("answers 408 to an HTTP/1.1 request whose body is not whole within REQUEST_BODY_TIMEOUT_MS", async () => {
    const before = await refusals("request_body_timeout");
    const socket = net.connect(server.port, "127.0.0.1");
    socket.on("error", () => undefined);
    let answer = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (answer += chunk));
    const ended = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    // A Connect unary call announcing 1000 bytes of body and sending 10.
    socket.write(
      "POST /streamgate.v1.StreamService/SendData HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/proto\r\n" +
        `connect-protocol-version: 1\r\nx-api-key: ${TEST_API_KEY}\r\ncontent-length: 1000\r\n\r\n0123456789`,
    );
    await ended;
    expect(answer.split("\r\n")[0]).toBe("HTTP/1.1 408 Request Timeout");
    expect(await refusals("request_body_timeout")).toBe(before + 1);
    await normalCallSucceeds();
  });
});
