/**
 * Recovery of an ingest partition (src/processing/recovery.ts) against the
 * memory broker: the tail of the results partition of the same number is read
 * back, and each result whose source cursor names this ingest partition is
 * reported, in log order, with its source offset, event id and registry
 * entry; results of another partition, with a malformed or missing source
 * cursor, or from before their stream's `resultsStart` are not; at least
 * RECOVERY_SCAN_MIN results (or `minResults`, when more) are read back from
 * the end, no further back than the oldest retained, and none written after
 * the read began; the count returned is the results reported.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Broker, ProduceRecord } from "../src/broker/broker.js";
import { createMemoryBroker, type MemoryBrokerOptions } from "../src/broker/memory.js";
import { RECOVERY_SCAN_MIN, type RecoveryOptions, recoverPartition } from "../src/processing/recovery.js";
import { encodeCursor } from "../src/streams/cursor.js";
import type { StreamEntry } from "../src/streams/registry.js";
import { HEADER } from "../src/topics/record-format.js";

const TOPIC = "results";
const encoder = new TextEncoder();

const brokers: Broker[] = [];
afterEach(async () => {
  await Promise.all(brokers.splice(0).map((broker) => broker.close()));
});

/** A memory broker with a one-partition results topic (so every key lands on partition 0), closed after the test. */
async function resultsBroker(options: Partial<MemoryBrokerOptions> = {}): Promise<Broker> {
  const broker = createMemoryBroker({ retentionRecords: 1_000_000, retentionMs: 0, ...options });
  brokers.push(broker);
  await broker.ensureTopics([{ name: TOPIC, partitions: 1, compacted: false }]);
  return broker;
}

/** A result of `key` made from the ingest record at `source` (a cursor string, or none), with `eventId` if given. */
function result(key: string, source: string | undefined, eventId?: string): ProduceRecord {
  const headers: Record<string, string> = { [HEADER.contentType]: "application/json" };
  if (source !== undefined) headers[HEADER.sourceCursor] = source;
  if (eventId !== undefined) headers[HEADER.eventId] = eventId;
  return { key, value: encoder.encode("{}"), headers };
}

/** A registry holding `entries` by key (only what recovery reads of an entry is set). */
function registry(entries: Record<string, Partial<StreamEntry>>) {
  return { get: (key: string) => entries[key] as StreamEntry | undefined };
}

interface Reported {
  key: string;
  sourceOffset: number;
  eventId: string | undefined;
  entry: StreamEntry | undefined;
}

/** Recovers ingest partition 0 from `broker`, gathering what is reported. */
async function recover(broker: RecoveryOptions["broker"], options: Partial<RecoveryOptions> = {}) {
  const reported: Reported[] = [];
  const found = await recoverPartition({
    broker,
    resultsTopic: TOPIC,
    registry: registry({}),
    partition: 0,
    minResults: 0,
    onResult: (key, sourceOffset, eventId, entry) => reported.push({ key, sourceOffset, eventId, entry }),
    ...options,
  });
  return { found, reported };
}

describe("recoverPartition", () => {
  it("reports this ingest partition's results with their source offset, event id and entry, in log order", async () => {
    const broker = await resultsBroker();
    await broker.produce(TOPIC, [
      result("t/a", encodeCursor("ingest", 0, 10), "e-10"),
      result("t/b", encodeCursor("ingest", 0, 11)),
      result("t/a", encodeCursor("ingest", 0, 12), "e-12"),
    ]);
    const a = { key: "t/a", resultsStart: 0 };
    const { found, reported } = await recover(broker, { registry: registry({ "t/a": a }) });
    expect(reported).toEqual([
      { key: "t/a", sourceOffset: 10, eventId: "e-10", entry: a },
      // A stream the registry does not hold is still reported, with no entry.
      { key: "t/b", sourceOffset: 11, eventId: undefined, entry: undefined },
      { key: "t/a", sourceOffset: 12, eventId: "e-12", entry: a },
    ]);
    expect(reported[0]!.entry).toBe(a);
    expect(found).toBe(3);
  });

  it("ignores results of another ingest partition and ones whose source cursor is missing or malformed", async () => {
    const broker = await resultsBroker();
    await broker.produce(TOPIC, [
      result("t/a", encodeCursor("ingest", 1, 5), "other-partition"),
      result("t/a", "not-a-cursor", "malformed"),
      result("t/a", encodeCursor("results", 0, 6), "a-results-cursor"),
      result("t/a", undefined, "no-cursor"),
      result("t/a", encodeCursor("ingest", 0, 7), "mine"),
    ]);
    const { found, reported } = await recover(broker);
    expect(reported.map((each) => [each.sourceOffset, each.eventId])).toEqual([[7, "mine"]]);
    expect(found).toBe(1);
  });

  it("reports, for another partition number, only that partition's results", async () => {
    const broker = createMemoryBroker({ retentionRecords: 1_000_000, retentionMs: 0 });
    brokers.push(broker);
    await broker.ensureTopics([{ name: TOPIC, partitions: 2, compacted: false }]);
    // Keys that land on results partition 1, as a stream's records and results share their partition number.
    const keys = Array.from({ length: 50 }, (_, i) => `t/s${i}`).filter((key) => broker.partitionFor(TOPIC, key) === 1);
    await broker.produce(TOPIC, [
      result(keys[0]!, encodeCursor("ingest", 1, 3), "one"),
      result(keys[0]!, encodeCursor("ingest", 0, 4), "zero"),
    ]);
    const { found, reported } = await recover(broker, { partition: 1 });
    expect(reported.map((each) => [each.key, each.sourceOffset, each.eventId])).toEqual([[keys[0], 3, "one"]]);
    expect(found).toBe(1);
  });

  it("skips a stream's results from before its `resultsStart` (a deleted stream's of the same id)", async () => {
    const broker = await resultsBroker();
    await broker.produce(
      TOPIC,
      Array.from({ length: 6 }, (_, i) => result(i % 2 === 0 ? "t/a" : "t/b", encodeCursor("ingest", 0, 100 + i))),
    );
    // Results 0, 2, 4 are t/a's: it began at results offset 3. t/b began at 0.
    const { found, reported } = await recover(broker, {
      registry: registry({ "t/a": { key: "t/a", resultsStart: 3 }, "t/b": { key: "t/b", resultsStart: 0 } }),
    });
    expect(reported.map((each) => [each.key, each.sourceOffset])).toEqual([
      ["t/b", 101],
      ["t/b", 103],
      ["t/a", 104],
      ["t/b", 105],
    ]);
    expect(found).toBe(4);
  });

  it("reads back RECOVERY_SCAN_MIN results from the end, or `minResults` when more", async () => {
    const broker = await resultsBroker();
    const written = RECOVERY_SCAN_MIN + 50;
    await broker.produce(
      TOPIC,
      Array.from({ length: written }, (_, i) => result("t/a", encodeCursor("ingest", 0, i))),
    );
    const fewer = await recover(broker, { minResults: 100 });
    expect(fewer.found).toBe(RECOVERY_SCAN_MIN);
    expect(fewer.reported).toHaveLength(RECOVERY_SCAN_MIN);
    // The oldest 50 are not read; the rest are, each once, in order.
    expect(fewer.reported[0]!.sourceOffset).toBe(50);
    expect(fewer.reported.every((each, i) => each.sourceOffset === 50 + i)).toBe(true);

    const more = await recover(broker, { minResults: RECOVERY_SCAN_MIN + 20 });
    expect(more.found).toBe(RECOVERY_SCAN_MIN + 20);
    expect(more.reported[0]!.sourceOffset).toBe(30);
  });

  it("starts at the oldest retained result when fewer are retained than it would read", async () => {
    const broker = await resultsBroker({ retentionRecords: 5 });
    await broker.produce(
      TOPIC,
      Array.from({ length: 10 }, (_, i) => result("t/a", encodeCursor("ingest", 0, i))),
    );
    expect((await broker.offsets(TOPIC, 0)).low).toBe(5);
    const { found, reported } = await recover(broker);
    expect(reported.map((each) => each.sourceOffset)).toEqual([5, 6, 7, 8, 9]);
    expect(found).toBe(5);
  });

  it("reads nothing written after it began, and finds nothing in an empty partition", async () => {
    const broker = await resultsBroker();
    expect(await recover(broker)).toEqual({ found: 0, reported: [] });
    await broker.produce(TOPIC, [result("t/a", encodeCursor("ingest", 0, 1))]);
    // Results written once the partition's end was read (by the processor now running) are not recovered.
    const racing: RecoveryOptions["broker"] = {
      offsets: async (topic, partition) => {
        const offsets = await broker.offsets(topic, partition);
        await broker.produce(TOPIC, [result("t/a", encodeCursor("ingest", 0, 2))]);
        return offsets;
      },
      fetch: (topic, partition, offset, maxRecords) => broker.fetch(topic, partition, offset, maxRecords),
    };
    const { found, reported } = await recover(racing);
    expect(reported.map((each) => each.sourceOffset)).toEqual([1]);
    expect(found).toBe(1);
  });
});
