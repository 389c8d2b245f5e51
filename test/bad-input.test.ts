/**
 * Bad input against a real server, over Connect JSON (fetch, as curl sends it)
 * and gRPC: malformed JSON, wrong types, unknown fields, empty and oversized
 * payloads, invalid UTF-8 and 10 KB ids each get their code (INVALID_ARGUMENT,
 * or RESOURCE_EXHAUSTED from the RPC layer for a body far over the limit, whose
 * unread gRPC stream the server then ends), store nothing, and leave the
 * server serving. 1,000 concurrent StartStreams with one id create the stream
 * exactly once. On the embedded broker and on Kafka (no test here needs a
 * broker that fails on demand).
 */
import * as http2 from "node:http2";
import { create, fromBinary, type JsonObject, toBinary } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  SendDataRequestSchema,
  SendDataStreamRequestSchema,
  SendDataStreamResponseSchema,
  StartPosition,
  type StreamService,
} from "../gen/streamgate/v1/stream_service_pb.js";
import {
  grpcRaw,
  type JsonCaller,
  jsonCallers,
  type Outcome,
  postJson,
  postProto,
  wire,
} from "./support/bad-input-wire.js";
import { authHeaders, BROKERS, collect, startTestServer, streamClient, type TestServer } from "./support/server.js";

const LIMIT = 1024;
const encoder = new TextEncoder();

// The server of the broker being tested (each broker's describe block below starts its own), and its clients.
let server: TestServer;
let client: Client<typeof StreamService>;
let callers: Record<"connect-json" | "grpc", JsonCaller>;

/** Starts a stream holding one good record, "good". */
async function streamWithOneGoodRecord(streamId: string): Promise<string> {
  await client.startStream({ streamId });
  await client.sendData({ streamId, payload: { case: "raw", value: encoder.encode("good") } });
  return streamId;
}

/**
 * Checks that `streamId` stored exactly the `good` records (raw text), by its
 * counts and by closing it and replaying it from EARLIEST; then that the server
 * still starts streams and takes records.
 */
async function expectOnlyGoodStoredAndServing(streamId: string, good = ["good"]): Promise<void> {
  const { counts } = await client.getStream({ streamId });
  expect(counts?.accepted).toBe(BigInt(good.length));
  await client.closeStream({ streamId });
  const replay = await collect(client.watchResults({ streamId, startPosition: StartPosition.EARLIEST }));
  expect(replay.map(({ result }) => new TextDecoder().decode(result!.payload.value as Uint8Array))).toEqual(good);

  const fresh = `${streamId}-after`;
  expect((await client.startStream({ streamId: fresh })).created).toBe(true);
  const sent = await client.sendData({ streamId: fresh, payload: { case: "raw", value: encoder.encode("after") } });
  expect(sent.cursor).toMatch(/^i-\d+-\d+$/);
}

function expectInvalid(outcome: Outcome, ...mentions: string[]): void {
  expect(outcome.code).toBe("invalid_argument");
  if (outcome.status !== undefined) expect(outcome.status).toBe(400);
  for (const mention of mentions) expect(outcome.message).toContain(mention);
}

const base64 = (bytes: number) => Buffer.alloc(bytes, 7).toString("base64");

describe.each(BROKERS)("on the %s broker", (kind) => {
  beforeAll(async () => {
    server = await startTestServer({ MAX_PAYLOAD_BYTES: String(LIMIT) }, kind);
    client = streamClient(server, "grpc");
    callers = jsonCallers(server);
  });
  afterAll(() => server?.close());

  describe("JSON the proto cannot take (Connect JSON over fetch)", () => {
    it("refuses a malformed body", async () => {
      const streamId = await streamWithOneGoodRecord("bad-json");
      expectInvalid(await postJson(server, "sendData", "{nope"));
      expectInvalid(await postJson(server, "sendData", `{"streamId":"${streamId}","raw":"eA==",`));
      expectInvalid(await postJson(server, "sendData", ""));
      await expectOnlyGoodStoredAndServing(streamId);
    });

    it("refuses wrong types, naming the field", async () => {
      const streamId = await streamWithOneGoodRecord("bad-types");
      expectInvalid(await postJson(server, "sendData", `{"streamId":5,"raw":"eA=="}`), "stream_id");
      // An object, and text that is not base64, where bytes belong. ("data" itself is valid base64.)
      expectInvalid(await postJson(server, "sendData", `{"streamId":"${streamId}","raw":{"temp":21.5}}`), "raw");
      expectInvalid(await postJson(server, "sendData", `{"streamId":"${streamId}","raw":"!!!"}`), "raw");
      expectInvalid(
        await postJson(server, "sendData", `{"streamId":"${streamId}","headers":["a"],"raw":"eA=="}`),
        "headers",
      );
      const rate = await postJson(
        server,
        "startStream",
        `{"streamId":"bad-rate","processing":{"ratePerSecond":"fast"}}`,
      );
      expectInvalid(rate, "rate_per_second");
      await expect(client.getStream({ streamId: "bad-rate" })).rejects.toMatchObject({ code: Code.NotFound });
      await expectOnlyGoodStoredAndServing(streamId);
    });

    it("refuses unknown fields, naming them", async () => {
      const streamId = await streamWithOneGoodRecord("unknown-fields");
      expectInvalid(await postJson(server, "sendData", `{"streamId":"${streamId}","raw":"eA==","bogus":1}`), "bogus");
      const nested = `{"streamId":"unknown-nested","processing":{"filter":"true","bogusOption":true}}`;
      expectInvalid(await postJson(server, "startStream", nested), "bogusOption");
      await expect(client.getStream({ streamId: "unknown-nested" })).rejects.toMatchObject({ code: Code.NotFound });
      await expectOnlyGoodStoredAndServing(streamId);
    });

    it("refuses a lone surrogate escape, which UTF-8 cannot encode", async () => {
      const streamId = await streamWithOneGoodRecord("json-surrogate");
      expectInvalid(
        await postJson(server, "sendData", `{"streamId":"${streamId}","eventId":"\\udc80","raw":"eA=="}`),
        "event_id",
      );
      // Inside data (google.protobuf.Value) the JSON parser takes them; validation refuses them.
      expectInvalid(await postJson(server, "sendData", `{"streamId":"${streamId}","data":{"\\ud800":1}}`), "data");
      expectInvalid(await postJson(server, "sendData", `{"streamId":"${streamId}","data":["\\udc80"]}`), "data");
      await expectOnlyGoodStoredAndServing(streamId);
    });
  });

  describe.each(["connect-json", "grpc"] as const)("bad requests over %s", (transport) => {
    const call = (method: "sendData" | "startStream" | "getStream", request: JsonObject) =>
      callers[transport](method, request);

    it("refuses empty payloads and an empty stream id", async () => {
      const streamId = await streamWithOneGoodRecord(`empty-${transport}`);
      expectInvalid(await call("sendData", { streamId }), "payload is required");
      expectInvalid(await call("sendData", { streamId, raw: "" }), "raw is empty");
      expectInvalid(await call("sendData", { streamId, data: null }), "data is empty");
      expectInvalid(await call("sendData", { streamId: "", raw: "eA==" }), "stream_id is required");
      // The three payloads reached the stream and were counted as rejected; nothing was stored.
      expect((await client.getStream({ streamId })).counts?.rejected).toBe(3n);
      await expectOnlyGoodStoredAndServing(streamId);
    });

    it(`refuses payloads over MAX_PAYLOAD_BYTES=${LIMIT}, stating the limit, and takes one exactly at it`, async () => {
      const streamId = await streamWithOneGoodRecord(`limit-${transport}`);
      const rawOver = await call("sendData", { streamId, raw: base64(LIMIT + 1) });
      expectInvalid(rawOver, `${LIMIT + 1} bytes`, `limit of ${LIMIT} bytes`, "MAX_PAYLOAD_BYTES");
      // JSON data is measured as its JSON text: a string of n characters is n + 2 bytes.
      const dataOver = await call("sendData", { streamId, data: "x".repeat(LIMIT - 1) });
      expectInvalid(dataOver, `${LIMIT + 1} bytes`, `limit of ${LIMIT} bytes`);

      expect((await call("sendData", { streamId, raw: base64(LIMIT) })).code).toBe("ok");
      expect((await call("sendData", { streamId, data: "x".repeat(LIMIT - 2) })).code).toBe("ok");
      expect((await client.getStream({ streamId })).counts).toMatchObject({ accepted: 3n, rejected: 2n });
    });

    it("leaves a body far over the limit to the RPC layer: RESOURCE_EXHAUSTED, and serves on", async () => {
      const streamId = await streamWithOneGoodRecord(`huge-${transport}`);
      const huge = await call("sendData", { streamId, raw: base64(LIMIT + 64 * 1024 + 1) });
      expect(huge.code).toBe("resource_exhausted");
      expect(huge.message).toContain("readMaxBytes");
      if (huge.status !== undefined) expect(huge.status).toBe(429);
      await expectOnlyGoodStoredAndServing(streamId);
    });

    it("refuses 10 KB ids and names without echoing them", async () => {
      const streamId = await streamWithOneGoodRecord(`long-ids-${transport}`);
      const long = "a".repeat(10 * 1024);
      const outcomes = [
        await call("startStream", { streamId: long }),
        await call("sendData", { streamId: long, raw: "eA==" }),
        await call("getStream", { streamId: long }),
        await call("sendData", { streamId, eventId: long, raw: "eA==" }),
        await call("sendData", { streamId, headers: { [long]: "v" }, raw: "eA==" }),
        await call("startStream", { streamId: `${streamId}-labels`, labels: { [long]: "v" } }),
      ];
      for (const outcome of outcomes) {
        expectInvalid(outcome);
        expect(outcome.message.length).toBeLessThan(300);
      }
      const named = outcomes.map((o) => o.message.split(" ")[0]);
      expect(named).toEqual(["stream_id", "stream_id", "stream_id", "event_id", "header", "label"]);
      await expect(client.getStream({ streamId: `${streamId}-labels` })).rejects.toMatchObject({ code: Code.NotFound });
      await expectOnlyGoodStoredAndServing(streamId);
    });
  });

  it("ends a gRPC stream whose body it refused unread, so the client is not left sending", async () => {
    // A message announced far over the limit, and a body that the client never ends: the server
    // answers RESOURCE_EXHAUSTED without reading it, then must end the stream itself
    // (RST_STREAM NO_ERROR), or the stream, and a shutdown waiting for its connection, hang.
    const session = http2.connect(server.baseUrl);
    try {
      const request = session.request({
        ":method": "POST",
        ":path": "/streamgate.v1.StreamService/SendData",
        "content-type": "application/grpc",
        te: "trailers",
        // With a valid key: without one the edge refuses the call from its headers (test/edge-auth.test.ts).
        ...authHeaders(server),
      });
      const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => request.once("trailers", resolve));
      const closed = new Promise<number | undefined>((resolve) =>
        request.once("close", () => resolve(request.rstCode)),
      );
      request.on("error", () => undefined);
      request.resume(); // the response (no messages) is read to its end
      const header = Buffer.alloc(5);
      header.writeUInt32BE(LIMIT + 64 * 1024 + 1, 1);
      request.write(header);
      request.write(Buffer.alloc(128 * 1024));
      expect((await trailers)["grpc-status"]).toBe(String(Code.ResourceExhausted));
      expect(await closed).toBe(http2.constants.NGHTTP2_NO_ERROR);
    } finally {
      session.destroy();
    }
  });

  describe("invalid UTF-8 in binary requests", () => {
    const invalid = [0xff, 0xfe];
    const bad = Uint8Array.from(invalid);
    const x = wire.bytes(3, [0x78]); // raw = "x"
    /** A map entry (key = 1, value = 2). */
    const entry = (key: Uint8Array, value: Uint8Array) => wire.message(wire.bytes(1, key), wire.bytes(2, value));
    const text = (value: string) => encoder.encode(value);
    /** [what, method, message, field named in the error], for an existing stream. */
    const cases = (streamId: string) => {
      const id = wire.string(1, streamId);
      const newId = wire.string(1, `${streamId}-new`);
      return [
        ["stream_id", "sendData", wire.message(wire.bytes(1, invalid), x), "stream_id"],
        ["event_id", "sendData", wire.message(id, x, wire.bytes(4, invalid)), "event_id"],
        ["a header value", "sendData", wire.message(id, x, wire.bytes(5, entry(text("h"), bad))), "header value"],
        // data = Value{string_value: "a<invalid>"}
        ["a data string", "sendData", wire.message(id, wire.bytes(2, wire.bytes(3, [0x61, ...invalid]))), "data"],
        // data = Value{struct_value: Struct{fields: {<invalid>: Value{string_value: "v"}}}}
        [
          "a data key",
          "sendData",
          wire.message(id, wire.bytes(2, wire.bytes(5, wire.bytes(1, entry(bad, wire.string(3, "v")))))),
          "data",
        ],
        ["a label value", "startStream", wire.message(newId, wire.bytes(2, entry(text("k"), bad))), "label value"],
        ["a filter", "startStream", wire.message(newId, wire.bytes(3, wire.bytes(1, invalid))), "processing.filter"],
      ] as const;
    };

    const senders = {
      "connect-proto": (method: "sendData" | "startStream", bytes: Uint8Array) => postProto(server, method, bytes),
      grpc: (method: "sendData" | "startStream", bytes: Uint8Array) => grpcRaw(server, method, [bytes]),
    };

    describe.each(Object.keys(senders) as (keyof typeof senders)[])("over %s", (protocol) => {
      it("refuses each string field with INVALID_ARGUMENT, storing and creating nothing", async () => {
        const streamId = await streamWithOneGoodRecord(`utf8-${protocol}`);
        for (const [what, method, bytes, field] of cases(streamId)) {
          const outcome = await senders[protocol](method, bytes);
          expect({ what, code: outcome.code }).toEqual({ what, code: "invalid_argument" });
          expect(outcome.message).toContain(field);
          expect(outcome.message).toContain("not valid UTF-8");
        }
        await expect(client.getStream({ streamId: `${streamId}-new` })).rejects.toMatchObject({ code: Code.NotFound });
        expect((await client.getStream({ streamId })).counts?.rejected).toBe(4n);
        await expectOnlyGoodStoredAndServing(streamId);
      });
    });

    it("rejects only the bad message of a gRPC client stream", async () => {
      const streamId = await streamWithOneGoodRecord("utf8-client-stream");
      const good = (text: string) =>
        toBinary(
          SendDataStreamRequestSchema,
          create(SendDataStreamRequestSchema, { streamId, payload: { case: "raw", value: encoder.encode(text) } }),
        );
      const bad = wire.message(good("bad"), wire.bytes(4, invalid)); // the last event_id field wins
      const outcome = await grpcRaw(server, "sendDataStream", [good("second"), bad, good("third")]);
      expect(outcome.code).toBe("ok");
      const summary = fromBinary(SendDataStreamResponseSchema, outcome.messages[0]!);
      expect(summary).toMatchObject({ accepted: 2n, rejected: 1n });
      expect(summary.rejections).toMatchObject([
        { index: 1n, code: "invalid_argument", reason: "event_id is not valid UTF-8" },
      ]);
      await expectOnlyGoodStoredAndServing(streamId, ["good", "second", "third"]);
    });

    it("still ends a call whose error would quote the bad text (gRPC health check)", async () => {
      // HealthCheckRequest{service: <invalid>}: NOT_FOUND names the service; the message must stay encodable.
      const outcome = await grpcRaw(server, "/grpc.health.v1.Health/Check", [wire.bytes(1, invalid)]);
      expect(outcome.code).toBe("not_found");
      expect(outcome.message).toContain("unknown service");
    });

    it("accepts the same hand-encoded messages with valid text in place of the bad bytes", async () => {
      // Guards the cases above: what they refuse is the text, not the encoding.
      const streamId = await streamWithOneGoodRecord("utf8-control");
      const valid = wire.message(wire.string(1, streamId), x, wire.string(4, "ok-event"));
      expect(fromBinary(SendDataRequestSchema, valid).eventId).toBe("ok-event");
      expect((await postProto(server, "sendData", valid)).code).toBe("ok");
      expect((await grpcRaw(server, "sendData", [valid])).code).toBe("ok");
    });
  });

  describe("1,000 concurrent StartStream calls with one id (gRPC)", () => {
    const N = 1000;

    it("all succeed with the same create time, exactly one created; then conflicting labels all get ALREADY_EXISTS", async () => {
      const streamId = "race-same-options";
      const started = await Promise.all(
        Array.from({ length: N }, () => client.startStream({ streamId, labels: { team: "a" } })),
      );
      expect(started.filter((response) => response.created)).toHaveLength(1);
      expect(new Set(started.map((response) => timestampMs(response.stream!.createTime!))).size).toBe(1);
      expect(started.every((response) => response.stream?.streamId === streamId)).toBe(true);

      const conflicting = await Promise.allSettled(
        Array.from({ length: N }, (_, i) => client.startStream({ streamId, labels: { team: `b${i}` } })),
      );
      const codes = conflicting.map((r) => (r.status === "rejected" ? ConnectError.from(r.reason).code : "ok"));
      expect(new Set(codes)).toEqual(new Set([Code.AlreadyExists]));
      expect((await client.getStream({ streamId })).stream?.labels).toEqual({ team: "a" });
    });

    it("with different labels on a new id: one creates it, every other gets ALREADY_EXISTS", async () => {
      const streamId = "race-different-options";
      const settled = await Promise.allSettled(
        Array.from({ length: N }, (_, i) => client.startStream({ streamId, labels: { caller: `c${i}` } })),
      );
      const winners = settled.flatMap((r, i) => (r.status === "fulfilled" ? [{ i, created: r.value.created }] : []));
      expect(winners).toHaveLength(1);
      expect(winners[0]!.created).toBe(true);
      const losers = settled.filter((r) => r.status === "rejected").map((r) => ConnectError.from(r.reason).code);
      expect(new Set(losers)).toEqual(new Set([Code.AlreadyExists]));
      expect((await client.getStream({ streamId })).stream?.labels).toEqual({ caller: `c${winners[0]!.i}` });
    });
  });
});
