/**
 * Coalesces single-record writes to one topic: records produced while the
 * code running now (and the promise callbacks it sets off) runs go to the
 * broker in one produce call, in the order they were given. The messages of
 * a client stream that arrive in one read then cost one broker call instead
 * of one each, and reach their consumers as one batch. Nothing waits for a timer: the call is made
 * on process.nextTick, once that run is over.
 */
import type { Broker, ProduceOptions, ProduceRecord, RecordPosition } from "./broker.js";

/** Produces one record, in one broker call with the others given in the same run. */
export type CoalescedProduce = (record: ProduceRecord) => Promise<RecordPosition>;

interface Waiting {
  records: ProduceRecord[];
  senders: Array<{ resolve(position: RecordPosition): void; reject(error: unknown): void }>;
}

/** Coalesces writes to `topic` on `broker`; every call made with `options`. A failed call fails each of its records. */
export function coalesceProduces(broker: Broker, topic: string, options?: ProduceOptions): CoalescedProduce {
  let waiting: Waiting | undefined;
  const flush = () => {
    const { records, senders } = waiting!;
    waiting = undefined;
    broker.produce(topic, records, options).then(
      (positions) => senders.forEach((sender, index) => sender.resolve(positions[index]!)),
      (error: unknown) => senders.forEach((sender) => sender.reject(error)),
    );
  };
  return (record) => {
    if (!waiting) {
      waiting = { records: [], senders: [] };
      process.nextTick(flush);
    }
    const { records, senders } = waiting;
    records.push(record);
    return new Promise((resolve, reject) => senders.push({ resolve, reject }));
  };
}
