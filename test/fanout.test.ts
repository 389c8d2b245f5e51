/**
 * The fanout, on the memory broker with result records written by hand (the
 * headers the processor writes): a slow watcher is ended with
 * RESOURCE_EXHAUSTED and a ResumeInfo cursor that resumes with no gap and no
 * duplicate; a watch older than the window catches up from the broker; a
 * young stream's watchers are served from memory; evicted windows are read
 * back from the broker; bad requests are INVALID_ARGUMENT; a
 * watcher's own filter skips results; stop() ends watchers with UNAVAILABLE and
 * their resume cursor; the end marker ends a watch cleanly.
 */

import { type JsonValue, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectError } from "@connectrpc/connect";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type Result, ResumeInfoSchema, StartPosition } from "../gen/streamgate/v1/stream_service_pb.js";
import { createMemoryBroker } from "../src/broker/memory.js";
import { createFanout } from "../src/fanout/fanout.js";
import { toConnectError } from "../src/rpc/errors.js";
import { encodeCursor } from "../src/streams/cursor.js";
import { createRegistry } from "../src/streams/registry.js";
import { streamKey } from "../src/streams/stream-key.js";
import { controlHeaders, dataHeaders, HEADER } from "../src/topics/record-format.js";
import { topicNames, topicSpecs } from "../src/topics/topics.js";
import { type RawWatch as WatchRequest, watchChecked } from "./support/edge.js";
import { refusal } from "./support/refusal.js";

const encoder = new TextEncoder();
const logger = pino({ level: "silent" });
/** The tenant of every stream here. */
const TENANT = "t";
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Limits {
  partitions?: number;
  window?: number;
  cacheResults?: number;
  watchBuffer?: number;
}

/** A broker, registry and started fanout with `limits`, stopped after the test. */
async function startFanout(limits: Limits = {}) {
  const topicConfig = { prefix: "test.", partitions: limits.partitions ?? 2 };
  const topics = topicNames(topicConfig);
  const broker = createMemoryBroker({ retentionRecords: 1_000_000, retentionMs: 0 });
  await broker.ensureTopics(topicSpecs(topicConfig));
  const registry = createRegistry({ broker, topic: topics.streams, resultsTopic: topics.results, logger });
  await registry.start();
  const fanout = createFanout({
    broker,
    resultsTopic: topics.results,
    registry,
    logger,
    window: limits.window ?? 16,
    cacheResults: limits.cacheResults ?? 10_000,
    watchBuffer: limits.watchBuffer ?? 64,
  });
  await fanout.start();
  const watches = new AbortController();
  cleanups.push(async () => {
    watches.abort();
    await fanout.stop();
    await registry.stop();
    await broker.close();
  });

  let sourceOffset = 0;
  return {
    broker,
    fanout,
    topics,
    /** Creates an open stream. */
    startStream: (streamId: string) => registry.create({ tenant: TENANT, streamId, labels: {}, processing: undefined }),
    /** Writes one result as the processor does (JSON or raw) and returns its cursor. */
    async publish(streamId: string, payload: JsonValue | Uint8Array): Promise<string> {
      const raw = payload instanceof Uint8Array;
      const headers = {
        ...dataHeaders(raw ? "raw" : "json", {}, "", Date.now()),
        [HEADER.processTime]: String(Date.now()),
        [HEADER.sourceCursor]: encodeCursor("ingest", 0, sourceOffset++),
      };
      const value = raw ? payload : encoder.encode(JSON.stringify(payload));
      const [position] = await broker.produce(topics.results, [{ key: streamKey(TENANT, streamId), value, headers }]);
      return encodeCursor("results", position!.partition, position!.offset);
    },
    /** Writes `count` results in one produce call: they reach the fanout as one batch. */
    async publishBatch(streamId: string, count: number): Promise<string[]> {
      const records = Array.from({ length: count }, (_, n) => ({
        key: streamKey(TENANT, streamId),
        value: encoder.encode(JSON.stringify({ n })),
        headers: {
          ...dataHeaders("json", {}, "", Date.now()),
          [HEADER.processTime]: String(Date.now()),
          [HEADER.sourceCursor]: encodeCursor("ingest", 0, sourceOffset++),
        },
      }));
      const positions = await broker.produce(topics.results, records);
      return positions.map((position) => encodeCursor("results", position.partition, position.offset));
    },
    /** Writes the end marker the processor writes when a stream is closed. */
    async publishEnd(streamId: string): Promise<void> {
      await broker.produce(topics.results, [
        { key: streamKey(TENANT, streamId), value: new Uint8Array(0), headers: controlHeaders("end", Date.now()) },
      ]);
    },
    /** Starts a watch and returns its iterator (nothing runs until the first `next`). */
    watch(streamId: string, request: Partial<WatchRequest> = {}): AsyncIterator<Result> {
      const full = { streamId, afterCursor: "", startPosition: StartPosition.UNSPECIFIED, filter: "", ...request };
      const responses = watchChecked(fanout, TENANT, full, watches.signal)[Symbol.asyncIterator]();
      return {
        next: async () => {
          const step = await responses.next();
          return step.done ? step : { done: false, value: step.value.result! };
        },
      };
    },
    /** The cursors of a stream's results as stored on the broker, in order. */
    async storedCursors(streamId: string): Promise<string[]> {
      const key = streamKey(TENANT, streamId);
      const partition = broker.partitionFor(topics.results, key);
      const records = await broker.fetch(topics.results, partition, 0, 100_000);
      return records.filter((r) => r.key === key).map((r) => encodeCursor("results", r.partition, r.offset));
    },
  };
}

/** The next result of a watch, which must not have ended. */
async function next(watch: AsyncIterator<Result>): Promise<Result> {
  const step = await watch.next();
  if (step.done) throw new Error("the watch ended");
  return step.value;
}

/** The next `count` results of a watch. */
async function take(watch: AsyncIterator<Result>, count: number): Promise<Result[]> {
  const results: Result[] = [];
  while (results.length < count) results.push(await next(watch));
  return results;
}

/** The error a watch ends with. */
async function failure(watch: AsyncIterator<Result>): Promise<ConnectError> {
  return watch.next().then(
    (step) => {
      throw new Error(`expected the watch to fail, got ${step.done ? "its end" : "a result"}`);
    },
    (error: unknown) => toConnectError(error),
  );
}

const dataOf = (result: Result) => (result.payload.case === "data" ? toJson(ValueSchema, result.payload.value) : null);
const cursorsOf = (results: Result[]) => results.map((result) => result.cursor);

describe("fanout", () => {
  it("ends a watcher that falls more than watchBuffer behind, with a cursor that resumes exactly", async () => {
    const watchBuffer = 4;
    const h = await startFanout({ watchBuffer });
    await h.startStream("s");
    const slow = h.watch("s");
    // A watcher that keeps up shows when each live result has reached the fanout.
    const witness = h.watch("s");
    // Asking before any result exists joins both to the live feed with nothing to catch up on.
    const slowFirst = next(slow);
    const witnessFirst = next(witness);

    const first = await h.publish("s", { n: 0 });
    expect((await slowFirst).cursor).toBe(first);
    expect((await witnessFirst).cursor).toBe(first);
    // The slow watcher stops pulling; one more live result than its buffer holds arrives.
    const later: string[] = [];
    for (let n = 1; n <= watchBuffer + 1; n++) {
      later.push(await h.publish("s", { n }));
      expect((await next(witness)).cursor).toBe(later.at(-1));
    }

    const error = await failure(slow);
    expect(error.code).toBe(Code.ResourceExhausted);
    const [resume] = error.findDetails(ResumeInfoSchema);
    expect(resume?.cursor).toBe(first);
    expect(error.rawMessage).toContain(`afterCursor=${first}`);
    expect(await slow.next()).toEqual({ done: true, value: undefined });

    const resumed = await take(h.watch("s", { afterCursor: resume!.cursor }), watchBuffer + 1);
    expect(cursorsOf(resumed)).toEqual(later);
    expect(resumed.map(dataOf)).toEqual([1, 2, 3, 4, 5].map((n) => ({ n })));
    expect([first, ...later]).toEqual(await h.storedCursors("s"));
  });

  it("gives a watcher that keeps up every result of a batch larger than its buffer, and still ends one that stops", async () => {
    const watchBuffer = 4;
    const h = await startFanout({ watchBuffer });
    await h.startStream("s");
    const reader = h.watch("s");
    const stalled = h.watch("s");
    const readerFirst = next(reader);
    const stalledFirst = next(stalled);
    const [first] = await h.publishBatch("s", 1);
    expect((await readerFirst).cursor).toBe(first);
    expect((await stalledFirst).cursor).toBe(first);

    // Five times the buffer in one batch (one Kafka fetch can bring a megabyte of one stream).
    const cursors = await h.publishBatch("s", 5 * watchBuffer);
    const read: string[] = [];
    for (let i = 0; i < cursors.length; i++) read.push((await next(reader)).cursor);
    expect(read).toEqual(cursors);
    const error = await failure(stalled);
    expect(error.code).toBe(Code.ResourceExhausted);
    expect(error.findDetails(ResumeInfoSchema)[0]?.cursor).toBe(first);
  });

  it("catches up from the broker when the watch starts before the window", async () => {
    const h = await startFanout({ partitions: 1, window: 3 });
    await h.startStream("s");
    await h.startStream("other");
    const witness = h.watch("s", { startPosition: StartPosition.LATEST });
    for (let n = 0; n < 20; n++) {
      await h.publish("s", { n });
      await h.publish("other", { n: -n }); // same partition, another stream: skipped on catch-up
    }
    await take(witness, 20);
    const fetch = vi.spyOn(h.broker, "fetch");

    const results = await take(h.watch("s", { startPosition: StartPosition.EARLIEST }), 20);
    expect(results.map(dataOf)).toEqual(Array.from({ length: 20 }, (_, n) => ({ n })));
    expect(results.every((result) => result.streamId === "s")).toBe(true);
    expect(cursorsOf(results)).toEqual(await h.storedCursors("s"));
    // Only the last 3 were in memory: the rest were read back from the broker.
    expect(fetch).toHaveBeenCalledWith(h.topics.results, 0, 0, expect.any(Number));
  });

  it("serves a new watcher of a young stream from memory, without reading back other streams' results", async () => {
    const h = await startFanout({ partitions: 1, window: 4 });
    await h.startStream("young");
    await h.startStream("busy");
    const witness = h.watch("young", { startPosition: StartPosition.LATEST });
    // Between the young stream's start and its first result: only the busy stream's.
    for (let n = 0; n < 20; n++) await h.publish("busy", { n });
    const first = await h.publish("young", { n: 0 });
    expect((await next(witness)).cursor).toBe(first);
    const fetch = vi.spyOn(h.broker, "fetch");

    const results = await take(h.watch("young", { startPosition: StartPosition.EARLIEST }), 1);
    expect(cursorsOf(results)).toEqual([first]);
    expect(fetch).not.toHaveBeenCalled();
  });

  it("evicts windows beyond cacheResults and serves their streams from the broker", async () => {
    for (const cacheResults of [10_000, 6]) {
      const h = await startFanout({ partitions: 1, window: 4, cacheResults });
      const streams = Array.from({ length: 10 }, (_, i) => `s${i}`);
      for (const streamId of streams) await h.startStream(streamId);
      const lastStream = h.watch("s9", { startPosition: StartPosition.LATEST });
      for (const streamId of streams) {
        for (let n = 0; n < 3; n++) await h.publish(streamId, { streamId, n });
      }
      await take(lastStream, 3); // every result has reached the fanout
      const fetch = vi.spyOn(h.broker, "fetch");

      const watch = h.watch("s0");
      const caughtUp = await take(watch, 3);
      expect(caughtUp.map(dataOf)).toEqual([0, 1, 2].map((n) => ({ streamId: "s0", n })));
      // A roomy cache serves s0 from memory; a cache of 6 results has evicted its window.
      expect(fetch.mock.calls.length > 0, `cacheResults=${cacheResults}`).toBe(cacheResults === 6);

      // The watch goes on live after catching up, with nothing missed at the seam.
      const live = await h.publish("s0", { streamId: "s0", n: 3 });
      expect((await next(watch)).cursor).toBe(live);
      expect([...cursorsOf(caughtUp), live]).toEqual(await h.storedCursors("s0"));
      fetch.mockRestore();
    }
  });

  it("refuses cursors of another stream's partition or of SendData, and bad filters", async () => {
    const h = await startFanout({ partitions: 4 });
    await h.startStream("s");
    const partition = h.broker.partitionFor(h.topics.results, streamKey(TENANT, "s"));

    const otherPartition = refusal(() =>
      h.watch("s", { afterCursor: encodeCursor("results", (partition + 1) % 4, 0) }),
    );
    expect(otherPartition.code).toBe(Code.InvalidArgument);
    expect(otherPartition.rawMessage).toMatch(/another stream/);

    const sendCursor = refusal(() => h.watch("s", { afterCursor: encodeCursor("ingest", partition, 0) }));
    expect(sendCursor.code).toBe(Code.InvalidArgument);
    expect(sendCursor.rawMessage).toMatch(/^after_cursor must be a result's cursor/);

    const garbage = refusal(() => h.watch("s", { afterCursor: "yesterday" }));
    expect(garbage.code).toBe(Code.InvalidArgument);

    const unknownName = refusal(() => h.watch("s", { filter: "foo > 1" }));
    expect(unknownName.code).toBe(Code.InvalidArgument);
    expect(unknownName.rawMessage).toMatch(/^filter uses unknown name "foo"/);
    const syntax = refusal(() => h.watch("s", { filter: "data.n >" }));
    expect(syntax.code).toBe(Code.InvalidArgument);
    expect(syntax.rawMessage).toMatch(/^filter is not a valid CEL expression/);

    expect(refusal(() => h.watch("nobody")).code).toBe(Code.NotFound);
    expect(refusal(() => h.watch("")).code).toBe(Code.InvalidArgument);
  });

  it("applies a watcher's filter, skipping results it rejects or cannot evaluate", async () => {
    const h = await startFanout({ window: 2 });
    await h.startStream("s");
    const filter = 'data.kind == "b"';
    const live = h.watch("s", { filter });
    await h.publish("s", { n: 0, kind: "a" });
    await h.publish("s", { n: 1, kind: "b" });
    await h.publish("s", { n: 2 }); // no kind: the filter fails on it, so it is skipped
    await h.publish("s", new Uint8Array([1, 2, 3])); // raw: data is null
    await h.publish("s", { n: 4, kind: "b" });
    expect((await take(live, 2)).map(dataOf)).toEqual([
      { n: 1, kind: "b" },
      { n: 4, kind: "b" },
    ]);

    // The same filter on results read back from the broker (the window holds 2).
    const late = await take(h.watch("s", { filter, startPosition: StartPosition.EARLIEST }), 2);
    expect(late.map(dataOf)).toEqual([
      { n: 1, kind: "b" },
      { n: 4, kind: "b" },
    ]);
  });

  it("ends open watchers on stop() with UNAVAILABLE and the cursor to resume from", async () => {
    const h = await startFanout();
    await h.startStream("s");
    const delivered = h.watch("s");
    const first = await h.publish("s", { n: 0 });
    expect((await next(delivered)).cursor).toBe(first);
    const waiting = h.watch("s", { afterCursor: first }); // nothing delivered yet
    const endings = [failure(delivered), failure(waiting)];
    expect(h.fanout.watcherCount).toBe(2);

    await h.fanout.stop();
    for (const ending of endings) {
      const error = await ending;
      expect(error.code).toBe(Code.Unavailable);
      expect(error.findDetails(ResumeInfoSchema).map((info) => info.cursor)).toEqual([first]);
    }
    expect(h.fanout.watcherCount).toBe(0);
  });

  it("ends a watch cleanly at the stream's end marker", async () => {
    const h = await startFanout({ window: 2 });
    await h.startStream("s");
    const live = h.watch("s");
    for (let n = 0; n < 3; n++) await h.publish("s", { n });
    await h.publishEnd("s");
    expect((await take(live, 3)).map(dataOf)).toEqual([{ n: 0 }, { n: 1 }, { n: 2 }]);
    expect(await live.next()).toEqual({ done: true, value: undefined });

    // A late watcher reads the same from the broker and ends there too.
    const late = h.watch("s");
    expect((await take(late, 3)).map(dataOf)).toEqual([{ n: 0 }, { n: 1 }, { n: 2 }]);
    expect(await late.next()).toEqual({ done: true, value: undefined });
  });
});
