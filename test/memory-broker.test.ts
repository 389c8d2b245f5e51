/**
 * The embedded memory broker behaves like a Kafka log: keyed records land in
 * one partition each and keep their order; offsets grow per partition; reads
 * start anywhere; retention (by count and by age) and compaction drop old
 * records while offsets stay put; subscribers start at earliest, latest or
 * given offsets; a batch carries its partition's high watermark; a consumer
 * group resumes from its committed offsets; a batch whose handler fails is
 * delivered again.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Broker, RecordBatch, StoredRecord, SubscribeOptions, Subscription } from "../src/broker/broker.js";
import { createMemoryBroker, type MemoryBrokerOptions } from "../src/broker/memory.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const brokers: Broker[] = [];
afterEach(async () => {
  await Promise.all(brokers.splice(0).map((broker) => broker.close()));
});

/** A memory broker with one topic `t` of `partitions` partitions, closed after the test. */
async function brokerWith(
  partitions: number,
  options: Partial<MemoryBrokerOptions> = {},
  compacted = false,
): Promise<Broker> {
  const broker = createMemoryBroker({ retentionRecords: 1_000_000, retentionMs: 0, ...options });
  brokers.push(broker);
  await broker.ensureTopics([{ name: "t", partitions, compacted }]);
  return broker;
}

/** A record of `key` whose value is `text`. */
function record(key: string, text: string, timestamp?: number) {
  return { key, value: encoder.encode(text), headers: { h: text }, timestamp };
}

const text = (stored: StoredRecord) => decoder.decode(stored.value);
const offsetsOf = (records: StoredRecord[]) => records.map((stored) => stored.offset);

/**
 * Subscribes and gathers what `eachBatch` receives; `until(n)` resolves once
 * `n` records have arrived (no polling: eachBatch itself resolves it).
 */
async function gather(broker: Broker, options: Omit<SubscribeOptions, "eachBatch" | "topic">) {
  const received: StoredRecord[] = [];
  const batches: RecordBatch[] = [];
  let waiter: { count: number; resolve: () => void } | undefined;
  const subscription = await broker.subscribe({
    topic: "t",
    ...options,
    eachBatch: async (batch) => {
      batches.push(batch);
      received.push(...batch.records);
      if (waiter && received.length >= waiter.count) waiter.resolve();
    },
  });
  const until = (count: number) =>
    received.length >= count
      ? Promise.resolve(received)
      : new Promise<StoredRecord[]>((resolve) => (waiter = { count, resolve: () => resolve(received) }));
  return { subscription, received, batches, until };
}

describe("produce and fetch", () => {
  it("returns each record's partition and offset, offsets growing per partition", async () => {
    const broker = await brokerWith(4);
    const keys = Array.from({ length: 40 }, (_, i) => `key-${i % 10}`);
    const positions = await broker.produce(
      "t",
      keys.map((key, i) => record(key, `v${i}`)),
    );

    const next = [0, 0, 0, 0];
    positions.forEach((position, i) => {
      expect(position.partition).toBe(broker.partitionFor("t", keys[i]!));
      expect(position.offset).toBe(next[position.partition]!++);
    });
    expect(next.filter((count) => count > 0).length).toBeGreaterThan(1);
    for (let partition = 0; partition < 4; partition++) {
      expect(await broker.offsets("t", partition)).toEqual({ low: 0, high: next[partition] });
    }
  });

  it("keeps one key in one partition, in the order of the calls", async () => {
    const broker = await brokerWith(3);
    for (let i = 0; i < 5; i++) {
      await broker.produce("t", [record("a", `a${i}`), record("b", `b${i}`)]);
    }
    for (const key of ["a", "b"]) {
      const partition = broker.partitionFor("t", key);
      const stored = (await broker.fetch("t", partition, 0, 100)).filter((r) => r.key === key);
      expect(stored.map(text)).toEqual([0, 1, 2, 3, 4].map((i) => `${key}${i}`));
      expect(stored.every((r) => r.partition === partition && r.topic === "t")).toBe(true);
    }
  });

  it("stores headers and the timestamp, the broker's clock when none is given", async () => {
    const broker = await brokerWith(1, { now: () => 5_000 });
    await broker.produce("t", [record("k", "x"), record("k", "y", 1_234)]);
    const [first, second] = await broker.fetch("t", 0, 0, 10);
    expect(first).toMatchObject({ key: "k", headers: { h: "x" }, timestamp: 5_000 });
    expect(second).toMatchObject({ key: "k", headers: { h: "y" }, timestamp: 1_234 });
  });

  it("fetches from any offset, at most maxRecords", async () => {
    const broker = await brokerWith(1);
    await broker.produce(
      "t",
      Array.from({ length: 10 }, (_, i) => record("k", `v${i}`)),
    );
    expect((await broker.fetch("t", 0, 4, 3)).map(text)).toEqual(["v4", "v5", "v6"]);
    expect((await broker.fetch("t", 0, 8, 100)).map(text)).toEqual(["v8", "v9"]);
    expect(await broker.fetch("t", 0, 10, 100)).toEqual([]);
  });

  it("refuses unknown topics and partitions", async () => {
    const broker = await brokerWith(2);
    await expect(broker.produce("nope", [record("k", "v")])).rejects.toThrow(/nope/);
    await expect(broker.fetch("t", 2, 0, 1)).rejects.toThrow(/partition 2/);
    expect(() => broker.partitionCount("nope")).toThrow(/nope/);
  });

  it("leaves an existing topic as it is", async () => {
    const broker = await brokerWith(2);
    await broker.produce("t", [record("k", "v")]);
    await broker.ensureTopics([{ name: "t", partitions: 8, compacted: false }]);
    expect(broker.partitionCount("t")).toBe(2);
    expect(await broker.offsets("t", broker.partitionFor("t", "k"))).toEqual({ low: 0, high: 1 });
  });
});

describe("retention", () => {
  it("keeps at least retentionRecords per partition and drops older ones, offsets unchanged", async () => {
    const broker = await brokerWith(1, { retentionRecords: 10 });
    for (let i = 0; i < 100; i++) await broker.produce("t", [record("k", `v${i}`)]);

    const { low, high } = await broker.offsets("t", 0);
    expect(high).toBe(100);
    expect(low).toBeGreaterThan(0);
    // Dropping is batched, so a little more than the bound may stay, never less.
    expect(high - low).toBeGreaterThanOrEqual(10);
    expect(high - low).toBeLessThan(20);
    const kept = await broker.fetch("t", 0, 0, 1000);
    expect(offsetsOf(kept)).toEqual(Array.from({ length: high - low }, (_, i) => low + i));
    expect(kept.map(text).at(-1)).toBe("v99");
  });

  it("drops records older than retentionMs by the broker's clock", async () => {
    let now = 1_000_000;
    const broker = await brokerWith(1, { retentionMs: 60_000, now: () => now });
    await broker.produce("t", [record("k", "old-1"), record("k", "old-2")]);
    now += 30_000;
    await broker.produce("t", [record("k", "recent")]);
    expect(await broker.offsets("t", 0)).toEqual({ low: 0, high: 3 });

    now += 40_000; // old-1 and old-2 are now 70 s old, recent 40 s.
    await broker.produce("t", [record("k", "new")]);
    expect(await broker.offsets("t", 0)).toEqual({ low: 2, high: 4 });
    expect((await broker.fetch("t", 0, 0, 10)).map(text)).toEqual(["recent", "new"]);
  });
});

describe("compaction", () => {
  it("keeps the latest record of each key with its original offset, leaving gaps", async () => {
    const broker = await brokerWith(1, {}, true);
    // Compaction runs once a partition outgrows 1024 records, mostly superseded.
    const keys = Array.from({ length: 1100 }, (_, i) => (i === 1050 ? "a" : i === 1070 ? "b" : "filler"));
    keys[10] = "a";
    await broker.produce(
      "t",
      keys.map((key, i) => record(key, `${key}@${i}`)),
    );

    const kept = await broker.fetch("t", 0, 0, 2000);
    expect(kept.map((r) => [r.offset, text(r)])).toEqual([
      [1050, "a@1050"],
      [1070, "b@1070"],
      [1099, "filler@1099"],
    ]);
    expect(await broker.offsets("t", 0)).toEqual({ low: 1050, high: 1100 });
    // A read from a compacted-away offset starts at the next record kept.
    expect(offsetsOf(await broker.fetch("t", 0, 1051, 10))).toEqual([1070, 1099]);

    const { until } = await gather(broker, { from: "earliest" });
    expect(offsetsOf(await until(3))).toEqual([1050, 1070, 1099]);
  });

  it("compacts only once half the log is superseded, counting from the last compaction", async () => {
    const broker = await brokerWith(1, {}, true);
    const keys = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `k${from + i}`);
    const write = (list: string[]) =>
      broker.produce(
        "t",
        list.map((key) => record(key, key)),
      );
    // Distinct keys (a registry of 2,000 streams): nothing is superseded, nothing dropped.
    await write(keys(0, 2000));
    // 999 of 2,999 superseded: under half, still nothing dropped.
    await write(keys(0, 999));
    expect(await broker.offsets("t", 0)).toEqual({ low: 0, high: 2999 });
    expect(await broker.fetch("t", 0, 0, 5000)).toHaveLength(2999);
    // 2,000 of 4,000: compacted to each key's latest record.
    await write(keys(999, 2000));
    const kept = await broker.fetch("t", 0, 0, 5000);
    expect(kept).toHaveLength(2000);
    expect(kept[0]!.offset).toBe(2000);
    expect(await broker.offsets("t", 0)).toEqual({ low: 2000, high: 4000 });
    // One record superseded since: far from half of the log, so it stays.
    await write(["k0"]);
    expect(await broker.fetch("t", 0, 0, 5000)).toHaveLength(2001);
  });

  it("ignores count retention on a compacted topic", async () => {
    const broker = await brokerWith(1, { retentionRecords: 2 }, true);
    await broker.produce(
      "t",
      ["a", "b", "c", "d"].map((key) => record(key, key)),
    );
    expect(await broker.offsets("t", 0)).toEqual({ low: 0, high: 4 });
  });
});

describe("subscribe", () => {
  it("starts at the earliest record, or at the end", async () => {
    const broker = await brokerWith(2);
    await broker.produce("t", [record("a", "a0"), record("b", "b0")]);
    const earliest = await gather(broker, { from: "earliest" });
    const latest = await gather(broker, { from: "latest" });
    await earliest.until(2);

    await broker.produce("t", [record("a", "a1"), record("b", "b1")]);
    expect((await earliest.until(4)).map(text).sort()).toEqual(["a0", "a1", "b0", "b1"]);
    expect((await latest.until(2)).map(text).sort()).toEqual(["a1", "b1"]);
  });

  it("starts at given offsets, overriding `from`", async () => {
    const broker = await brokerWith(1);
    await broker.produce(
      "t",
      Array.from({ length: 6 }, (_, i) => record("k", `v${i}`)),
    );
    const { until } = await gather(broker, { from: "latest", startOffsets: [4] });
    expect((await until(2)).map(text)).toEqual(["v4", "v5"]);
  });

  it("delivers a partition in offset order, in batches of at most maxBatch", async () => {
    const broker = await brokerWith(1, { maxBatch: 4 });
    await broker.produce(
      "t",
      Array.from({ length: 10 }, (_, i) => record("k", `v${i}`)),
    );
    const { until, batches } = await gather(broker, { from: "earliest" });
    expect(offsetsOf(await until(10))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(batches.every((batch) => batch.records.length <= 4 && batch.partition === 0 && batch.topic === "t")).toBe(
      true,
    );
  });

  it("tells each batch its partition's high watermark, and assigns a subscriber every partition", async () => {
    const broker = await brokerWith(2, { maxBatch: 4 });
    await broker.produce(
      "t",
      Array.from({ length: 10 }, (_, i) => record("k", `v${i}`)),
    );
    const assignments: number[][] = [];
    const { until, batches } = await gather(broker, {
      from: "earliest",
      onAssignment: (partitions) => assignments.push(partitions),
    });
    await until(10);
    expect(assignments).toEqual([[0, 1]]);
    // All ten were written before the first read: each batch, the first one too, counts them.
    expect(batches.map((batch) => [batch.records.length, batch.highWatermark])).toEqual([
      [4, 10],
      [4, 10],
      [2, 10],
    ]);
    await broker.produce("t", [record("k", "v10")]);
    await until(11);
    expect(batches.at(-1)!.highWatermark).toBe(11);
  });

  it("resumes a consumer group from its committed offsets", async () => {
    const broker = await brokerWith(1);
    await broker.produce(
      "t",
      Array.from({ length: 5 }, (_, i) => record("k", `v${i}`)),
    );

    const first = await gather(broker, { groupId: "g", from: "earliest" });
    await first.until(5);
    await first.subscription.commit(0, 3); // v0..v2 are done; v3 and v4 are not.
    await first.subscription.close();
    await broker.produce("t", [record("k", "v5")]);

    const second = await gather(broker, { groupId: "g", from: "earliest" });
    expect((await second.until(3)).map(text)).toEqual(["v3", "v4", "v5"]);
    // Another group has its own offsets.
    const other = await gather(broker, { groupId: "other", from: "earliest" });
    expect((await other.until(6)).map(text)[0]).toBe("v0");
  });

  it("never moves a committed offset backwards, and needs a group to commit", async () => {
    const broker = await brokerWith(1);
    await broker.produce(
      "t",
      Array.from({ length: 4 }, (_, i) => record("k", `v${i}`)),
    );
    const first = await gather(broker, { groupId: "g", from: "earliest" });
    await first.until(4);
    await first.subscription.commit(0, 3);
    await first.subscription.commit(0, 1);
    await first.subscription.close();
    const second = await gather(broker, { groupId: "g", from: "earliest" });
    expect((await second.until(1)).map(text)).toEqual(["v3"]);

    const groupless = await gather(broker, { from: "earliest" });
    await expect(groupless.subscription.commit(0, 1)).rejects.toThrow(/group/);
  });

  it("delivers a batch again after eachBatch rejects, reporting the error", async () => {
    const broker = await brokerWith(1);
    await broker.produce("t", [record("k", "v0"), record("k", "v1")]);
    const errors: unknown[] = [];
    const deliveries: number[][] = [];
    let failures = 1;
    const { promise: redelivered, resolve } = Promise.withResolvers<void>();
    await broker.subscribe({
      topic: "t",
      from: "earliest",
      eachBatch: async (batch) => {
        deliveries.push(offsetsOf(batch.records));
        if (failures-- > 0) throw new Error("handler failed");
        resolve();
      },
      onError: (error) => errors.push(error),
    });
    await redelivered;
    expect(deliveries).toEqual([
      [0, 1],
      [0, 1],
    ]);
    expect(errors).toHaveLength(1);
    expect((errors[0] as Error).message).toBe("handler failed");
  });

  it("waits for the batch being handled when closed, then delivers nothing more", async () => {
    const broker = await brokerWith(1);
    await broker.produce("t", [record("k", "v0")]);
    const { promise: started, resolve: start } = Promise.withResolvers<void>();
    const { promise: release, resolve: finish } = Promise.withResolvers<void>();
    let handled = 0;
    let finished = false;
    const subscription: Subscription = await broker.subscribe({
      topic: "t",
      from: "earliest",
      eachBatch: async () => {
        handled++;
        start();
        await release;
        finished = true;
      },
    });
    await started;
    const closing = subscription.close();
    finish();
    await closing;
    expect(finished).toBe(true);
    // A subscriber still open sees the next record; the closed one does not.
    const open = await gather(broker, { from: "latest" });
    await broker.produce("t", [record("k", "v1")]);
    expect((await open.until(1)).map(text)).toEqual(["v1"]);
    expect(handled).toBe(1);
  });

  it("refuses to produce or subscribe once closed", async () => {
    const broker = await brokerWith(1);
    await broker.close();
    await expect(broker.produce("t", [record("k", "v")])).rejects.toThrow(/closed/);
    await expect(broker.subscribe({ topic: "t", from: "earliest", eachBatch: async () => {} })).rejects.toThrow(
      /closed/,
    );
  });
});
