/**
 * kafkajs 2.2.4 (plain, from .tools/kafkajs: lib/kafkajs-tool.ts) producing
 * directly to the bench's Kafka broker (lib/direct-producer.ts), with the
 * producer settings streamgate's kafkajs producer had: idempotent, acks=all,
 * the same client timeouts and retries, partitions chosen by streamgate's
 * murmur2 and passed with each message. Naive sends are send() of one
 * message; batched ones sendBatch().
 */
import {
  createTopicWithLeaders,
  type DirectProducer,
  directProducer,
  directTopic,
  topicLayout,
} from "./direct-producer.js";
import { type KafkajsMessage, loadKafkajs } from "./kafkajs-tool.js";

/** Connects a kafkajs producer to `brokers` and creates its topic. */
export async function openKafkajsDirect(brokers: string): Promise<DirectProducer> {
  const { Kafka, Partitioners, logLevel } = await loadKafkajs();
  const { partitions, replication } = topicLayout();
  const kafka = new Kafka({
    clientId: "bench-kafkajs",
    brokers: brokers.split(","),
    connectionTimeout: 3000,
    requestTimeout: 10_000,
    retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: 8 },
    // Failures surface as errors of the calls (counted, the first one shown); kafkajs logs
    // retried hiccups at ERROR too (a coordinator still loading right after start).
    logLevel: logLevel.NOTHING,
  });
  const admin = kafka.admin();
  const producer = kafka.producer({
    idempotent: true,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
    retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: Number.MAX_SAFE_INTEGER },
  });
  const topic = directTopic("kafkajs");
  const close = async () => {
    await producer.disconnect().catch(() => undefined);
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
  };
  try {
    await admin.connect();
    await createTopicWithLeaders(
      topic,
      partitions,
      () =>
        admin.createTopics({
          waitForLeaders: true,
          topics: [{ topic, numPartitions: partitions, replicationFactor: replication }],
        }),
      async () =>
        ((await admin.fetchTopicMetadata({ topics: [topic] })).topics[0]?.partitions ?? []).map(
          (partition) => partition.leader,
        ),
      // kafkajs gives up waiting for the leaders with this; the metadata polling takes over.
      (error) => (error as { type?: unknown }).type === "UNKNOWN_TOPIC_OR_PARTITION",
    );
    await producer.connect();
  } catch (error) {
    await close();
    throw error;
  }
  return directProducer<KafkajsMessage>(
    {
      // The key as a string, as streamgate handed its records to kafkajs.
      message: (key, value, partition) => ({ key, value, partition }),
      sendOne: (message) => producer.send({ topic, acks: -1, messages: [message] }),
      sendMany: (messages) => producer.sendBatch({ acks: -1, topicMessages: [{ topic, messages }] }),
      close,
    },
    partitions,
  );
}
