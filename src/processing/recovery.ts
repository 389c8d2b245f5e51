/**
 * Recovery after a restart or a rebalance: the tail of a results partition
 * says which ingest records of the same partition number already have a
 * result (their source cursor) and which event ids were seen, so that the
 * processor neither writes a second result nor forgets a duplicate.
 */
import type { Broker } from "../broker/broker.js";
import { decodeCursor } from "../streams/cursor.js";
import type { StreamEntry, StreamRegistry } from "../streams/registry.js";
import { HEADER } from "../topics/record-format.js";

/** Results read back at least, after a restart, to rebuild event-id deduplication. */
export const RECOVERY_SCAN_MIN = 10_000;

/** Results fetched per read while recovering. */
const FETCH_RECORDS = 1000;

/** Where to read, and what to tell of each result found. */
export interface RecoveryOptions {
  broker: Pick<Broker, "offsets" | "fetch">;
  resultsTopic: string;
  registry: Pick<StreamRegistry, "get">;
  /** The ingest partition, and the results partition read (a stream's records and results share the number). */
  partition: number;
  /** Results to read back at least (the tail; {@link RECOVERY_SCAN_MIN} when larger). */
  minResults: number;
  /** Called for each result of the current stream of its key, in log order. */
  onResult(key: string, sourceOffset: number, eventId: string | undefined, entry: StreamEntry | undefined): void;
}

/** Reads the tail of the results partition; returns how many results of the ingest partition it found. */
export async function recoverPartition(options: RecoveryOptions): Promise<number> {
  const { broker, resultsTopic, partition, registry } = options;
  const { low, high } = await broker.offsets(resultsTopic, partition);
  let next = Math.max(low, high - Math.max(options.minResults, RECOVERY_SCAN_MIN));
  let found = 0;
  while (next < high) {
    const records = await broker.fetch(resultsTopic, partition, next, FETCH_RECORDS);
    if (records.length === 0) break;
    for (const record of records) {
      if (record.offset >= high) break;
      next = record.offset + 1;
      const source = record.headers[HEADER.sourceCursor];
      const cursor = source === undefined ? undefined : parseSourceCursor(source);
      if (!cursor || cursor.partition !== partition) continue;
      // A result from before its stream began is a deleted stream's of the same id: none of this one's.
      const entry = registry.get(record.key);
      if (entry && record.offset < entry.resultsStart) continue;
      found++;
      options.onResult(record.key, cursor.offset, record.headers[HEADER.eventId], entry);
    }
  }
  return found;
}

function parseSourceCursor(value: string): { partition: number; offset: number } | undefined {
  try {
    return decodeCursor(value, "ingest", "source cursor");
  } catch {
    return undefined;
  }
}
