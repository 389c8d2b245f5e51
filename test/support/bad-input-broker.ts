/**
 * A broker that fails on demand: the embedded memory broker behind switches a
 * test flips, to see what clients get when the log refuses writes or a
 * shutdown is held half-way.
 */
import type { Broker } from "../../src/broker/broker.js";
import { createMemoryBroker } from "../../src/broker/memory.js";

/** The switches of a {@link faultyBroker}; all off by default, changeable at any time. */
export interface Faults {
  /**
   * Called on each produce() with the topic; when it returns an error, that
   * produce rejects with it and stores nothing.
   */
  produce?: (topic: string) => Error | undefined;
  /** While set, every subscription's close() first waits for this promise (holds a shutdown). */
  closeGate?: Promise<void>;
}

/** Wraps `inner` (a fresh memory broker by default) so that `faults` decide what fails. */
export function faultyBroker(
  faults: Faults,
  inner: Broker = createMemoryBroker({ retentionRecords: 1_000_000, retentionMs: 0 }),
): Broker {
  return {
    kind: inner.kind,
    ensureTopics: (topics) => inner.ensureTopics(topics),
    partitionCount: (topic) => inner.partitionCount(topic),
    partitionFor: (topic, key) => inner.partitionFor(topic, key),
    async produce(topic, records, options) {
      const error = faults.produce?.(topic);
      if (error) throw error;
      return inner.produce(topic, records, options);
    },
    fetch: (topic, partition, offset, maxRecords) => inner.fetch(topic, partition, offset, maxRecords),
    offsets: (topic, partition) => inner.offsets(topic, partition),
    probe: (timeoutMs) => inner.probe(timeoutMs),
    async subscribe(options) {
      const subscription = await inner.subscribe(options);
      return {
        commit: (partition, nextOffset) => subscription.commit(partition, nextOffset),
        async close() {
          await faults.closeGate;
          await subscription.close();
        },
      };
    },
    close: () => inner.close(),
  };
}

/** A promise and the function that resolves it, for holding something until the test says. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}
