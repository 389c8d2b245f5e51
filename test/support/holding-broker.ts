/**
 * A broker whose writes to one topic a test can hold: while held, every
 * produce to that topic waits (nothing is stored) until the test releases
 * them, then goes on as usual. Held on the results topic, it stops the
 * processor at a known point, its first result's write, so that a state that
 * would otherwise last only as long as processing takes (a backlog, a lag)
 * stays until the test has looked at it.
 */
import type { Broker } from "../../src/broker/broker.js";

/** A {@link Broker} with a hold on one topic's writes; see the module comment. */
export interface HoldingBroker {
  broker: Broker;
  /** From now on, produce calls to the topic wait for {@link release}. */
  hold(): void;
  /** Resolves once a produce call to the topic is waiting (the first since {@link hold}). */
  held(): Promise<void>;
  /** Lets the waiting produce calls go on, in their order, and holds no more. */
  release(): void;
}

/** Wraps `inner` so that its writes to `topic` can be held (see {@link HoldingBroker}); none held at first. */
export function holdingProduce(inner: Broker, topic: string): HoldingBroker {
  let gate: Promise<void> | undefined;
  let open = () => {};
  let announce = () => {};
  let announced = new Promise<void>((resolve) => (announce = resolve));
  const broker: Broker = {
    get kind() {
      return inner.kind;
    },
    ensureTopics: (topics) => inner.ensureTopics(topics),
    partitionCount: (name) => inner.partitionCount(name),
    partitionFor: (name, key) => inner.partitionFor(name, key),
    async produce(name, records, options) {
      if (name === topic && gate) {
        announce();
        await gate;
      }
      return inner.produce(name, records, options);
    },
    fetch: (name, partition, offset, maxRecords) => inner.fetch(name, partition, offset, maxRecords),
    offsets: (name, partition) => inner.offsets(name, partition),
    subscribe: (options) => inner.subscribe(options),
    probe: (timeoutMs) => inner.probe(timeoutMs),
    close: () => inner.close(),
  };
  return {
    broker,
    hold() {
      if (gate) return;
      gate = new Promise<void>((resolve) => (open = resolve));
      announced = new Promise<void>((resolve) => (announce = resolve));
    },
    held: () => announced,
    release() {
      gate = undefined;
      open();
    },
  };
}
