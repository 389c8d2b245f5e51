/**
 * The processor as a consumer-group member: a throttled stream's records are
 * started one per 1/rate of the throttle's clock; a restarted processor
 * resumes from the committed offsets, so every record gets exactly one result,
 * in order, even when the stop came in the middle of a throttled backlog; a
 * stop is not held up by a backlog larger than the in-flight bound; and
 * finished records are committed within an interval, or at once when half the
 * in-flight bound waits, not once per turn; a final commit that gets no answer
 * does not hold up the stop.
 *
 * Throttled streams run on an injected manual clock (test/support/manual-clock.ts,
 * the processor's `throttleClock`): a backlog is held at a known record, or
 * stepped one record at a time, so no assertion depends on catching it in time.
 */

import { create, fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ProcessingSchema } from "../gen/streamgate/v1/stream_service_pb.js";
import type { Broker, StoredRecord, Subscription } from "../src/broker/broker.js";
import { createMemoryBroker } from "../src/broker/memory.js";
import type { PacerClock } from "../src/processing/pacer.js";
import { createProcessor, type Processor } from "../src/processing/processor.js";
import { Ingest } from "../src/streams/ingest.js";
import { createRegistry, type StreamRegistry } from "../src/streams/registry.js";
import { StreamCounters } from "../src/streams/stream-counters.js";
import { streamKey } from "../src/streams/stream-key.js";
import { topicNames, topicSpecs } from "../src/topics/topics.js";
import { checkingIngest } from "./support/edge.js";
import { ManualClock } from "./support/manual-clock.js";

const logger = pino({ level: "silent" });
const topicConfig = { prefix: "t.", partitions: 2 };
const topics = topicNames(topicConfig);
/** The tenant of every stream here. */
const TENANT = "acme";

interface Rig {
  broker: Broker;
  registry: StreamRegistry;
  /** The processors' counters: `processed` counts a record as it starts (read at once, no write to wait for). */
  counters: StreamCounters;
  ingest: ReturnType<typeof checkingIngest>;
  /** A send path with no memory of earlier event ids, as after a gateway restart. */
  freshIngest(): ReturnType<typeof checkingIngest>;
  /** A started processor; `throttleClock` drives its throttles (the real clock when omitted). */
  newProcessor(maxInFlight?: number, throttleClock?: PacerClock): Promise<Processor>;
}

const processors: Processor[] = [];
const subscriptions: Subscription[] = [];
afterEach(async () => {
  await Promise.all(processors.splice(0).map((processor) => processor.stop()));
  await Promise.all(subscriptions.splice(0).map((subscription) => subscription.close()));
});

async function rig(wrap: (broker: Broker) => Broker = (broker) => broker): Promise<Rig> {
  const broker = wrap(createMemoryBroker({ retentionRecords: 100_000, retentionMs: 0 }));
  await broker.ensureTopics(topicSpecs(topicConfig));
  const registry = createRegistry({ broker, topic: topics.streams, resultsTopic: topics.results, logger });
  await registry.start();
  const counters = new StreamCounters();
  const freshIngest = () =>
    checkingIngest(new Ingest({ broker, ingestTopic: topics.ingest, registry, counters, dedupWindow: 1000 }));
  return {
    broker,
    registry,
    counters,
    ingest: freshIngest(),
    freshIngest,
    async newProcessor(maxInFlight = 1000, throttleClock?: PacerClock) {
      const processor = createProcessor({
        broker,
        ingestTopic: topics.ingest,
        resultsTopic: topics.results,
        registry,
        counters,
        logger,
        dedupWindow: 1000,
        maxInFlight,
        ...(throttleClock ? { throttleClock } : {}),
      });
      await processor.start();
      processors.push(processor);
      return processor;
    },
  };
}

/** Stops a processor and forgets it. */
async function stop(processor: Processor): Promise<void> {
  await processor.stop();
  processors.splice(processors.indexOf(processor), 1);
}

/** The stream's results stored so far. */
async function stored(broker: Broker, streamId: string): Promise<StoredRecord[]> {
  const key = streamKey(TENANT, streamId);
  const partition = broker.partitionFor(topics.results, key);
  const records = await broker.fetch(topics.results, partition, 0, 1_000_000);
  return records.filter((record) => record.key === key && !record.headers["streamgate-control"]);
}

/** Resolves once the stream has `count` results, following the results log (no polling). */
async function until(broker: Broker, streamId: string, count: number): Promise<void> {
  const key = streamKey(TENANT, streamId);
  let seen = 0;
  await new Promise<void>((resolve) => {
    void broker
      .subscribe({
        topic: topics.results,
        from: "earliest",
        eachBatch: async (batch) => {
          seen += batch.records.filter((record) => record.key === key && !record.headers["streamgate-control"]).length;
          if (seen >= count) resolve();
        },
      })
      .then((subscription) => subscriptions.push(subscription));
  });
}

const value = (n: number) => ({ case: "data" as const, value: fromJson(ValueSchema, { n }) });
const numberOf = (record: StoredRecord) => (JSON.parse(new TextDecoder().decode(record.value)) as { n: number }).n;

describe("processor throttle", () => {
  it("starts a throttled stream's records one per 1/rate of its clock, none before its slot", async () => {
    const { broker, registry, counters, ingest, newProcessor } = await rig();
    const streamId = "paced";
    /** Records started: `processed` counts a record as it starts, with no write to wait for. */
    const started = () => counters.snapshot(streamKey(TENANT, streamId)).processed;
    // One record per 100 s: on the real clock this test would time out, so it passes only if the
    // processor's throttle runs on the injected clock.
    await registry.create({ tenant: TENANT, streamId, labels: {}, processing: throttle(0.01) });
    const clock = new ManualClock();
    await newProcessor(1000, clock);
    for (let n = 0; n < 4; n++) await ingest.send(TENANT, { streamId, payload: value(n), eventId: "", headers: {} });
    // The first record's slot is now: it needs no time to pass.
    await until(broker, streamId, 1);
    for (let k = 1; k < 4; k++) {
      // 1 ms short of the next slot (100 s after the previous one) nothing more has started, whatever
      // the broker does meanwhile: only the clock can start it, and the clock is the test's.
      await clock.advance(99_999);
      expect(started(), `${k * 100_000 - 1} ms in`).toBe(BigInt(k));
      // At its slot it starts, with no more time passing: its result comes.
      await clock.advance(1);
      await until(broker, streamId, k + 1);
    }
    expect((await stored(broker, streamId)).map(numberOf)).toEqual([0, 1, 2, 3]);
  });
});

describe("processor restart", () => {
  it("resumes a throttled backlog from the committed offset: one result per record, in order", async () => {
    const { broker, registry, ingest, newProcessor } = await rig();
    const streamId = "throttled";
    await registry.create({ tenant: TENANT, streamId, labels: {}, processing: throttle(100) });
    // The first processor's throttle runs on a clock the test steps: it stops after exactly 5 records.
    const clock = new ManualClock();
    const first = await newProcessor(1000, clock);
    const total = 30;
    for (let n = 0; n < total; n++)
      await ingest.send(TENANT, { streamId, payload: value(n), eventId: `e${n}`, headers: {} });

    await until(broker, streamId, 1);
    // One slot (10 ms at 100/s) at a time: each step lets exactly one more record start.
    for (let k = 1; k < 5; k++) {
      await clock.advance(10);
      await until(broker, streamId, k + 1);
    }
    await stop(first); // in the middle of the backlog: 5 of 30 processed, the rest held by the clock
    expect((await stored(broker, streamId)).map(numberOf)).toEqual([0, 1, 2, 3, 4]);

    // The next processor, on the real clock, works off the rest (at 100/s; no time is asserted).
    await newProcessor();
    await until(broker, streamId, total);
    const all = await stored(broker, streamId);
    expect(all.map(numberOf)).toEqual(Array.from({ length: total }, (_, n) => n));
  });

  it("stops promptly with a backlog beyond its in-flight bound", async () => {
    const { broker, registry, ingest, newProcessor } = await rig();
    const streamId = "very-slow";
    await registry.create({ tenant: TENANT, streamId, labels: {}, processing: throttle(1) });
    // A clock that never moves: only each processor's first record can start (its slot is now).
    const processor = await newProcessor(3, new ManualClock());
    for (let n = 0; n < 10; n++) await ingest.send(TENANT, { streamId, payload: value(n), eventId: "", headers: {} });
    await until(broker, streamId, 1);
    // The backlog waits on the throttle and (past 3 in flight) holds the partition's reading; the
    // stop drops it, uncommitted, at once (a stop that waited for it would never end: the test's
    // timeout is the bound), and a new processor picks it up.
    await stop(processor);
    expect((await stored(broker, streamId)).map(numberOf)).toEqual([0]);
    await newProcessor(3, new ManualClock());
    await until(broker, streamId, 2);
    expect((await stored(broker, streamId)).map(numberOf)).toEqual([0, 1]);
  });
});

/** A broker wrapper whose ingest subscriptions commit through `commit` (given the real commit). */
function withIngestCommits(
  commit: (partition: number, nextOffset: number, inner: Subscription["commit"]) => Promise<void>,
): (inner: Broker) => Broker {
  return (inner) =>
    Object.assign(Object.create(inner) as Broker, {
      async subscribe(options: Parameters<Broker["subscribe"]>[0]) {
        const subscription = await inner.subscribe(options);
        if (options.topic !== topics.ingest) return subscription;
        return {
          close: (beforeLeaving) => subscription.close(beforeLeaving),
          commit: (partition, nextOffset) =>
            commit(partition, nextOffset, (p, offset) => subscription.commit(p, offset)),
        } satisfies Subscription;
      },
    });
}

describe("processor commits", () => {
  /** A broker whose group commits are recorded; `next()` resolves with the next commit's offset. */
  function recordingCommits() {
    const offsets: number[] = [];
    let notify: ((offset: number) => void) | undefined;
    const wrap = withIngestCommits(async (partition, nextOffset, commit) => {
      await commit(partition, nextOffset);
      offsets.push(nextOffset);
      notify?.(nextOffset);
    });
    const next = () => new Promise<number>((resolve) => (notify = resolve));
    return { wrap, offsets, next };
  }

  afterEach(() => {
    vi.useRealTimers();
  });

  const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

  /** Resolves once every record read is finished (its result written), turn by turn. */
  async function finished(processor: Processor): Promise<void> {
    while (processor.lag() > 0) await nextTurn();
  }

  it("stops when its final commit gets no answer, leaving the records uncommitted", async () => {
    // A commit waiting on a rebalance this stopping member takes no part in (another member left
    // the group at the same moment) never answers; the stop must end all the same.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    let attempts = 0;
    const unanswered = withIngestCommits(() => {
      attempts++;
      return new Promise<void>(() => {});
    });
    const { broker, registry, ingest, newProcessor } = await rig(unanswered);
    const streamId = "unanswered-commit";
    await registry.create({ tenant: TENANT, streamId, labels: {}, processing: undefined });
    const processor = await newProcessor(1000);
    for (let n = 0; n < 3; n++) await ingest.send(TENANT, { streamId, payload: value(n), eventId: "", headers: {} });
    await until(broker, streamId, 3);
    await finished(processor);
    expect(attempts).toBe(0); // the interval has not passed: the stop's final commit is the first

    let stopped = false;
    const stopping = stop(processor).then(() => (stopped = true));
    while (attempts === 0) await nextTurn();
    await nextTurn();
    expect(stopped).toBe(false); // waiting for the answer...
    await vi.advanceTimersByTimeAsync(5000);
    await stopping; // ...only so long
    expect(stopped).toBe(true);
  });

  it("commits records finished over many turns once, within the interval, not once per turn", async () => {
    // Only setTimeout is faked: the interval passes when the test says so.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const commits = recordingCommits();
    const { broker, registry, ingest, newProcessor } = await rig(commits.wrap);
    const streamId = "paced-commits";
    await registry.create({ tenant: TENANT, streamId, labels: {}, processing: undefined });
    const processor = await newProcessor(1000);
    // One record per turn: each is read, processed and finished in a turn of its own.
    for (let n = 0; n < 30; n++) {
      await ingest.send(TENANT, { streamId, payload: value(n), eventId: "", headers: {} });
      await nextTurn();
    }
    await until(broker, streamId, 30);
    await finished(processor);
    expect(commits.offsets).toEqual([]);

    const committed = commits.next();
    vi.advanceTimersByTime(1000);
    // The partition's offsets start at 0: the commit covers all 30.
    expect(await committed).toBe(30);
    expect(commits.offsets).toEqual([30]);
  });

  it("commits in the next turn once half the in-flight bound waits, without the interval", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const commits = recordingCommits();
    const { registry, ingest, newProcessor } = await rig(commits.wrap);
    const streamId = "bounded-commits";
    await registry.create({ tenant: TENANT, streamId, labels: {}, processing: undefined });
    const processor = await newProcessor(10); // commits once 5 finished records wait
    const committed = commits.next();
    for (let n = 0; n < 12; n++) {
      await ingest.send(TENANT, { streamId, payload: value(n), eventId: "", headers: {} });
      await nextTurn();
    }
    // The interval has not passed, yet a commit comes once 5 finished records wait, and each after it 5 or more later.
    expect(await committed).toBeGreaterThanOrEqual(5);
    await finished(processor);
    expect(commits.offsets.length).toBeGreaterThanOrEqual(2);
    expect(commits.offsets.every((offset, i) => offset - (i === 0 ? 0 : commits.offsets[i - 1]!) >= 5)).toBe(true);
    // Fewer than 5 left after the last of those wait for the interval.
    if (commits.offsets[commits.offsets.length - 1] !== 12) {
      const last = commits.next();
      vi.advanceTimersByTime(1000);
      expect(await last).toBe(12);
    }
  });
});

describe("processor recovery", () => {
  it("skips records whose results were written before a crash that lost the commit", async () => {
    const { broker, registry, ingest, freshIngest, newProcessor } = await rig();
    const streamId = "crashed";
    await registry.create({ tenant: TENANT, streamId, labels: {}, processing: undefined });
    const cursors: string[] = [];
    for (let n = 0; n < 6; n++) {
      cursors.push((await ingest.send(TENANT, { streamId, payload: value(n), eventId: `e${n}`, headers: {} })).cursor);
    }
    // A processor that died after writing the results of records 0-2 and before
    // committing them: their results are in the log, the group has no offset.
    for (let n = 0; n < 3; n++) {
      await broker.produce(topics.results, [
        {
          key: streamKey(TENANT, streamId),
          value: new TextEncoder().encode(JSON.stringify({ n })),
          headers: {
            "content-type": "application/json",
            "streamgate-source-cursor": cursors[n]!,
            "streamgate-event-id": `e${n}`,
          },
        },
      ]);
    }
    await newProcessor();
    await until(broker, streamId, 6);
    expect((await stored(broker, streamId)).map(numberOf)).toEqual([0, 1, 2, 3, 4, 5]);

    // Event ids are remembered across the restart too: resent through a gateway
    // that has forgotten it, e1 is stored again but gets no second result.
    const restarted = freshIngest();
    expect((await restarted.send(TENANT, { streamId, payload: value(1), eventId: "e1", headers: {} })).duplicate).toBe(
      false,
    );
    await restarted.send(TENANT, { streamId, payload: value(6), eventId: "e6", headers: {} });
    await until(broker, streamId, 7);
    expect((await stored(broker, streamId)).map(numberOf)).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });
});

function throttle(ratePerSecond: number) {
  return create(ProcessingSchema, { ratePerSecond });
}

describe("processor writes", () => {
  it("keeps a stream's order when a result's write fails and a later record comes while it waits to retry", async () => {
    // The results topic refuses writes while `away`; the first refusal is announced.
    let away = false;
    let refused!: () => void;
    const firstRefusal = new Promise<void>((resolve) => (refused = resolve));
    const { broker, registry, ingest, newProcessor } = await rig(
      (inner) =>
        new Proxy(inner, {
          get(target, name) {
            if (name === "produce") {
              return (
                topic: string,
                records: Parameters<Broker["produce"]>[1],
                options: Parameters<Broker["produce"]>[2],
              ) => {
                if (topic === topics.results && away) {
                  refused();
                  return Promise.reject(new Error("the broker is away"));
                }
                return target.produce(topic, records, options);
              };
            }
            const member = Reflect.get(target, name, target) as unknown;
            return typeof member === "function" ? (member as (...args: unknown[]) => unknown).bind(target) : member;
          },
        }),
    );
    const streamId = "ordered";
    await registry.create({ tenant: TENANT, streamId, labels: {}, processing: undefined });
    await newProcessor();

    away = true;
    await ingest.send(TENANT, { streamId, payload: value(1), eventId: "", headers: {} });
    await firstRefusal;
    // Back before the first result's retry: the next record's result must still come after it.
    away = false;
    await ingest.send(TENANT, { streamId, payload: value(2), eventId: "", headers: {} });

    await until(broker, streamId, 2);
    expect((await stored(broker, streamId)).map(numberOf)).toEqual([1, 2]);
  });
});
