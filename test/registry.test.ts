/**
 * The registry's StartStream path: concurrent creations share one read of the
 * results partition's high watermark (on Kafka an admin request each), and each
 * stream's recorded start is still at or before its first result.
 */

import { pino } from "pino";
import { afterEach, expect, it, vi } from "vitest";
import { createMemoryBroker } from "../src/broker/memory.js";
import { createRegistry } from "../src/streams/registry.js";
import { streamKey } from "../src/streams/stream-key.js";
import { topicNames, topicSpecs } from "../src/topics/topics.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it("shares high-watermark reads among concurrent creations, each start a lower bound of its results", async () => {
  const config = { prefix: "test.", partitions: 1 };
  const topics = topicNames(config);
  const broker = createMemoryBroker({ retentionRecords: 1_000_000, retentionMs: 0 });
  await broker.ensureTopics(topicSpecs(config));
  const registry = createRegistry({
    broker,
    topic: topics.streams,
    resultsTopic: topics.results,
    logger: pino({ level: "silent" }),
  });
  await registry.start();
  cleanups.push(async () => {
    await registry.stop();
    await broker.close();
  });
  await broker.produce(topics.results, [{ key: streamKey("t", "older"), value: new Uint8Array(1), headers: {} }]);

  const offsets = vi.spyOn(broker, "offsets");
  const created = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      registry.create({ tenant: "t", streamId: `s${i}`, labels: {}, processing: undefined }),
    ),
  );
  expect(created.every(({ created }) => created)).toBe(true);
  expect(offsets.mock.calls.filter(([topic]) => topic === topics.results).length).toBeLessThan(20);

  // A result written now, after the streams exist, is at or past every recorded start.
  const [first] = await broker.produce(topics.results, [
    { key: streamKey("t", "s0"), value: new Uint8Array(1), headers: {} },
  ]);
  for (const { entry } of created) {
    expect(entry.resultsStart).toBeGreaterThanOrEqual(1); // past the older stream's result
    expect(entry.resultsStart).toBeLessThanOrEqual(first!.offset);
  }
});
