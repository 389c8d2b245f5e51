/**
 * Poison records: a record whose processing fails in any way (a result over
 * MAX_PAYLOAD_BYTES, a record a foreign producer wrote that cannot be read)
 * ends as `failed` with a reason (GetStream's counts, the metric, a warn line
 * with the stream key and cursor and never the payload), and its partition
 * moves on: the other streams on that partition, and another client's, keep
 * getting results. A result on the results topic that cannot be read is
 * skipped by watchers. On Kafka, a poison record met after a restart fails
 * once, is committed, and is not processed again by the next restart.
 */
import { Writable } from "node:stream";
import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Result, StreamService, WatchResultsResponse } from "../gen/streamgate/v1/stream_service_pb.js";
import type { Logger } from "../src/observe/logger.js";
import { streamKey } from "../src/streams/stream-key.js";
import { dataHeaders } from "../src/topics/record-format.js";
import { testKafkaClient } from "./support/kafka-control.js";
import {
  BROKERS,
  type BrokerKind,
  brokerEnv,
  collect,
  startTestServer,
  streamClient,
  TEST_API_KEY,
  TEST_TENANT,
  type TestServer,
  take,
  uniqueTopicPrefix,
} from "./support/server.js";

const OTHER_KEY = "streamgate-other-client-key-0123456789";
/** The key of a stream of the test key's tenant (the other key's too): its records' key on every topic, and in log lines. */
const keyOf = (streamId: string) => streamKey(TEST_TENANT, streamId);
/** In every payload of a poison record: no log line may contain it. */
const SECRET = "SECRET-PAYLOAD-";
const MAX_PAYLOAD_BYTES = 4096;
/** Above PROCESSOR_MAX_IN_FLIGHT: records enough behind a poison to stop its partition if it never finished. */
const BEHIND = 10;
/**
 * Triples its input: a payload of 3 KB has a 9 KB result, over MAX_PAYLOAD_BYTES.
 * A list of three references costs CEL little (no string is copied), so CEL_MAX_COST plays no part.
 */
const TRIPLE = "[data.s, data.s, data.s]";
const tripled = (s: string) => [s, s, s];

const encoder = new TextEncoder();
const json = (value: JsonValue) => ({ case: "data" as const, value: fromJson(ValueSchema, value) });
const dataOf = (response: WatchResultsResponse) => {
  const result: Result | undefined = response.result;
  if (result?.payload.case === "data") return toJson(ValueSchema, result.payload.value);
  if (result?.payload.case === "raw") return [...result.payload.value];
  return undefined;
};
const range = (count: number) => Array.from({ length: count }, (_, n) => n);

function serverEnv(kind: BrokerKind, prefix: string): Record<string, string> {
  return {
    ...brokerEnv(kind, prefix),
    // The memory broker names its topics with the same prefix.
    KAFKA_TOPIC_PREFIX: prefix,
    KAFKA_PARTITIONS: "3",
    MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD_BYTES),
    PROCESSOR_MAX_IN_FLIGHT: "4",
    // Another client of the same tenant: it works with the test key's streams.
    API_KEYS: `test:${TEST_API_KEY},other@${TEST_TENANT}:${OTHER_KEY}`,
  };
}

/** A logger whose lines (warn and above) are kept, parsed, in `lines`. */
function capturingLogger(lines: Array<Record<string, unknown>>): Logger {
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line.trim() !== "") lines.push(JSON.parse(line));
      done();
    },
  });
  return pino({ level: "warn" }, destination);
}

/** `count` stream ids (of the test tenant) whose records share the ingest partition of `streamId`. */
function samePartition(server: TestServer, ingest: string, streamId: string, count: number): string[] {
  const partition = server.app.broker.partitionFor(ingest, keyOf(streamId));
  const ids: string[] = [];
  for (let n = 0; ids.length < count; n++) {
    const id = `${streamId}-neighbour-${n}`;
    if (server.app.broker.partitionFor(ingest, keyOf(id)) === partition) ids.push(id);
  }
  return ids;
}

/** streamgate_records_failed_total{reason} as GET /metrics reports it (0 when not yet counted). */
/** Closes each client's stream, then collects every result of each, in order (a closed stream's watch ends). */
async function closeAndCollect(
  streams: Array<[Client<typeof StreamService>, string]>,
): Promise<WatchResultsResponse[][]> {
  await Promise.all(streams.map(([client, streamId]) => client.closeStream({ streamId })));
  return Promise.all(streams.map(([client, streamId]) => collect(client.watchResults({ streamId }))));
}

async function failedMetric(server: TestServer, reason: string): Promise<number> {
  const text = await (await fetch(`${server.baseUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`streamgate_records_failed_total{reason="${reason}"}`));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

describe.each(BROKERS)("on the %s broker", (kind) => {
  const prefix = uniqueTopicPrefix();
  const topics = { ingest: `${prefix}ingest`, results: `${prefix}results` };
  const lines: Array<Record<string, unknown>> = [];
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(serverEnv(kind, prefix), kind, capturingLogger(lines));
  });
  afterAll(() => server?.close());

  it("fails a record whose result is over MAX_PAYLOAD_BYTES, and its partition moves on", async () => {
    const client = streamClient(server, "grpc", TEST_API_KEY);
    const other = streamClient(server, "connect-json", OTHER_KEY);
    const poisoned = "poison-size";
    const [neighbour, others] = samePartition(server, topics.ingest, poisoned, 2) as [string, string];
    await client.startStream({ streamId: poisoned, processing: { transform: TRIPLE } });
    await client.startStream({ streamId: neighbour });
    await other.startStream({ streamId: others });
    const before = await failedMetric(server, "result_too_large");

    await client.sendData({ streamId: poisoned, payload: json({ s: SECRET.repeat(200) }) });
    for (const n of range(BEHIND)) {
      await client.sendData({ streamId: neighbour, payload: json({ n }) });
      await other.sendData({ streamId: others, payload: json({ n }) });
    }
    await client.sendData({ streamId: poisoned, payload: json({ s: "ok" }) });
    const [poisonedResults, neighbourResults, othersResults] = await closeAndCollect([
      [client, poisoned],
      [client, neighbour],
      [other, others],
    ]);
    expect(poisonedResults.map(dataOf)).toEqual([tripled("ok")]);
    expect(neighbourResults.map(dataOf)).toEqual(range(BEHIND).map((n) => ({ n })));
    expect(othersResults.map(dataOf)).toEqual(range(BEHIND).map((n) => ({ n })));

    const { counts } = await client.getStream({ streamId: poisoned });
    expect(counts).toMatchObject({ accepted: 2n, processed: 2n, failed: 1n, results: 1n });
    expect(await failedMetric(server, "result_too_large")).toBe(before + 1);
    const warned = lines.filter((line) => line.stream === keyOf(poisoned) && line.reason === "result_too_large");
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ level: 40, cursor: expect.any(String) });
    expect(JSON.stringify(lines)).not.toContain(SECRET);
  });

  it("fails a record a foreign producer wrote that cannot be read, and its partition moves on", async () => {
    const client = streamClient(server, "grpc", TEST_API_KEY);
    const other = streamClient(server, "connect-json", OTHER_KEY);
    const poisoned = "poison-garbage";
    const [neighbour, others] = samePartition(server, topics.ingest, poisoned, 2) as [string, string];
    await client.startStream({ streamId: poisoned, processing: { transform: "{'v': data.v}" } });
    await client.startStream({ streamId: neighbour });
    await other.startStream({ streamId: others });
    const before = await failedMetric(server, "exception");

    // Straight to the ingest topic, past every check of SendData: JSON that
    // does not parse (V8's error message would quote it), and a raw record
    // whose send time is not a time (its result must still be readable).
    await server.app.broker.produce(topics.ingest, [
      {
        key: keyOf(poisoned),
        value: encoder.encode(`{"v": ${SECRET}}`),
        headers: { "content-type": "application/json", "streamgate-send-time": "garbage" },
      },
      { key: keyOf(neighbour), value: new Uint8Array([1, 2, 3]), headers: { "streamgate-send-time": "not a time" } },
    ]);
    for (const n of range(BEHIND)) {
      await client.sendData({ streamId: neighbour, payload: json({ n }) });
      await other.sendData({ streamId: others, payload: json({ n }) });
    }
    await client.sendData({ streamId: poisoned, payload: json({ v: 1 }) });
    const [poisonedResults, neighbourResults, othersResults] = await closeAndCollect([
      [client, poisoned],
      [client, neighbour],
      [other, others],
    ]);
    expect(poisonedResults.map(dataOf)).toEqual([{ v: 1 }]);
    expect(neighbourResults.map(dataOf)).toEqual([[1, 2, 3], ...range(BEHIND).map((n) => ({ n }))]);
    expect(othersResults.map(dataOf)).toEqual(range(BEHIND).map((n) => ({ n })));

    const { counts } = await client.getStream({ streamId: poisoned });
    expect(counts).toMatchObject({ failed: 1n, results: 1n });
    expect(await failedMetric(server, "exception")).toBe(before + 1);
    const warned = lines.filter((line) => line.stream === keyOf(poisoned) && line.reason === "exception");
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ level: 40, cursor: expect.any(String), error: "SyntaxError" });
    expect(JSON.stringify(lines)).not.toContain(SECRET);
  });

  it("skips a result on the results topic that cannot be read, and the watch goes on", async () => {
    const client = streamClient(server, "grpc", TEST_API_KEY);
    const other = streamClient(server, "connect-json", OTHER_KEY);
    const streamId = "poison-result";
    await client.startStream({ streamId });
    const live = take(client.watchResults({ streamId }), 2);
    const filtered = take(other.watchResults({ streamId, filter: "data.n > 0" }), 2);
    await client.sendData({ streamId, payload: json({ n: 1 }) });
    await server.app.broker.produce(topics.results, [
      {
        key: keyOf(streamId),
        value: encoder.encode(`{bad ${SECRET}`),
        headers: { "content-type": "application/json", "streamgate-process-time": "never" },
      },
    ]);
    await client.sendData({ streamId, payload: json({ n: 2 }) });

    expect((await live).map(dataOf)).toEqual([{ n: 1 }, { n: 2 }]);
    expect((await filtered).map(dataOf)).toEqual([{ n: 1 }, { n: 2 }]);
    await client.closeStream({ streamId });
    // From the start again, and resuming from the first result: past the bad one either way.
    const all = await collect(client.watchResults({ streamId }));
    expect(all.map(dataOf)).toEqual([{ n: 1 }, { n: 2 }]);
    const resumed = await collect(other.watchResults({ streamId, afterCursor: all[0]!.result!.cursor }));
    expect(resumed.map(dataOf)).toEqual([{ n: 2 }]);
    expect(
      lines.filter((line) => line.stream === keyOf(streamId) && line.msg === "unreadable result skipped"),
    ).not.toHaveLength(0);
    expect(JSON.stringify(lines)).not.toContain(SECRET);
  });
});

describe("on Kafka, across restarts", () => {
  const prefix = uniqueTopicPrefix();
  const ingest = `${prefix}ingest`;
  const env = serverEnv("kafka", prefix);
  const lines: Array<Record<string, unknown>> = [];
  let server: TestServer | undefined;
  afterAll(() => server?.close());

  it("fails a poison record once after a restart, commits it, and does not process it again", {
    timeout: 90_000,
  }, async () => {
    server = await startTestServer(env, "kafka", capturingLogger(lines));
    const poisoned = "poison-restart";
    const [neighbour] = samePartition(server, ingest, poisoned, 1) as [string];
    let client = streamClient(server, "grpc", TEST_API_KEY);
    await client.startStream({ streamId: poisoned, processing: { transform: TRIPLE } });
    await client.startStream({ streamId: neighbour });
    await client.sendData({ streamId: neighbour, payload: json({ n: -1 }) });
    expect((await take(client.watchResults({ streamId: neighbour }), 1)).map(dataOf)).toEqual([{ n: -1 }]);
    await server.close();

    // While no gateway runs, a producer writes two poison records straight to
    // the ingest topic (a result too large; JSON that does not parse), then
    // more good records behind them than PROCESSOR_MAX_IN_FLIGHT.
    const writer = await testKafkaClient(`${prefix}writer`);
    try {
      await writer.ensureTopics([{ name: ingest, partitions: 3, compacted: false }]);
      const record = (streamId: string, value: JsonValue) => ({
        key: keyOf(streamId),
        value: encoder.encode(JSON.stringify(value)),
        headers: dataHeaders("json", {}, "", Date.now()),
      });
      await writer.produce(ingest, [
        record(poisoned, { s: SECRET.repeat(200) }),
        {
          key: keyOf(poisoned),
          value: encoder.encode(`{"s": ${SECRET}}`),
          headers: { "content-type": "application/json" },
        },
        ...range(BEHIND).map((n) => record(neighbour, { n })),
        record(poisoned, { s: "ok" }),
      ]);
    } finally {
      await writer.close();
    }

    // The next gateway meets the poison records first: each fails once, and the partition moves on.
    server = await startTestServer(env, "kafka", capturingLogger(lines));
    client = streamClient(server, "grpc", TEST_API_KEY);
    const other = streamClient(server, "connect-json", OTHER_KEY);
    const neighbourResults = await take(other.watchResults({ streamId: neighbour }), 1 + BEHIND);
    expect(neighbourResults.map(dataOf)).toEqual([{ n: -1 }, ...range(BEHIND).map((n) => ({ n }))]);
    expect((await take(client.watchResults({ streamId: poisoned }), 1)).map(dataOf)).toEqual([tripled("ok")]);
    expect((await client.getStream({ streamId: poisoned })).counts).toMatchObject({ failed: 2n, results: 1n });
    expect(await failedMetric(server, "result_too_large")).toBe(1);
    expect(await failedMetric(server, "exception")).toBe(1);
    await server.close();

    // And the one after it does not meet them again: they were committed.
    server = await startTestServer(env, "kafka", capturingLogger(lines));
    client = streamClient(server, "grpc", TEST_API_KEY);
    await client.sendData({ streamId: poisoned, payload: json({ s: "go" }) });
    await client.sendData({ streamId: neighbour, payload: json({ n: BEHIND }) });
    await client.closeStream({ streamId: poisoned });
    await client.closeStream({ streamId: neighbour });
    expect((await collect(client.watchResults({ streamId: poisoned }))).map(dataOf)).toEqual([
      tripled("ok"),
      tripled("go"),
    ]);
    const all = await collect(client.watchResults({ streamId: neighbour }));
    expect(all.map(dataOf)).toEqual([{ n: -1 }, ...range(BEHIND + 1).map((n) => ({ n }))]);
    expect((await client.getStream({ streamId: poisoned })).counts).toMatchObject({ failed: 0n, results: 1n });
    expect(await failedMetric(server, "result_too_large")).toBe(0);
    expect(await failedMetric(server, "exception")).toBe(0);
    expect(JSON.stringify(lines)).not.toContain(SECRET);
  });
});

describe("on Kafka, results the broker refuses as too large", () => {
  const prefix = uniqueTopicPrefix();
  // Above Kafka's default message.max.bytes (about 1 MB): the broker, not MAX_PAYLOAD_BYTES, is the bound here.
  const env = { ...serverEnv("kafka", prefix), MAX_PAYLOAD_BYTES: String(4 * 1024 * 1024) };
  let server: TestServer | undefined;
  afterAll(() => server?.close());

  it("fails a result the broker can never store, and large records sent together are all stored", async () => {
    server = await startTestServer(env, "kafka", capturingLogger([]));
    const client = streamClient(server, "grpc", TEST_API_KEY);
    const other = streamClient(server, "connect-json", OTHER_KEY);
    const poisoned = "poison-broker-size";
    const [neighbour] = samePartition(server, `${prefix}ingest`, poisoned, 1) as [string];
    await client.startStream({ streamId: poisoned, processing: { transform: TRIPLE } });
    await other.startStream({ streamId: neighbour });

    // 400 KB thrice: 1.2 MB, under MAX_PAYLOAD_BYTES, over what the broker stores.
    await client.sendData({ streamId: poisoned, payload: json({ s: "a".repeat(400_000) }) });
    // Three records of 400 KB at once: batched together they were over the broker's limit, all of them.
    const large = (n: number) => ({ n, s: String(n).repeat(400_000) });
    await Promise.all([0, 1, 2].map((n) => other.sendData({ streamId: neighbour, payload: json(large(n)) })));
    for (const n of range(BEHIND)) await other.sendData({ streamId: neighbour, payload: json({ n: 3 + n }) });
    await client.sendData({ streamId: poisoned, payload: json({ s: "ok" }) });
    await client.closeStream({ streamId: poisoned });
    await other.closeStream({ streamId: neighbour });

    expect((await collect(client.watchResults({ streamId: poisoned }))).map(dataOf)).toEqual([tripled("ok")]);
    const neighbourResults = (await collect(other.watchResults({ streamId: neighbour }))).map(dataOf) as Array<{
      n: number;
    }>;
    expect(neighbourResults.map((result) => result.n).sort((a, b) => a - b)).toEqual(range(3 + BEHIND));
    expect(neighbourResults.slice(0, 3)).toEqual(expect.arrayContaining([large(0), large(1), large(2)]));
    expect((await client.getStream({ streamId: poisoned })).counts).toMatchObject({ failed: 1n, results: 1n });
    expect(await failedMetric(server, "result_too_large")).toBe(1);
  });
});
