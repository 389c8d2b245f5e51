/**
 * @platformatic/kafka (the project's own dependency, the client streamgate
 * moves to) producing directly to the bench's Kafka broker
 * (lib/direct-producer.ts): an idempotent producer with acks=all, Buffer keys
 * and values (no serializers), each message's partition chosen by
 * streamgate's murmur2 and given with it. Naive and batched sends are both
 * send(), of one message or of a batch.
 */
import { Admin, type MessageToProduce, ProduceAcks, Producer } from "@platformatic/kafka";
import {
  createTopicWithLeaders,
  type DirectProducer,
  directProducer,
  directTopic,
  topicLayout,
} from "./direct-producer.js";

/** Connects a @platformatic/kafka producer to `brokers` and creates its topic. */
export async function openPlatformaticDirect(brokers: string): Promise<DirectProducer> {
  const { partitions, replication } = topicLayout();
  const common = {
    bootstrapBrokers: brokers.split(","),
    connectTimeout: 3000,
    requestTimeout: 10_000,
    retryDelay: 100,
  };
  const admin = new Admin({ clientId: "bench-platformatic-admin", ...common });
  // Idempotent: its retries default to unbounded, which keeps the order of what it writes.
  const producer = new Producer({ clientId: "bench-platformatic", ...common, idempotent: true, acks: ProduceAcks.ALL });
  const topic = directTopic("platformatic");
  const close = async () => {
    await producer.close().catch(() => undefined);
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.close().catch(() => undefined);
  };
  try {
    await createTopicWithLeaders(
      topic,
      partitions,
      () => admin.createTopics({ topics: [topic], partitions, replicas: replication }),
      async () =>
        // Array.from: a partition missing from the list reads as no leader.
        Array.from(
          (await admin.metadata({ topics: [topic], forceUpdate: true })).topics.get(topic)?.partitions ?? [],
          (partition) => partition?.leader ?? -1,
        ),
    );
  } catch (error) {
    await close();
    throw error;
  }
  return directProducer<MessageToProduce>(
    {
      message: (key, value, partition) => ({ topic, key: Buffer.from(key), value, partition }),
      sendOne: (message) => producer.send({ messages: [message] }),
      sendMany: (messages) => producer.send({ messages }),
      close,
    },
    partitions,
  );
}
