/**
 * Coalesced writes (src/broker/coalescer.ts): records given in one run of
 * code, promise callbacks included, go to the broker in one produce call, in
 * the order given, each answered with its own position; records given after
 * that run go in a call of their own; a failed call fails each of its records
 * and leaves the next call unaffected; the produce options are passed on.
 */
import { afterEach, expect, it } from "vitest";
import type { Broker, ProduceOptions, ProduceRecord } from "../src/broker/broker.js";
import { coalesceProduces } from "../src/broker/coalescer.js";
import { createMemoryBroker } from "../src/broker/memory.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const brokers: Broker[] = [];
afterEach(async () => {
  await Promise.all(brokers.splice(0).map((broker) => broker.close()));
});

/** A memory broker with topic `t` (one partition) whose produce calls are recorded, and can be made to fail. */
async function recordingBroker() {
  const broker = createMemoryBroker({ retentionRecords: 1_000_000, retentionMs: 0 });
  brokers.push(broker);
  await broker.ensureTopics([{ name: "t", partitions: 1, compacted: false }]);
  const calls: Array<{ values: string[]; options: ProduceOptions | undefined }> = [];
  let failNext: Error | undefined;
  const produce = broker.produce.bind(broker);
  broker.produce = async (topic: string, records: ProduceRecord[], options?: ProduceOptions) => {
    calls.push({ values: records.map((record) => decoder.decode(record.value)), options });
    const failure = failNext;
    failNext = undefined;
    if (failure) throw failure;
    return produce(topic, records, options);
  };
  return { broker, calls, failNextCall: (error: Error) => (failNext = error) };
}

const record = (text: string): ProduceRecord => ({ key: "k", value: encoder.encode(text), headers: {} });

it("sends the records given in one run, promise callbacks included, in one call and in order", async () => {
  const { broker, calls } = await recordingBroker();
  const produce = coalesceProduces(broker, "t");
  const first = produce(record("a"));
  // Given from promise callbacks of the same run, as a client stream's messages of one read are.
  const later = Promise.resolve()
    .then(() => produce(record("b")))
    .then(async (position) => [position, await produce(record("never-in-this-call"))]);
  const second = Promise.resolve().then(() => produce(record("c")));
  expect(await first).toEqual({ partition: 0, offset: 0 });
  expect(await second).toEqual({ partition: 0, offset: 2 });
  const [b, afterB] = await later;
  expect(b).toEqual({ partition: 0, offset: 1 });
  // Given once the first call was answered: a run of its own.
  expect(afterB).toEqual({ partition: 0, offset: 3 });
  expect(calls.map((call) => call.values)).toEqual([["a", "b", "c"], ["never-in-this-call"]]);
  const stored = await broker.fetch("t", 0, 0, 10);
  expect(stored.map((stored) => decoder.decode(stored.value))).toEqual(["a", "b", "c", "never-in-this-call"]);
});

it("makes a call per run: records given after a turn of the event loop go separately", async () => {
  const { broker, calls } = await recordingBroker();
  const produce = coalesceProduces(broker, "t");
  const first = produce(record("a"));
  await new Promise((resolve) => setImmediate(resolve));
  const second = produce(record("b"));
  expect(await Promise.all([first, second])).toEqual([
    { partition: 0, offset: 0 },
    { partition: 0, offset: 1 },
  ]);
  expect(calls.map((call) => call.values)).toEqual([["a"], ["b"]]);
});

it("fails every record of a failed call, and the next call stands on its own", async () => {
  const { broker, calls, failNextCall } = await recordingBroker();
  const produce = coalesceProduces(broker, "t");
  failNextCall(new Error("broker away"));
  const failed = [produce(record("a")), produce(record("b"))];
  for (const outcome of await Promise.allSettled(failed)) {
    expect(outcome).toMatchObject({ status: "rejected", reason: { message: "broker away" } });
  }
  expect(await produce(record("c"))).toEqual({ partition: 0, offset: 0 });
  expect(calls.map((call) => call.values)).toEqual([["a", "b"], ["c"]]);
  expect((await broker.fetch("t", 0, 0, 10)).map((stored) => decoder.decode(stored.value))).toEqual(["c"]);
});

it("passes its produce options on every call", async () => {
  const { broker, calls } = await recordingBroker();
  const produce = coalesceProduces(broker, "t", { timeoutMs: Infinity });
  await produce(record("a"));
  expect(calls).toEqual([{ values: ["a"], options: { timeoutMs: Infinity } }]);
});
