/**
 * One JSON log line per RPC: procedure, code, duration, client, peer and request id,
 * for unary calls, failures and streams; the client's well-formed x-request-id
 * is used and echoed as a response header (streams too, as a header, not a
 * trailer), a missing or malformed one is replaced by a generated UUID; and
 * credentials sent as headers never reach the log.
 */
import { randomUUID } from "node:crypto";
import * as http2 from "node:http2";
import { Writable } from "node:stream";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { pino } from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { SendDataStreamRequestSchema, StreamService } from "../gen/streamgate/v1/stream_service_pb.js";
import { type App, startApp } from "../src/app/app.js";
import { loadConfig } from "../src/config/config.js";
import { apiKeyHeader, TEST_API_KEY, TRANSPORTS } from "./support/server.js";

/** The key the credentials test sends: a second client, "log-client". */
const SECRET_KEY = "secret-key-456";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** What the app logged, as text and as parsed JSON lines. */
let logged = "";
const lines = () =>
  logged
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
/** The per-RPC lines of `method`. */
const rpcLines = (method: string) =>
  lines().filter((line) => line.msg === "rpc" && line.procedure === `streamgate.v1.StreamService/${method}`);

let app: App;
let baseUrl: string;

beforeAll(async () => {
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logged += chunk.toString("utf8");
      done();
    },
  });
  const config = loadConfig({
    PORT: "0",
    HOST: "127.0.0.1",
    API_KEYS: `test:${TEST_API_KEY},log-client:${SECRET_KEY}`,
  });
  // A synchronous pino writing to the stream: each line is there once the call it describes ended.
  app = await startApp(config, pino({ level: "info" }, destination));
  baseUrl = `http://127.0.0.1:${app.port}`;
});
afterAll(() => app?.close());
beforeEach(() => {
  logged = "";
});

describe.each(["grpc", "connect-json"])("request logs over %s", (transport) => {
  const client = () => createClient(StreamService, TRANSPORTS[transport]!(baseUrl, [apiKeyHeader(TEST_API_KEY)]));

  it("logs procedure, code, duration, client, tenant, peer and the client's request id, and echoes the id", async () => {
    let echoed: string | null = null;
    await client().startStream(
      { streamId: `log-${transport}` },
      {
        headers: { "x-request-id": `req.${transport}-1_A` },
        onHeader: (header) => (echoed = header.get("x-request-id")),
      },
    );
    expect(echoed).toBe(`req.${transport}-1_A`);
    const [line, ...others] = rpcLines("StartStream");
    expect(others).toHaveLength(0);
    expect(line).toMatchObject({
      level: 30,
      code: "ok",
      client: "test",
      tenant: "test",
      peer: "127.0.0.1",
      request_id: `req.${transport}-1_A`,
    });
    expect(typeof line!.duration_ms).toBe("number");
    expect(line!.duration_ms as number).toBeGreaterThanOrEqual(0);
  });

  it("generates a request id when none or a malformed one is given, and returns it", async () => {
    for (const [index, given] of [undefined, "has space", "x".repeat(129), "semi;colon"].entries()) {
      logged = "";
      let echoed: string | null = null;
      await client().startStream(
        { streamId: `gen-${transport}-${index}` },
        {
          headers: given === undefined ? {} : { "x-request-id": given },
          onHeader: (header) => (echoed = header.get("x-request-id")),
        },
      );
      expect(echoed, String(given)).toMatch(UUID);
      expect(rpcLines("StartStream")).toMatchObject([{ code: "ok", request_id: echoed }]);
    }
  });

  it("logs a failed call with its code, and returns the id with the error", async () => {
    const error = await client()
      .getStream({ streamId: "nope" }, { headers: { "x-request-id": "failing-1" } })
      .then(
        () => undefined,
        (caught: unknown) => ConnectError.from(caught),
      );
    expect(error?.code).toBe(Code.NotFound);
    expect(error?.metadata.get("x-request-id")).toBe("failing-1");
    expect(rpcLines("GetStream")).toMatchObject([{ code: "not_found", request_id: "failing-1", peer: "127.0.0.1" }]);
  });

  it("logs a server stream once, when it ends, with the id sent as a header", async () => {
    const streamId = `watched-${transport}`;
    await client().startStream({ streamId });
    let header: string | null = null;
    let trailer: string | null = null;
    const watch = client().watchResults(
      { streamId },
      {
        headers: { "x-request-id": `watch-${transport}` },
        onHeader: (h) => (header = h.get("x-request-id")),
        onTrailer: (t) => (trailer = t.get("x-request-id")),
      },
    );
    const ended = (async () => {
      for await (const _ of watch);
    })();
    // Closing the stream ends the watch with OK.
    await client().closeStream({ streamId });
    await ended;
    expect(header).toBe(`watch-${transport}`);
    expect(trailer).toBeNull();
    expect(rpcLines("WatchResults")).toMatchObject([{ code: "ok", request_id: `watch-${transport}` }]);
  });
});

describe("credentials in requests", () => {
  it("never reach the log, on success or failure", async () => {
    const client = createClient(StreamService, TRANSPORTS.grpc!(baseUrl));
    const headers = { authorization: "Bearer secret-token-123", "x-api-key": SECRET_KEY };
    await client.startStream({ streamId: "secret-ok" }, { headers });
    await expect(client.getStream({ streamId: "secret-missing" }, { headers })).rejects.toSatisfy(
      (error) => ConnectError.from(error).code === Code.NotFound,
    );
    // The calls were logged (so the log was captured), without the secrets.
    expect(rpcLines("StartStream")).toHaveLength(1);
    expect(rpcLines("GetStream")).toHaveLength(1);
    expect(logged).not.toContain("secret-token-123");
    expect(logged).not.toContain(SECRET_KEY);
    // The key's name is what identifies the client.
    expect(rpcLines("StartStream")).toMatchObject([{ client: "log-client" }]);
  });
});

describe("a client that goes away mid-stream", () => {
  // Raw HTTP/2, so the client leaves exactly as described: its request stream
  // is never ended (no END_STREAM) before it resets the stream (RST_STREAM
  // CANCEL, which Node's client sends without END_STREAM only when aborted
  // through a signal) or drops the connection.
  it.each([
    ["resets the stream", (_stream: http2.ClientHttp2Stream, abort: AbortController) => abort.abort()],
    ["drops the connection", (stream: http2.ClientHttp2Stream) => stream.session?.destroy()],
  ])("%s: the call is logged as canceled, not as OK or an internal error", async (_, leave) => {
    const streamId = `abandoned-${randomUUID()}`;
    const client = createClient(StreamService, TRANSPORTS.grpc!(baseUrl, [apiKeyHeader(TEST_API_KEY)]));
    await client.startStream({ streamId });
    const session = http2.connect(baseUrl);
    const abort = new AbortController();
    const stream = session.request(
      {
        ":method": "POST",
        ":path": "/streamgate.v1.StreamService/SendDataStream",
        "content-type": "application/grpc",
        te: "trailers",
        "x-api-key": TEST_API_KEY,
      },
      { signal: abort.signal },
    );
    stream.on("error", () => undefined);
    const message = toBinary(
      SendDataStreamRequestSchema,
      create(SendDataStreamRequestSchema, {
        streamId,
        payload: { case: "raw", value: new Uint8Array([1]) },
      }),
    );
    const envelope = Buffer.alloc(5 + message.length);
    envelope.writeUInt32BE(message.length, 1);
    envelope.set(message, 5);
    stream.write(envelope);
    // The record reached the server (it is counted) before the client leaves.
    for (;;) {
      const { counts } = await client.getStream({ streamId });
      if (counts && counts.accepted > 0n) break;
    }
    leave(stream, abort);
    // The server's line for the call, once it has seen the stream end.
    for (;;) {
      if (rpcLines("SendDataStream").length > 0) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    session.destroy();
    expect(rpcLines("SendDataStream")[0]).toMatchObject({ code: "canceled" });
    expect(lines().filter((line) => line.level === 50)).toEqual([]);
  });
});
