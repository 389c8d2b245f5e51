/**
 * The consumer-lag gauge, streamgate_consumer_lag_records{topic_kind="ingest"}:
 * on the memory broker and on Kafka, a throttled stream's backlog of sent but
 * unprocessed records shows on GET /metrics as lag, which falls back to 0 by
 * itself once processing has caught up (no further batch comes to say so).
 * At the processor: a record read but still waiting in its throttle counts,
 * a filtered record counts as processed, and a partition revoked by a
 * rebalance or left by a stop counts 0.
 *
 * A backlog is held while its lag is read, never caught in passing: on
 * GET /metrics by holding the first result's write (test/support/holding-broker.ts),
 * at the processor by a throttle clock that does not move (test/support/manual-clock.ts).
 */

import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Processing, ProcessingSchema, StartPosition } from "../gen/streamgate/v1/stream_service_pb.js";
import { createBroker } from "../src/app/parts.js";
import type { Broker, SubscribeOptions, Subscription } from "../src/broker/broker.js";
import { createMemoryBroker } from "../src/broker/memory.js";
import { loadConfig } from "../src/config/config.js";
import { createProcessor, type Processor } from "../src/processing/processor.js";
import { Ingest } from "../src/streams/ingest.js";
import { createRegistry } from "../src/streams/registry.js";
import { StreamCounters } from "../src/streams/stream-counters.js";
import { streamKey } from "../src/streams/stream-key.js";
import { topicNames, topicSpecs } from "../src/topics/topics.js";
import { checkingIngest } from "./support/edge.js";
import { type HoldingBroker, holdingProduce } from "./support/holding-broker.js";
import { jsonData, payloadOf } from "./support/kafka-gateway.js";
import { ManualClock } from "./support/manual-clock.js";
import { BROKERS, brokerEnv, startTestServer, streamClient, type TestServer, take } from "./support/server.js";

const LAG_SAMPLE = 'streamgate_consumer_lag_records{topic_kind="ingest"}';

/** The ingest lag `server` reports on GET /metrics. */
async function scrapeLag(server: TestServer): Promise<number> {
  const response = await fetch(`${server.baseUrl}/metrics`);
  expect(response.status).toBe(200);
  const line = (await response.text()).split("\n").find((text) => text.startsWith(`${LAG_SAMPLE} `));
  if (line === undefined) throw new Error(`GET /metrics has no ${LAG_SAMPLE} sample`);
  return Number(line.slice(LAG_SAMPLE.length + 1));
}

describe.each(BROKERS)("GET /metrics on the %s broker", (kind) => {
  let server: TestServer;
  /** The server's broker, whose writes to the results topic the test holds. */
  let results: HoldingBroker;
  beforeAll(async () => {
    // The broker the server would make from this environment, wrapped: on Kafka, topics of its own.
    const env = brokerEnv(kind);
    const config = loadConfig(env);
    results = holdingProduce(await createBroker(config, pino({ level: "silent" })), topicNames(config.topics).results);
    server = await startTestServer(env, results.broker);
  });
  afterAll(async () => {
    results?.release();
    await server?.close();
  });

  it("shows a throttled backlog as ingest lag, back to 0 once its results are out", async () => {
    const client = streamClient(server);
    const streamId = `lag-${kind}`;
    const count = 8;
    // 4 records/s: once released, the backlog takes about 1.75 s to work off.
    await client.startStream({ streamId, processing: { ratePerSecond: 4 } });
    expect(await scrapeLag(server)).toBe(0);
    const all = take(client.watchResults({ streamId, startPosition: StartPosition.EARLIEST }), count);
    // No result is written until the test says: the first record's result is held in its write,
    // and the others wait behind it in the throttle, so none of them can finish meanwhile.
    results.hold();
    for (let n = 0; n < count; n++) await client.sendData({ streamId, payload: jsonData({ n }) });
    await results.held();

    // The lag is known as of the processor's latest read, which no event announces; but while the
    // hold lasts it can only rise, to every record sent (this server's ingest topic holds only
    // these), and stays there: polled until it is, not caught in passing.
    await expect.poll(() => scrapeLag(server), { timeout: 10_000, interval: 20 }).toBe(count);

    results.release();
    expect((await all).map((response) => payloadOf(response.result!))).toEqual(
      Array.from({ length: count }, (_, n) => ({ n })),
    );
    // The last result is written just before its record counts as finished; then nothing can raise it again.
    await expect.poll(() => scrapeLag(server), { timeout: 10_000, interval: 20 }).toBe(0);
  });
});

describe("Processor.lag()", () => {
  const logger = pino({ level: "silent" });
  const topicConfig = { prefix: "lag.", partitions: 2 };
  const topics = topicNames(topicConfig);
  const tenant = "lag-tenant";
  const processors: Processor[] = [];
  const subscriptions: Subscription[] = [];
  afterEach(async () => {
    await Promise.all(processors.splice(0).map((processor) => processor.stop()));
    await Promise.all(subscriptions.splice(0).map((subscription) => subscription.close()));
  });

  /**
   * A memory broker with a stream `streamId` (with `processing`) holding
   * `payloads` as ingest records, and a processor started only after they
   * are written (so its first batch holds them all). `rebalance` plays a new
   * assignment to the processor, as a consumer-group rebalance would.
   */
  async function backlog(streamId: string, processing: Processing, payloads: JsonValue[]) {
    // The throttle's clock never moves: a throttled stream's first record starts (its slot is now),
    // and the rest wait in the throttle until the test stops or rebalances the processor.
    const throttleClock = new ManualClock();
    const memory = createMemoryBroker({ retentionRecords: 100_000, retentionMs: 0 });
    await memory.ensureTopics(topicSpecs(topicConfig));
    const assignments: Array<(partitions: number[]) => void> = [];
    const broker = keepingAssignments(memory, assignments);
    const registry = createRegistry({ broker, topic: topics.streams, resultsTopic: topics.results, logger });
    await registry.start();
    await registry.create({ tenant, streamId, labels: {}, processing });
    const counters = new StreamCounters();
    const ingest = checkingIngest(
      new Ingest({
        broker,
        ingestTopic: topics.ingest,
        registry,
        counters,
        dedupWindow: 100,
      }),
    );
    for (const payload of payloads) {
      await ingest.send(tenant, {
        streamId,
        payload: { case: "data", value: fromJson(ValueSchema, payload) },
        eventId: "",
        headers: {},
      });
    }
    const processor = createProcessor({
      broker,
      ingestTopic: topics.ingest,
      resultsTopic: topics.results,
      registry,
      counters,
      logger,
      dedupWindow: 100,
      maxInFlight: 1000,
      throttleClock,
    });
    await processor.start();
    processors.push(processor);
    return {
      processor,
      rebalance: (partitions: number[]) => assignments.forEach((assign) => assign(partitions)),
      /** Resolves once the stream has `count` results, following the results log. */
      results: (count: number) =>
        new Promise<void>((resolve) => {
          let seen = 0;
          void broker
            .subscribe({
              topic: topics.results,
              from: "earliest",
              eachBatch: async (batch) => {
                seen += batch.records.filter((record) => record.key === streamKey(tenant, streamId)).length;
                if (seen >= count) resolve();
              },
            })
            .then((subscription) => subscriptions.push(subscription));
        }),
    };
  }

  const throttled = create(ProcessingSchema, { ratePerSecond: 1 });

  it("counts records read but still waiting in the throttle; a stop leaves 0", async () => {
    const { processor } = await backlog("slow", throttled, [{ n: 0 }, { n: 1 }, { n: 2 }]);
    // Record 0 is processed at once; 1 and 2 are read too, and wait in the throttle for a clock that
    // does not move: the lag falls to 2 and stays there.
    await expect.poll(() => processor.lag(), { timeout: 5000 }).toBe(2);
    processors.splice(processors.indexOf(processor), 1);
    await processor.stop();
    expect(processor.lag()).toBe(0);
  });

  it("counts 0 for partitions a rebalance took away, though their records wait unprocessed", async () => {
    const { processor, rebalance } = await backlog("moved", throttled, [{ n: 0 }, { n: 1 }, { n: 2 }]);
    // As above: 2 held in the throttle for as long as the test looks.
    await expect.poll(() => processor.lag(), { timeout: 5000 }).toBe(2);
    rebalance([]);
    expect(processor.lag()).toBe(0);
  });

  it("counts filtered records as processed: 0 once the last one is done, with no further batch", async () => {
    const keepEven = create(ProcessingSchema, { filter: "data.keep" });
    const payloads = [0, 1, 2, 3].map((n) => ({ n, keep: n % 2 === 0 }));
    const { processor, results } = await backlog("filtered", keepEven, payloads);
    // The results prove the batch (all four records) was read; record 3, filtered, may finish just after.
    await results(2);
    await expect.poll(() => processor.lag(), { timeout: 5000 }).toBe(0);
  });
});

/** `broker`, with each subscription's `onAssignment` kept in `assignments` for a test to call. */
function keepingAssignments(broker: Broker, assignments: Array<(partitions: number[]) => void>): Broker {
  return new Proxy(broker, {
    get(target, property) {
      if (property === "subscribe") {
        return (options: SubscribeOptions) => {
          if (options.onAssignment) assignments.push(options.onAssignment);
          return target.subscribe(options);
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
