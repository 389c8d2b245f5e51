/**
 * KAFKA_LINGER_MS and KAFKA_BATCH_MAX_RECORDS, as README describes them ("How
 * long a produce waits for others to batch with", "Most records in one produce
 * request"). test/produce-batcher.test.ts runs the batcher with no linger (or
 * one cut short) and never more records than fit in one request; this file
 * covers what it does not:
 * - on the batcher, with a fake clock (setTimeout only): the records of calls
 *   made within the linger go out as one request when the linger from the
 *   first of them ends; a lone record waits the whole linger, and so does the
 *   next lone one; a burst larger than maxRecords goes out as requests of at
 *   most maxRecords, in call order, without waiting for the linger;
 * - the settings as the environment gives them (defaults, bounds);
 * - on a real server and the run's Kafka broker, watching the Kafka client's
 *   produce requests: the configured linger holds a record for one made in a
 *   later turn, and concurrent SendData calls go out in requests of at most
 *   the configured number of records.
 */
import { Producer } from "@platformatic/kafka";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { type PendingRecord, ProduceBatcher } from "../src/broker/produce-batcher.js";
import { ConfigError, loadConfig } from "../src/config/config.js";
import { kafkaBrokers } from "./support/kafka-control.js";
import { startTestServer, streamClient, type TestServer, uniqueTopicPrefix } from "./support/server.js";

/** A send function whose requests the test answers by hand (as in test/produce-batcher.test.ts). */
function manualBroker() {
  const requests: Array<{ batch: PendingRecord[]; answer(): void }> = [];
  let next = 0;
  const send = (batch: PendingRecord[]) =>
    new Promise<void>((resolve) => {
      requests.push({
        batch,
        answer() {
          for (const entry of batch) entry.resolve({ partition: entry.partition, offset: next++ });
          resolve();
        },
      });
    });
  /** The keys of each request sent so far. */
  const keys = () => requests.map((request) => request.batch.map((entry) => entry.record.key));
  return { requests, send, keys };
}

const record = (key: string) => ({
  topic: "t",
  partition: 0,
  record: { key, value: new Uint8Array([1]), headers: {} },
});

/**
 * Lets the event loop go round a few times (real setImmediate; only setTimeout
 * is faked), so that anything the batcher scheduled without a timer has run.
 * Not a wait for time: the fake clock does not move.
 */
async function settle(): Promise<void> {
  for (let turn = 0; turn < 10; turn++) await new Promise((resolve) => setImmediate(resolve));
}

describe("ProduceBatcher linger and batch size (fake clock)", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("sends the records of calls made within the linger as one request, when the first one's linger ends", async () => {
    const broker = manualBroker();
    const batcher = new ProduceBatcher(broker.send, { lingerMs: 50, maxRecords: 100, timeoutMs: Infinity });
    const calls = [batcher.add([record("a")])];
    await settle();
    vi.advanceTimersByTime(20);
    calls.push(batcher.add([record("b"), record("c")]));
    await settle();
    vi.advanceTimersByTime(20);
    calls.push(batcher.add([record("d")]));
    await settle();
    vi.advanceTimersByTime(9); // 49 ms after the first call: still lingering
    await settle();
    expect(broker.requests).toHaveLength(0);
    vi.advanceTimersByTime(1); // 50 ms after the first call (not the last): sent
    await settle();
    expect(broker.keys()).toEqual([["a", "b", "c", "d"]]);
    broker.requests[0]!.answer();
    expect((await Promise.all(calls)).flat().map((position) => position.offset)).toEqual([0, 1, 2, 3]);
  });

  it("holds a lone record for the whole linger, and the next lone record too", async () => {
    const broker = manualBroker();
    const batcher = new ProduceBatcher(broker.send, { lingerMs: 40, maxRecords: 100, timeoutMs: Infinity });
    const first = batcher.add([record("alone-1")]);
    await settle();
    vi.advanceTimersByTime(39);
    await settle();
    expect(broker.requests).toHaveLength(0);
    vi.advanceTimersByTime(1);
    await settle();
    expect(broker.keys()).toEqual([["alone-1"]]);
    broker.requests[0]!.answer();
    expect(await first).toEqual([{ partition: 0, offset: 0 }]);

    // Idle again: the next lone record lingers from its own arrival.
    await settle();
    vi.advanceTimersByTime(1_000);
    const second = batcher.add([record("alone-2")]);
    await settle();
    vi.advanceTimersByTime(39);
    await settle();
    expect(broker.requests).toHaveLength(1);
    vi.advanceTimersByTime(1);
    await settle();
    expect(broker.keys()).toEqual([["alone-1"], ["alone-2"]]);
    broker.requests[1]!.answer();
    expect(await second).toEqual([{ partition: 0, offset: 1 }]);
  });

  it("splits a burst of calls larger than maxRecords into requests of at most maxRecords, in order, one at a time", async () => {
    const broker = manualBroker();
    const batcher = new ProduceBatcher(broker.send, { lingerMs: 50, maxRecords: 3, timeoutMs: Infinity });
    const keys = Array.from({ length: 8 }, (_, i) => `k${i}`);
    const calls = keys.map((key) => batcher.add([record(key)]));
    // A full batch does not wait for the linger: the clock does not move in this test.
    await settle();
    expect(broker.keys()).toEqual([["k0", "k1", "k2"]]);
    broker.requests[0]!.answer();
    await settle();
    expect(broker.keys()).toEqual([
      ["k0", "k1", "k2"],
      ["k3", "k4", "k5"],
    ]);
    broker.requests[1]!.answer();
    await settle();
    // The rest, fewer than maxRecords, waited a round trip already: it goes without the linger.
    expect(broker.keys()).toEqual([
      ["k0", "k1", "k2"],
      ["k3", "k4", "k5"],
      ["k6", "k7"],
    ]);
    broker.requests[2]!.answer();
    expect((await Promise.all(calls)).flat().map((position) => position.offset)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it("splits one call of more than maxRecords records across requests, and resolves it with every position in order", async () => {
    const broker = manualBroker();
    const batcher = new ProduceBatcher(broker.send, { lingerMs: 50, maxRecords: 3, timeoutMs: Infinity });
    const call = batcher.add(["r0", "r1", "r2", "r3", "r4", "r5", "r6"].map(record));
    for (let request = 0; request < 3; request++) {
      await settle();
      expect(broker.requests).toHaveLength(request + 1);
      broker.requests[request]!.answer();
    }
    expect(broker.keys()).toEqual([["r0", "r1", "r2"], ["r3", "r4", "r5"], ["r6"]]);
    expect((await call).map((position) => position.offset)).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });
});

describe("the settings in the environment", () => {
  const kafkaOf = (env: Record<string, string>) => loadConfig({ KAFKA_BROKERS: "127.0.0.1:9092", ...env }).kafka!;

  it("default to a 2 ms linger and 1000 records", () => {
    expect(kafkaOf({})).toMatchObject({ lingerMs: 2, batchMaxRecords: 1000 });
  });

  it("are read from KAFKA_LINGER_MS and KAFKA_BATCH_MAX_RECORDS", () => {
    expect(kafkaOf({ KAFKA_LINGER_MS: "0", KAFKA_BATCH_MAX_RECORDS: "1" })).toMatchObject({
      lingerMs: 0,
      batchMaxRecords: 1,
    });
    expect(kafkaOf({ KAFKA_LINGER_MS: "1000", KAFKA_BATCH_MAX_RECORDS: "100000" })).toMatchObject({
      lingerMs: 1000,
      batchMaxRecords: 100_000,
    });
  });

  it("refuse values out of their bounds, or not whole numbers, naming the variable", () => {
    let problems: string[] = [];
    try {
      kafkaOf({ KAFKA_LINGER_MS: "1001", KAFKA_BATCH_MAX_RECORDS: "0" });
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      problems = (error as ConfigError).problems;
    }
    expect(problems).toEqual([
      'KAFKA_LINGER_MS="1001" must be a whole number from 0 to 1000',
      'KAFKA_BATCH_MAX_RECORDS="0" must be a whole number from 1 to 100000',
    ]);
    expect(() => kafkaOf({ KAFKA_LINGER_MS: "2.5" })).toThrow(/KAFKA_LINGER_MS="2.5" must be a whole number/);
  });
});

describe("on a real server and Kafka broker", () => {
  const MAX = 3;
  let server: TestServer;
  let prefix: string;
  const originalSend = Producer.prototype.send;
  /** The topic and key of every message of each produce request the Kafka client sent, in order. */
  const requests: Array<Array<{ topic: string; key: string }>> = [];

  beforeAll(async () => {
    // Pass-through: the real client sends every request; this only notes what each one carried.
    vi.spyOn(Producer.prototype, "send").mockImplementation(function (this: Producer, ...args: unknown[]) {
      const { messages } = args[0] as { messages: Array<{ topic: string; key?: unknown }> };
      requests.push(messages.map((message) => ({ topic: message.topic, key: String(message.key) })));
      return (originalSend as (...args: unknown[]) => unknown).apply(this, args);
    } as typeof originalSend);
    prefix = uniqueTopicPrefix();
    server = await startTestServer(
      {
        KAFKA_BROKERS: kafkaBrokers(),
        KAFKA_TOPIC_PREFIX: prefix,
        KAFKA_LINGER_MS: "1000",
        KAFKA_BATCH_MAX_RECORDS: String(MAX),
      },
      "kafka",
    );
    await server.app.broker.ensureTopics([{ name: `${prefix}batching`, partitions: 1, compacted: false }]);
  });
  afterAll(async () => {
    await server?.close();
    vi.restoreAllMocks();
  });

  /** The keys of `topic`'s messages in each request that had any. */
  const keysOn = (topic: string) =>
    requests
      .map((messages) => messages.filter((message) => message.topic === topic).map((message) => message.key))
      .filter((keys) => keys.length > 0);

  it("holds a record for KAFKA_LINGER_MS: one produced in a later turn goes in the same request", async () => {
    const topic = `${prefix}batching`;
    const value = new Uint8Array([1]);
    const first = server.app.broker.produce(topic, [{ key: "linger-1", value, headers: {} }]);
    // Later turns of the event loop (microseconds, against a 1000 ms linger): nothing is sent yet.
    await settle();
    expect(keysOn(topic)).toEqual([]);
    const second = server.app.broker.produce(topic, [{ key: "linger-2", value, headers: {} }]);
    const [[a], [b]] = await Promise.all([first, second]);
    expect(keysOn(topic)).toEqual([["linger-1", "linger-2"]]);
    expect(b!.offset).toBe(a!.offset + 1);
  });

  it("sends concurrent SendData calls in requests of at most KAFKA_BATCH_MAX_RECORDS records", async () => {
    const client = streamClient(server);
    await client.startStream({ streamId: "burst" });
    const before = requests.length;
    const count = 7;
    await Promise.all(
      Array.from({ length: count }, (_, i) =>
        client.sendData({ streamId: "burst", eventId: `e${i}`, payload: { case: "raw", value: new Uint8Array([i]) } }),
      ),
    );
    const sent = requests.slice(before);
    const ingest = sent
      .map((messages) => messages.filter((message) => message.topic === `${prefix}ingest`))
      .filter((messages) => messages.length > 0);
    for (const messages of sent) expect(messages.length).toBeLessThanOrEqual(MAX);
    // Every record sent once, and coalesced: fewer requests than records, the first one full.
    expect(ingest.flat()).toHaveLength(count);
    expect(ingest.length).toBeLessThan(count);
    expect(ingest[0]).toHaveLength(MAX);
  });
});
