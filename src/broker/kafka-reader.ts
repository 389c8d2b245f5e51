/**
 * Random-access reads of one partition from one offset, for catch-up: a
 * watcher resuming from an old cursor needs the results log from there, and a
 * consumer group (the only way kafkajs's public API reads) would cost a group
 * join per watcher. kafkajs's own cluster client can send a Fetch to the
 * partition leader directly; it is reached through a private factory of the
 * Kafka object, which is why kafkajs is pinned to an exact version and this is
 * the only file that depends on it.
 */
import type { Kafka, KafkaMessage } from "kafkajs";

/** Reads records of a partition without a consumer group. */
export interface PartitionReader {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  /** Records at or past `offset` (up to about 1 MiB), oldest first; empty at the end. */
  read(topic: string, partition: number, offset: number): Promise<KafkaMessage[]>;
  /** Resolves when a broker answers a metadata request. */
  ping(): Promise<void>;
}

/** The slice of kafkajs's internal Cluster that reading needs. */
interface Cluster {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  refreshMetadata(): Promise<void>;
  addTargetTopic(topic: string): Promise<void>;
  findLeaderForPartitions(topic: string, partitions: number[]): Record<string, number[]>;
  findBroker(node: { nodeId: string }): Promise<{
    fetch(request: unknown): Promise<{
      responses: Array<{ partitions: Array<{ messages: Array<KafkaMessage & { isControlRecord?: boolean }> }> }>;
    }>;
  }>;
}

const READ_COMMITTED = 1;
const MAX_BYTES = 1024 * 1024;

/** Creates a reader sharing `kafka`'s configuration (brokers, TLS, SASL, retries). */
export function createPartitionReader(kafka: Kafka): PartitionReader {
  const factory = Object.getOwnPropertySymbols(kafka).find(
    (symbol) => symbol.description === "private:Kafka:createCluster",
  );
  if (!factory) throw new Error("this kafkajs version has no cluster factory; streamgate pins kafkajs 2.2.4");
  const cluster = (kafka as unknown as Record<symbol, (options: object) => Cluster>)[factory]!({
    allowAutoTopicCreation: false,
    isolationLevel: READ_COMMITTED,
  });

  const fetchOnce = async (topic: string, partition: number, offset: number) => {
    await cluster.addTargetTopic(topic);
    const leaders = cluster.findLeaderForPartitions(topic, [partition]);
    const nodeId = Object.keys(leaders)[0];
    if (nodeId === undefined) throw new Error(`no leader for ${topic}/${partition}`);
    const broker = await cluster.findBroker({ nodeId });
    const response = await broker.fetch({
      replicaId: -1,
      isolationLevel: READ_COMMITTED,
      maxWaitTime: 0,
      minBytes: 0,
      maxBytes: MAX_BYTES,
      topics: [{ topic, partitions: [{ partition, fetchOffset: String(offset), maxBytes: MAX_BYTES }] }],
    });
    const messages = response.responses[0]?.partitions[0]?.messages ?? [];
    // A fetch returns whole record batches, which may start before `offset`.
    return messages.filter((message) => !message.isControlRecord && Number(message.offset) >= offset);
  };

  return {
    connect: () => cluster.connect(),
    disconnect: () => cluster.disconnect(),
    async read(topic, partition, offset) {
      try {
        return await fetchOnce(topic, partition, offset);
      } catch {
        // A leader may have moved: refresh what the cluster knows and try once more.
        await cluster.refreshMetadata();
        return fetchOnce(topic, partition, offset);
      }
    },
    ping: () => cluster.refreshMetadata(),
  };
}
