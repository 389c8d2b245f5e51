/**
 * The Kafka producer's batcher: concurrent produces share one request, in call
 * order, with one request in flight; a deadline refuses (and withdraws) what is
 * still queued; a write with no deadline waits for as long as it takes.
 */
import { describe, expect, it } from "vitest";
import { BrokerError } from "../src/broker/errors.js";
import { type PendingRecord, ProduceBatcher } from "../src/broker/produce-batcher.js";

/** A send function whose requests the test answers by hand. */
function manualBroker() {
  const requests: Array<{ batch: PendingRecord[]; answer(): void; fail(error: Error): void }> = [];
  let arrived: (() => void) | undefined;
  let next = 0;
  const send = (batch: PendingRecord[]) =>
    new Promise<void>((resolve, reject) => {
      requests.push({
        batch,
        answer() {
          for (const entry of batch) entry.resolve({ partition: entry.partition, offset: next++ });
          resolve();
        },
        fail: reject,
      });
      arrived?.();
    });
  /** Resolves once `count` requests have been sent. */
  const sent = (count: number) =>
    new Promise<void>((resolve) => {
      const check = () => (requests.length >= count ? resolve() : (arrived = check));
      check();
    });
  return { requests, send, sent };
}

const record = (key: string) => ({
  topic: "t",
  partition: 0,
  record: { key, value: new Uint8Array([1]), headers: {} },
});

describe("ProduceBatcher", () => {
  it("coalesces calls into one request, in call order, and gathers the next batch meanwhile", async () => {
    const broker = manualBroker();
    const batcher = new ProduceBatcher(broker.send, { lingerMs: 0, maxRecords: 100, timeoutMs: 10_000 });
    const first = [batcher.add([record("a")]), batcher.add([record("b"), record("c")])];
    await broker.sent(1);
    const second = [batcher.add([record("d")]), batcher.add([record("e")])];
    expect(broker.requests).toHaveLength(1); // one request in flight at a time
    expect(broker.requests[0]!.batch.map((entry) => entry.record.key)).toEqual(["a", "b", "c"]);
    broker.requests[0]!.answer();
    expect(await Promise.all(first)).toEqual([
      [{ partition: 0, offset: 0 }],
      [
        { partition: 0, offset: 1 },
        { partition: 0, offset: 2 },
      ],
    ]);
    await broker.sent(2);
    expect(broker.requests[1]!.batch.map((entry) => entry.record.key)).toEqual(["d", "e"]);
    broker.requests[1]!.answer();
    expect((await Promise.all(second)).flat().map((position) => position.offset)).toEqual([3, 4]);
  });

  it("sends at once, without the linger, a call made with linger false, and the calls of its turn with it", async () => {
    const broker = manualBroker();
    // A linger longer than the test's timeout: only a call without it can be sent in time.
    const batcher = new ProduceBatcher(broker.send, { lingerMs: 60_000, maxRecords: 100, timeoutMs: Infinity });
    const calls = [batcher.add([record("a")]), batcher.add([record("b")], Infinity, false)];
    await broker.sent(1);
    expect(broker.requests[0]!.batch.map((entry) => entry.record.key)).toEqual(["a", "b"]);
    broker.requests[0]!.answer();
    await Promise.all(calls);
  });

  it("refuses a call past its deadline and withdraws its queued records", async () => {
    const broker = manualBroker();
    const batcher = new ProduceBatcher(broker.send, { lingerMs: 0, maxRecords: 100, timeoutMs: 50 });
    const stuck = batcher.add([record("in-flight")]);
    await broker.sent(1); // the broker does not answer
    const queued = batcher.add([record("queued")]);
    await expect(queued).rejects.toBeInstanceOf(BrokerError);
    await expect(stuck).rejects.toBeInstanceOf(BrokerError);
    broker.requests[0]!.answer();
    // The queued record was withdrawn: it is never sent.
    const later = batcher.add([record("later")]);
    await broker.sent(2);
    expect(broker.requests[1]!.batch.map((entry) => entry.record.key)).toEqual(["later"]);
    broker.requests[1]!.answer();
    await later;
  });

  it("lets a write with no deadline wait until it is stored", async () => {
    const broker = manualBroker();
    const batcher = new ProduceBatcher(broker.send, { lingerMs: 0, maxRecords: 100, timeoutMs: 20 });
    const patient = batcher.add([record("result")], Infinity);
    const impatient = batcher.add([record("send")]);
    await expect(impatient).rejects.toBeInstanceOf(BrokerError); // past its 20 ms
    broker.requests[0]!.answer(); // the broker comes back
    expect(await patient).toEqual([{ partition: 0, offset: 0 }]);
  });

  it("rejects every record of a request the broker fails", async () => {
    const broker = manualBroker();
    const batcher = new ProduceBatcher(broker.send, { lingerMs: 0, maxRecords: 100, timeoutMs: 10_000 });
    const calls = [batcher.add([record("a")]), batcher.add([record("b")])];
    await broker.sent(1);
    broker.requests[0]!.fail(new BrokerError("not stored", true));
    for (const call of calls) await expect(call).rejects.toThrow("not stored");
  });
});
