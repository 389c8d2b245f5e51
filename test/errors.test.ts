/**
 * DESIGN.md's error table, row by row, against a real server: each cause gets
 * its code, and a message that says what happened and what to do without
 * internals. The rows a client can cause run on the embedded broker and on
 * Kafka; broker failures and a held shutdown come from a memory broker wrapped
 * to fail on demand. The rows for credentials and rate limits belong to those
 * features' tests.
 */
import { randomBytes } from "node:crypto";
import { fromJson, type MessageInitShape } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type Result,
  ResumeInfoSchema,
  type SendDataStreamRequestSchema,
  StartPosition,
  type StartStreamRequestSchema,
  type StreamService,
} from "../gen/streamgate/v1/stream_service_pb.js";
import { BrokerError } from "../src/broker/errors.js";
import { type Faults, faultyBroker, gate } from "./support/bad-input-broker.js";
import { BROKERS, collect, startTestServer, streamClient, type TestServer, takeResuming } from "./support/server.js";

const LIMIT = 1024;
const encoder = new TextEncoder();
const raw = (text: string) => ({ case: "raw" as const, value: encoder.encode(text) });
const text = (result: Result) => new TextDecoder().decode(result.payload.value as Uint8Array);

/** The error a call ended with; fails the test when it succeeded. */
async function errorOf(call: Promise<unknown> | (() => Promise<unknown>)): Promise<ConnectError> {
  try {
    await (typeof call === "function" ? call() : call);
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to fail");
}

/** A client stream of `requests`. */
async function* stream(...requests: MessageInitShape<typeof SendDataStreamRequestSchema>[]) {
  yield* requests;
}

describe.each(BROKERS)("on the %s broker", (kind) => {
  let server: TestServer;
  let client: Client<typeof StreamService>;
  beforeAll(async () => {
    server = await startTestServer({ MAX_PAYLOAD_BYTES: String(LIMIT) }, kind);
    client = streamClient(server, "grpc");
  });
  afterAll(() => server?.close());

  describe("INVALID_ARGUMENT", () => {
    it("refuses malformed requests, naming the field", async () => {
      await client.startStream({ streamId: "malformed" });
      const { cursor } = await client.sendData({ streamId: "malformed", payload: raw("x") });
      const cases: [() => Promise<unknown>, string][] = [
        [() => client.getStream({}), "stream_id is required"],
        [() => client.startStream({ streamId: "has spaces" }), "stream_id"],
        [() => client.startStream({ streamId: "labels", labels: { "Not A Key": "v" } }), "label key"],
        [
          () => client.startStream({ streamId: "rate", processing: { ratePerSecond: -1 } }),
          "processing.rate_per_second",
        ],
        [() => client.sendData({ streamId: "malformed" }), "payload is required"],
        [
          () => client.sendData({ streamId: "malformed", payload: raw("x"), headers: { "streamgate-id": "1" } }),
          "reserved prefix",
        ],
        // A SendData cursor where a result's cursor belongs.
        [() => collect(client.watchResults({ streamId: "malformed", afterCursor: cursor })), "after_cursor"],
        [() => collect(client.watchResults({ streamId: "malformed", afterCursor: "not-a-cursor" })), "after_cursor"],
      ];
      for (const [call, mention] of cases) {
        const error = await errorOf(call);
        expect({ code: error.code, mention }).toEqual({ code: Code.InvalidArgument, mention });
        expect(error.rawMessage).toContain(mention);
      }
    });

    it("refuses a bad CEL filter or transform at StartStream, creating nothing", async () => {
      const bad = [
        { filter: "data.temp >" }, // syntax
        { filter: "temp > 20.0" }, // not a variable: data.temp was meant
        { transform: "{'c': (data.temp - 32.0) * 5.0 / 9.0" },
        { transform: "fahrenheit" },
      ];
      for (const [i, processing] of bad.entries()) {
        const streamId = `bad-cel-${i}`;
        const error = await errorOf(client.startStream({ streamId, processing }));
        expect(error.code).toBe(Code.InvalidArgument);
        expect(error.rawMessage).toContain("filter" in processing ? "processing.filter" : "processing.transform");
        expect((await errorOf(client.getStream({ streamId }))).code).toBe(Code.NotFound);
      }
    });

    it("refuses a bad watcher filter at WatchResults before any result", async () => {
      const streamId = "bad-watch-filter";
      await client.startStream({ streamId });
      await client.sendData({ streamId, payload: { case: "data", value: fromJson(ValueSchema, { temp: 21.5 }) } });
      const received: unknown[] = [];
      const watch = (async () => {
        for await (const response of client.watchResults({ streamId, filter: "data.temp >" })) received.push(response);
      })();
      const error = await errorOf(watch);
      expect(error.code).toBe(Code.InvalidArgument);
      expect(error.rawMessage).toContain("filter");
      expect(received).toEqual([]);
    });

    it("refuses a payload over MAX_PAYLOAD_BYTES, stating the limit", async () => {
      await client.startStream({ streamId: "too-large" });
      const error = await errorOf(
        client.sendData({ streamId: "too-large", payload: { case: "raw", value: new Uint8Array(LIMIT + 1) } }),
      );
      expect(error.code).toBe(Code.InvalidArgument);
      expect(error.rawMessage).toBe(
        `payload is ${LIMIT + 1} bytes, over the limit of ${LIMIT} bytes (MAX_PAYLOAD_BYTES)`,
      );
    });
  });

  describe("NOT_FOUND: an unknown stream", () => {
    const streamId = "never-started";

    it("fails each RPC that names it", async () => {
      const calls: [string, () => Promise<unknown>][] = [
        ["sendData", () => client.sendData({ streamId, payload: raw("x") })],
        ["getStream", () => client.getStream({ streamId })],
        ["closeStream", () => client.closeStream({ streamId })],
        ["watchResults", () => collect(client.watchResults({ streamId }))],
        [
          "sendDataStream failFast",
          () => client.sendDataStream(stream({ streamId, payload: raw("x"), failFast: true })),
        ],
      ];
      for (const [rpc, call] of calls) {
        const error = await errorOf(call);
        expect({ rpc, code: error.code }).toEqual({ rpc, code: Code.NotFound });
        expect(error.rawMessage).toBe(`stream "${streamId}" not found`);
      }
    });

    it("rejects each record of a client stream, listing the code", async () => {
      const summary = await client.sendDataStream(stream({ streamId, payload: raw("x") }, { payload: raw("y") }));
      expect(summary).toMatchObject({ accepted: 0n, rejected: 2n });
      expect(summary.rejections).toMatchObject([
        { index: 0n, code: "not_found" },
        { index: 1n, code: "not_found" },
      ]);
    });
  });

  describe("FAILED_PRECONDITION: a closed stream", () => {
    it("refuses a send, unary and in a client stream, and stores nothing", async () => {
      const streamId = "closed";
      await client.startStream({ streamId });
      await client.sendData({ streamId, payload: raw("before") });
      await client.closeStream({ streamId });

      const error = await errorOf(client.sendData({ streamId, payload: raw("after") }));
      expect(error.code).toBe(Code.FailedPrecondition);
      expect(error.rawMessage).toBe(`stream "${streamId}" is closed`);

      const summary = await client.sendDataStream(stream({ streamId, payload: raw("a") }, { payload: raw("b") }));
      expect(summary).toMatchObject({ accepted: 0n, rejected: 2n, lastCursor: "" });
      expect(summary.rejections).toEqual([
        expect.objectContaining({ index: 0n, code: "failed_precondition", reason: `stream "${streamId}" is closed` }),
        expect.objectContaining({ index: 1n, code: "failed_precondition" }),
      ]);

      const replay = await collect(client.watchResults({ streamId, startPosition: StartPosition.EARLIEST }));
      expect(replay.map(({ result }) => text(result!))).toEqual(["before"]);
    });
  });

  describe("ALREADY_EXISTS: the same id with other options", () => {
    it("refuses other labels or processing, and returns the stream for the same ones", async () => {
      const streamId = "exists";
      const options = { labels: { team: "a" }, processing: { filter: "true", ratePerSecond: 10 } };
      expect((await client.startStream({ streamId, ...options })).created).toBe(true);
      const others: MessageInitShape<typeof StartStreamRequestSchema>[] = [
        { ...options, labels: { team: "b" } },
        { ...options, labels: {} },
        { ...options, processing: { ...options.processing, filter: "false" } },
        { ...options, processing: { ...options.processing, ratePerSecond: 11 } },
        { labels: options.labels },
      ];
      for (const other of others) {
        const error = await errorOf(client.startStream({ streamId, ...other }));
        expect(error.code).toBe(Code.AlreadyExists);
        expect(error.rawMessage).toContain(`stream "${streamId}" already exists`);
      }
      expect((await client.startStream({ streamId, ...options })).created).toBe(false);
    });
  });

  describe("RESOURCE_EXHAUSTED: a watcher that stops reading", () => {
    it("ends it with the cursor to resume from, after what was already on its way", async () => {
      const slow = await startTestServer({ WATCH_BUFFER: "4" }, kind);
      try {
        // Separate connections, so the stalled one's flow control holds back nothing else.
        const [sender, stalledClient, reader] = [streamClient(slow), streamClient(slow), streamClient(slow)];
        const streamId = "slow";
        await sender.startStream({ streamId });
        await sender.sendData({ streamId, payload: raw("head") });
        const stalled = stalledClient
          .watchResults({ streamId, startPosition: StartPosition.EARLIEST })
          [Symbol.asyncIterator]();
        const head = (await stalled.next()).value!.result!; // the watcher is live; now it stops reading

        // Results of 16 KiB, random so that gzip cannot shrink them: HTTP/2 flow control stops
        // the server writing to the stalled watcher after a few, and the rest pile up in its buffer.
        const count = 64;
        for (let i = 0; i < count; i++) {
          await sender.sendData({ streamId, payload: { case: "raw", value: new Uint8Array(randomBytes(16 * 1024)) } });
        }
        // The fanout offers each result to every watcher at once: when this one has the last, so was the stalled one.
        const all = await takeResuming(reader, streamId, head.cursor, count);

        const delivered: Result[] = [];
        const ended = await errorOf(
          (async () => {
            for (let next = await stalled.next(); !next.done; next = await stalled.next())
              delivered.push(next.value.result!);
          })(),
        );
        expect(ended.code).toBe(Code.ResourceExhausted);
        expect(ended.rawMessage).toContain("fell behind by more than 4 results");
        expect(delivered.length).toBeLessThan(count);
        // What it got is an unbroken prefix, and its resume cursor is the last of it.
        expect(delivered.map((r) => r.cursor)).toEqual(
          all.slice(0, delivered.length).map(({ result }) => result!.cursor),
        );
        const resume = ended.findDetails(ResumeInfoSchema)[0]?.cursor;
        expect(resume).toBe(delivered.at(-1)?.cursor ?? head.cursor);
        expect(ended.rawMessage).toContain(`afterCursor=${resume}`);

        const rest = await takeResuming(reader, streamId, resume!, count - delivered.length);
        expect(rest.map(({ result }) => result!.cursor)).toEqual(
          all.slice(delivered.length).map(({ result }) => result!.cursor),
        );
      } finally {
        await slow.close();
      }
    });
  });
});

// Broker failures and a shutdown held half-way need a broker that fails on demand:
// the memory broker wrapped by faultyBroker, so these rows run on the memory broker only.
describe("with a broker that fails on demand (memory broker only)", () => {
  const faults: Faults = {};
  let server: TestServer;
  let client: Client<typeof StreamService>;
  beforeAll(async () => {
    server = await startTestServer({ MAX_PAYLOAD_BYTES: String(LIMIT) }, faultyBroker(faults));
    client = streamClient(server, "grpc");
  });
  afterEach(() => {
    faults.produce = undefined;
  });
  afterAll(() => server?.close());

  describe("UNAVAILABLE: the broker fails", () => {
    const brokerDown = () => new BrokerError("connect ECONNREFUSED 10.0.0.1:9092", true);

    it("refuses sends, saying nothing was stored; a retry after recovery is stored once", async () => {
      const streamId = "broker-down";
      await client.startStream({ streamId });
      faults.produce = (topic) => (topic.endsWith("ingest") ? brokerDown() : undefined);

      for (const transport of ["grpc", "connect-json"]) {
        const error = await errorOf(
          streamClient(server, transport).sendData({ streamId, payload: raw("lost"), eventId: "e1" }),
        );
        expect(error.code).toBe(Code.Unavailable);
        expect(error.rawMessage).toBe("broker unavailable; nothing was stored, retry later");
      }
      const streamed = await errorOf(client.sendDataStream(stream({ streamId, payload: raw("lost") })));
      expect(streamed.code).toBe(Code.Unavailable);

      faults.produce = undefined;
      // Nothing was acknowledged, so the same event id is a first send, not a duplicate.
      const retry = await client.sendData({ streamId, payload: raw("kept"), eventId: "e1" });
      expect(retry.duplicate).toBe(false);
      await client.closeStream({ streamId });
      const replay = await collect(client.watchResults({ streamId, startPosition: StartPosition.EARLIEST }));
      expect(replay.map(({ result }) => text(result!))).toEqual(["kept"]);
      expect((await client.getStream({ streamId })).counts?.accepted).toBe(1n);
    });

    it("refuses StartStream when the registry cannot be written, creating nothing", async () => {
      faults.produce = (topic) => (topic.endsWith("streams") ? brokerDown() : undefined);
      const error = await errorOf(client.startStream({ streamId: "registry-down" }));
      expect(error.code).toBe(Code.Unavailable);
      faults.produce = undefined;
      expect((await errorOf(client.getStream({ streamId: "registry-down" }))).code).toBe(Code.NotFound);
      expect((await client.startStream({ streamId: "registry-down" })).created).toBe(true);
    });
  });

  describe("INTERNAL: a bug", () => {
    it("answers exactly 'internal error', without the cause", async () => {
      const streamId = "bug";
      await client.startStream({ streamId });
      faults.produce = (topic) => (topic.endsWith("ingest") ? new Error("secret-internal-detail") : undefined);
      const calls = [
        () => streamClient(server, "grpc").sendData({ streamId, payload: raw("x") }),
        () => streamClient(server, "connect-json").sendData({ streamId, payload: raw("x") }),
        () => client.sendDataStream(stream({ streamId, payload: raw("x") })),
      ];
      for (const call of calls) {
        const error = await errorOf(call);
        expect(error.code).toBe(Code.Internal);
        expect(error.rawMessage).toBe("internal error");
        expect(error.message).not.toContain("secret");
      }
    });
  });

  describe("UNAVAILABLE: the server is draining", () => {
    it("refuses new calls and ends open watches with their resume cursor", async () => {
      const drainFaults: Faults = {};
      const draining = await startTestServer({}, faultyBroker(drainFaults));
      const grpc = streamClient(draining, "grpc");
      const streamId = "draining";
      await grpc.startStream({ streamId });
      await grpc.sendData({ streamId, payload: raw("one") });
      const watch = grpc.watchResults({ streamId, startPosition: StartPosition.EARLIEST })[Symbol.asyncIterator]();
      const first = (await watch.next()).value!.result!;

      // Hold the shutdown after it has started refusing calls, before it closes the listener.
      const hold = gate();
      drainFaults.closeGate = hold.promise;
      const closing = draining.app.close();
      try {
        const ended = await errorOf(watch.next());
        expect(ended.code).toBe(Code.Unavailable);
        expect(ended.findDetails(ResumeInfoSchema)[0]?.cursor).toBe(first.cursor);
        expect(ended.rawMessage).toContain(`afterCursor=${first.cursor}`);

        const calls = [
          () => grpc.sendData({ streamId, payload: raw("two") }), // on the open connection
          () => streamClient(draining, "grpc").getStream({ streamId }), // a new HTTP/2 connection
          () => streamClient(draining, "connect-json").startStream({ streamId: "late" }), // a new HTTP/1.1 connection
        ];
        for (const call of calls) {
          const error = await errorOf(call);
          expect(error.code).toBe(Code.Unavailable);
          expect(error.rawMessage).toBe("server is shutting down; retry on another instance");
        }
      } finally {
        hold.open();
        await closing;
      }
    });
  });
});
