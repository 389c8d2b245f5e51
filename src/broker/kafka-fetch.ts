/**
 * Fetch requests to partition leaders through @platformatic/kafka's
 * `Consumer.fetch`, and the records they return as streamgate's
 * StoredRecords. Both the catch-up reads (a watcher resuming from an old
 * cursor) and subscriptions (src/broker/kafka-subscription.ts) read this way:
 * a fetch names exact partitions and offsets, so neither needs a consumer
 * group to read, and a subscription decides itself which of its partitions to
 * fetch next (those whose previous batch is handled), as its backpressure.
 */
import type { Consumer, RecordsBatch } from "@platformatic/kafka";
import type { RecordHeaders, StoredRecord } from "./broker.js";

/** Kafka's isolation level that hides records of aborted transactions. */
const READ_COMMITTED = 1;
/** The record batch attribute of control batches (transaction markers), which carry no records. */
const CONTROL_BATCH = 1 << 5;
/** Kafka's OFFSET_OUT_OF_RANGE error code, in a fetch response's partition. */
export const OFFSET_OUT_OF_RANGE = 1;

/** Where to read one partition from. */
export interface PartitionFetch {
  partition: number;
  offset: number;
}

/** What a fetch returned for one partition. */
export interface PartitionFetched {
  partition: number;
  /** Kafka's error code for the partition; 0 when it was read. */
  errorCode: number;
  /** The partition's high watermark: the offset its next record will get. */
  highWatermark: number;
  /** Records at or past the requested offset, oldest first. */
  records: StoredRecord[];
}

/** How much one fetch may bring and how long the broker may wait for data. */
export interface FetchLimits {
  /** Bytes per partition (a record batch larger than this still comes whole). */
  partitionMaxBytes: number;
  /** Bytes in all. */
  maxBytes: number;
  /** How long the broker waits for `minBytes` when there is less. */
  maxWaitMs: number;
  minBytes: number;
}

/**
 * Fetches `partitions` of `topic` from `node`, which must lead them all
 * (see {@link leadersOf}). `client` must track `topic` (`client.topics.track`),
 * as its fetch looks the topic up in the metadata of the topics it tracks.
 */
export async function fetchPartitions(
  client: Consumer,
  node: number,
  topic: string,
  topicId: string,
  partitions: PartitionFetch[],
  limits: FetchLimits,
): Promise<PartitionFetched[]> {
  const requested = new Map(partitions.map(({ partition, offset }) => [partition, offset]));
  const response = await client.fetch({
    node,
    topics: [
      {
        topicId,
        partitions: partitions.map(({ partition, offset }) => ({
          partition,
          fetchOffset: BigInt(offset),
          partitionMaxBytes: limits.partitionMaxBytes,
          currentLeaderEpoch: -1,
          lastFetchedEpoch: -1,
        })),
      },
    ],
    maxWaitTime: limits.maxWaitMs,
    minBytes: limits.minBytes,
    maxBytes: limits.maxBytes,
    isolationLevel: READ_COMMITTED,
  });
  const fetched: PartitionFetched[] = [];
  for (const answer of response.responses) {
    for (const part of answer.partitions) {
      const from = requested.get(part.partitionIndex);
      if (from === undefined) continue;
      fetched.push({
        partition: part.partitionIndex,
        errorCode: part.errorCode,
        highWatermark: Number(part.highWatermark),
        records: part.errorCode === 0 ? toStored(topic, part.partitionIndex, from, part.records ?? []) : [],
      });
    }
  }
  return fetched;
}

/** The topic's id and each partition's leader, from `client`'s metadata (refreshed with `fresh`). */
export async function leadersOf(
  client: Consumer,
  topic: string,
  fresh = false,
): Promise<{ topicId: string; leaders: number[] }> {
  const metadata = await client.metadata({ topics: [topic], forceUpdate: fresh });
  const found = metadata.topics.get(topic);
  if (!found) throw new Error(`topic ${topic} is not in the cluster's metadata`);
  return { topicId: found.id, leaders: found.partitions.map((partition) => partition.leader) };
}

/**
 * The records of `batches` at or past `from` (a fetch returns whole record
 * batches, which may begin before the offset asked for), without control
 * batches. Values and headers are views of the response's buffers.
 */
function toStored(topic: string, partition: number, from: number, batches: RecordsBatch[]): StoredRecord[] {
  const records: StoredRecord[] = [];
  for (const batch of batches) {
    if ((batch.attributes & CONTROL_BATCH) !== 0) continue;
    const base = Number(batch.firstOffset);
    const baseTimestamp = Number(batch.firstTimestamp);
    for (const record of batch.records) {
      const offset = base + record.offsetDelta;
      if (offset < from) continue;
      const value = record.value;
      records.push({
        topic,
        partition,
        offset,
        key: record.key?.toString("utf8") ?? "",
        value: value ? new Uint8Array(value.buffer, value.byteOffset, value.byteLength) : new Uint8Array(0),
        headers: toHeaders(record.headers),
        timestamp: baseTimestamp + Number(record.timestampDelta),
      });
    }
  }
  return records;
}

/** Header names and values as UTF-8 strings; of a name given twice, the last value. */
function toHeaders(headers: Array<[Buffer | null, Buffer | null]>): RecordHeaders {
  const result: RecordHeaders = {};
  for (const [name, value] of headers) {
    if (name === null || value === null) continue;
    result[name.toString("utf8")] = value.toString("utf8");
  }
  return result;
}
