/**
 * The three topics streamgate uses, shared by all streams and partitioned by
 * stream id (thousands of streams never mean thousands of topics).
 */
import type { TopicSpec } from "../broker/broker.js";
import type { TopicConfig } from "../config/config.js";

/** Topic names. */
export interface Topics {
  /** The stream registry: compacted, one record per stream. */
  streams: string;
  /** Records as sent, keyed by stream id. */
  ingest: string;
  /** Processed results, keyed by stream id. */
  results: string;
}

/** Names the topics from the configured prefix. */
export function topicNames(config: TopicConfig): Topics {
  return {
    streams: `${config.prefix}streams`,
    ingest: `${config.prefix}ingest`,
    results: `${config.prefix}results`,
  };
}

/** The specs to create the topics with. */
export function topicSpecs(config: TopicConfig): TopicSpec[] {
  const names = topicNames(config);
  return [
    // One partition keeps the registry's start-up read a single sequential scan.
    { name: names.streams, partitions: 1, compacted: true },
    { name: names.ingest, partitions: config.partitions, compacted: false },
    { name: names.results, partitions: config.partitions, compacted: false },
  ];
}
