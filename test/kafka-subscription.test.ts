/**
 * Closing a consumer-group subscription on the real broker: the batch being
 * handled is awaited, no batch is delivered after the close began, and a
 * commit made in `beforeLeaving` is stored (a member that has left its group
 * cannot commit: the processor's last commit at shutdown is made there). A
 * commit after the close fails.
 */

import { Admin } from "@platformatic/kafka";
import { afterAll, expect, it } from "vitest";
import type { Broker, StoredRecord } from "../src/broker/broker.js";
import { kafkaBrokers, testKafkaClient } from "./support/kafka-control.js";
import { uniqueTopicPrefix } from "./support/kafka-gateway.js";

const prefix = uniqueTopicPrefix("subscription");
const topic = `${prefix}t`;
const groupId = `${prefix}g`;
const encoder = new TextEncoder();
let broker: Broker | undefined;
afterAll(() => broker?.close());

it("commits in beforeLeaving while still in the group, after the batch being handled, and delivers nothing after", async () => {
  broker = await testKafkaClient(`${prefix}client`);
  await broker.ensureTopics([{ name: topic, partitions: 1, compacted: false }]);
  await broker.produce(
    topic,
    [0, 1, 2].map((n) => ({ key: "k", value: encoder.encode(String(n)), headers: {} })),
  );

  // The handler holds its first batch until released, so the close starts while it is being handled.
  const delivered: StoredRecord[] = [];
  let firstBatch!: () => void;
  const arrived = new Promise<void>((resolve) => (firstBatch = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let handled = false;
  const subscription = await broker.subscribe({
    topic,
    groupId,
    from: "earliest",
    eachBatch: async (batch) => {
      delivered.push(...batch.records);
      firstBatch();
      await released;
      handled = true;
    },
  });
  await arrived;
  const next = delivered[delivered.length - 1]!.offset + 1;

  let handledWhenLeaving: boolean | undefined;
  const closing = subscription.close(async () => {
    handledWhenLeaving = handled;
    await subscription.commit(0, next);
  });
  // Records written once the close began are not delivered.
  await broker.produce(topic, [{ key: "k", value: encoder.encode("late"), headers: {} }]);
  release();
  await closing;

  expect(handledWhenLeaving).toBe(true);
  expect(delivered.map((record) => new TextDecoder().decode(record.value))).not.toContain("late");
  const admin = new Admin({ clientId: `${prefix}admin`, bootstrapBrokers: kafkaBrokers().split(",") });
  try {
    const [group] = await admin.listConsumerGroupOffsets({
      groups: [{ groupId, topics: [{ name: topic, partitionIndexes: [0] }] }],
    });
    const committed = group!.topics
      .find((entry) => entry.name === topic)!
      .partitions.map((entry) => [entry.partitionIndex, entry.committedOffset]);
    expect(committed).toEqual([[0, BigInt(next)]]);
  } finally {
    await admin.close();
  }
  await expect(subscription.commit(0, next + 1)).rejects.toThrow("committing offsets to the broker failed");
});
