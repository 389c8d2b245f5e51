/**
 * A thin wrapper that measures any Broker (memory or Kafka alike): records
 * produced and consumed by topic kind, and produce latency. Everything else
 * passes straight through.
 */
import type { Metrics, TopicKind } from "../observe/metrics.js";
import type {
  Broker,
  ProduceOptions,
  ProduceRecord,
  RecordPosition,
  SubscribeOptions,
  Subscription,
} from "./broker.js";

/** Wraps `broker`; `kinds` maps each topic name to its kind (other topics are not counted). */
export function instrumentBroker(broker: Broker, kinds: Map<string, TopicKind>, metrics: Metrics): Broker {
  return {
    get kind() {
      return broker.kind;
    },
    ensureTopics: (topics) => broker.ensureTopics(topics),
    partitionCount: (topic) => broker.partitionCount(topic),
    partitionFor: (topic, key) => broker.partitionFor(topic, key),
    async produce(topic: string, records: ProduceRecord[], options?: ProduceOptions): Promise<RecordPosition[]> {
      const stop = metrics.produceSeconds.startTimer();
      const positions = await broker.produce(topic, records, options);
      // Only produces that stored something: a failed one is seen in the RPC codes instead.
      stop();
      const kind = kinds.get(topic);
      if (kind) metrics.produced.inc({ topic_kind: kind }, records.length);
      return positions;
    },
    fetch: (topic, partition, offset, maxRecords) => broker.fetch(topic, partition, offset, maxRecords),
    offsets: (topic, partition) => broker.offsets(topic, partition),
    subscribe(options: SubscribeOptions): Promise<Subscription> {
      const kind = kinds.get(options.topic);
      if (!kind) return broker.subscribe(options);
      return broker.subscribe({
        ...options,
        eachBatch: async (batch) => {
          await options.eachBatch(batch);
          // Counted once handled: a batch redelivered after a failure is not counted twice.
          metrics.consumed.inc({ topic_kind: kind }, batch.records.length);
        },
      });
    },
    probe: (timeoutMs) => broker.probe(timeoutMs),
    close: () => broker.close(),
  };
}
