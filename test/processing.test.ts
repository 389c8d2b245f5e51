/**
 * Stream processing end to end: event-id deduplication, CEL filter and
 * transform, the ratePerSecond throttle (order kept, a backlog held back
 * without holding up other streams; its timing is proven on an injected clock
 * in test/pacer.test.ts and test/processor.test.ts), and per-stream order
 * under concurrent senders; on the embedded broker and on Kafka.
 */

import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Result } from "../gen/streamgate/v1/stream_service_pb.js";
import { BROKERS, collect, startTestServer, streamClient, type TestServer, take } from "./support/server.js";

const json = (value: JsonValue) => ({ case: "data" as const, value: fromJson(ValueSchema, value) });
const dataOf = (result: Result | undefined) =>
  result?.payload.case === "data" ? toJson(ValueSchema, result.payload.value) : undefined;

describe.each(BROKERS)("on the %s broker", (kind) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({}, kind);
  });
  afterAll(() => server?.close());

  describe("deduplication by eventId", () => {
    it("acknowledges a repeated eventId with the first cursor and produces one result", async () => {
      const client = streamClient(server);
      const streamId = "dedup";
      await client.startStream({ streamId });
      const first = await client.sendData({ streamId, eventId: "e-1", payload: json({ v: 1 }) });
      const repeat = await client.sendData({ streamId, eventId: "e-1", payload: json({ v: "other" }) });
      expect(repeat).toMatchObject({ cursor: first.cursor, duplicate: true });
      expect(first.duplicate).toBe(false);

      const summary = await client.sendDataStream(
        (async function* () {
          yield { streamId, eventId: "e-1", payload: json({ v: 1 }) };
          yield { streamId, eventId: "e-2", payload: json({ v: 2 }) };
          yield { streamId, eventId: "e-2", payload: json({ v: 2 }) };
        })(),
      );
      expect(summary).toMatchObject({ accepted: 1n, duplicates: 2n, rejected: 0n });

      await client.closeStream({ streamId });
      const results = await collect(client.watchResults({ streamId }));
      expect(results.map((r) => [r.result?.eventId, dataOf(r.result)])).toEqual([
        ["e-1", { v: 1 }],
        ["e-2", { v: 2 }],
      ]);
    });

    it("answers concurrent sends of one eventId with a single record", async () => {
      const client = streamClient(server);
      const streamId = "dedup-concurrent";
      await client.startStream({ streamId });
      const answers = await Promise.all(
        Array.from({ length: 50 }, () => client.sendData({ streamId, eventId: "same", payload: json(1) })),
      );
      expect(new Set(answers.map((a) => a.cursor)).size).toBe(1);
      expect(answers.filter((a) => !a.duplicate)).toHaveLength(1);
      await client.closeStream({ streamId });
      expect(await collect(client.watchResults({ streamId }))).toHaveLength(1);
    });
  });

  describe("CEL processing", () => {
    it("filters and transforms each record", async () => {
      const client = streamClient(server);
      const streamId = "cel";
      await client.startStream({
        streamId,
        processing: {
          filter: "data.temp > 20.0 && headers['site'] == 'north'",
          transform: "{'f': data.temp * 9.0 / 5.0 + 32.0, 'id': event_id, 'stream': stream_id}",
        },
      });
      const send = (temp: number, site: string, eventId: string) =>
        client.sendData({ streamId, eventId, headers: { site }, payload: json({ temp }) });
      await send(25, "north", "a");
      await send(10, "north", "b"); // filtered: too cold
      await send(30, "south", "c"); // filtered: other site
      await send(20.5, "north", "d");
      await client.sendData({ streamId, payload: json("no temp") }); // fails to evaluate: no result

      await client.closeStream({ streamId });
      const results = await collect(client.watchResults({ streamId }));
      expect(results.map((r) => dataOf(r.result))).toEqual([
        { f: 77, id: "a", stream: streamId },
        { f: 68.9, id: "d", stream: streamId },
      ]);
      const { counts } = await client.getStream({ streamId });
      expect(counts).toMatchObject({ accepted: 5n, processed: 5n, filtered: 2n, failed: 1n, results: 2n });
    });

    it("gives raw payloads to expressions as bytes", async () => {
      const client = streamClient(server);
      const streamId = "cel-raw";
      await client.startStream({ streamId, processing: { filter: "size(raw) > 2", transform: "{'n': size(raw)}" } });
      await client.sendData({ streamId, payload: { case: "raw", value: new Uint8Array([1, 2]) } });
      await client.sendData({ streamId, payload: { case: "raw", value: new Uint8Array([1, 2, 3]) } });
      await client.closeStream({ streamId });
      expect((await collect(client.watchResults({ streamId }))).map((r) => dataOf(r.result))).toEqual([{ n: 3 }]);
    });

    it("applies a watcher's own filter on top of the stream's results", async () => {
      const client = streamClient(server);
      const streamId = "cel-watch";
      await client.startStream({ streamId });
      for (const level of ["info", "error", "info", "error"]) {
        await client.sendData({ streamId, payload: json({ level }) });
      }
      await client.closeStream({ streamId });
      const errors = await collect(client.watchResults({ streamId, filter: "data.level == 'error'" }));
      expect(errors.map((r) => dataOf(r.result))).toEqual([{ level: "error" }, { level: "error" }]);
    });

    it.each([
      ["processing.filter", { filter: "data.temp >" }],
      ["processing.filter", { filter: "temperature > 1.0" }],
      ["processing.transform", { transform: "{'a': }" }],
    ])("refuses a bad %s at StartStream", async (field, processing) => {
      const client = streamClient(server);
      const error = await client.startStream({ streamId: "cel-bad", processing }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: Code.InvalidArgument });
      expect((error as Error).message).toContain(field);
      await expect(client.getStream({ streamId: "cel-bad" })).rejects.toMatchObject({ code: Code.NotFound });
    });
  });

  describe("throttled processing", () => {
    // The pacing itself (slots 1/rate apart, none started early, the rate held) is proven on an
    // injected clock in test/pacer.test.ts, and the processor's use of it (a throttled stream's
    // records one per 1/rate of that clock) in test/processor.test.ts. End to end, on the real
    // clock, only what no timing decides is asserted here.
    it("processes a throttled stream's records in order", async () => {
      const client = streamClient(server);
      const streamId = "throttled";
      await client.startStream({ streamId, processing: { ratePerSecond: 20 } });
      const count = 10;
      for (let n = 0; n < count; n++) await client.sendData({ streamId, payload: json({ n }) });
      const results = await take(client.watchResults({ streamId }), count);
      expect(results.map((r) => dataOf(r.result))).toEqual(Array.from({ length: count }, (_, n) => ({ n })));
      const { counts } = await client.getStream({ streamId });
      expect(counts).toMatchObject({ accepted: 10n, processed: 10n, results: 10n });
    });

    it("holds a throttled stream's backlog without holding up other streams", async () => {
      const client = streamClient(server);
      // One record every 1,000 s: the first is processed at once, the others wait in the
      // throttle for longer than any test runs, so what is seen below is no race with the rate.
      await client.startStream({ streamId: "slow", processing: { ratePerSecond: 0.001 } });
      await client.startStream({ streamId: "fast" });
      for (let n = 0; n < 3; n++) await client.sendData({ streamId: "slow", payload: json({ n }) });
      for (let n = 0; n < 3; n++) await client.sendData({ streamId: "fast", payload: json({ n }) });
      // The fast stream's results all arrive while the slow one's backlog waits.
      const fast = await take(client.watchResults({ streamId: "fast" }), 3);
      expect(fast.map((r) => dataOf(r.result))).toEqual([{ n: 0 }, { n: 1 }, { n: 2 }]);
      const [first] = await take(client.watchResults({ streamId: "slow" }), 1);
      expect(dataOf(first?.result)).toEqual({ n: 0 });
      // Not all at once: by the counters, only the first of the three slow records is processed.
      const { counts } = await client.getStream({ streamId: "slow" });
      expect(counts).toMatchObject({ accepted: 3n, processed: 1n, results: 1n });
    });

    it("refuses a negative rate", async () => {
      const client = streamClient(server);
      await expect(client.startStream({ streamId: "neg", processing: { ratePerSecond: -1 } })).rejects.toMatchObject({
        code: Code.InvalidArgument,
      });
    });
  });

  describe("ordering", () => {
    it("keeps each stream's order across concurrent client streams of different streams", async () => {
      const client = streamClient(server);
      const streams = ["ord-a", "ord-b", "ord-c"];
      for (const streamId of streams) await client.startStream({ streamId });
      const perStream = 200;
      await Promise.all(
        streams.map((streamId) =>
          client.sendDataStream(
            (async function* () {
              for (let n = 0; n < perStream; n++) yield { streamId, payload: json({ n }) };
            })(),
          ),
        ),
      );
      for (const streamId of streams) {
        await client.closeStream({ streamId });
        const results = await collect(client.watchResults({ streamId }));
        expect(results.map((r) => (dataOf(r.result) as { n: number }).n)).toEqual(
          Array.from({ length: perStream }, (_, n) => n),
        );
      }
    });
  });
});
