/**
 * Coalesces concurrent produce calls into batched broker requests: the Kafka
 * client sends each call as it comes (it has no linger setting), so without
 * this every SendData would be its own broker round trip. One batch is in
 * flight at a time, which keeps records of a key in call order, while calls
 * that arrive during a round trip gather into the next. With two out at once
 * (tried: 2026-12-06), a client stream's first record was stored after its
 * next three: the client's send of a request goes through asynchronous steps
 * (metadata, connection) that a later request can overtake, and a failed
 * request resets the idempotent producer's sequence numbers.
 */

import type { ProduceRecord, RecordPosition } from "./broker.js";
import { BrokerError } from "./errors.js";

/** One record waiting to be sent, with where its answer goes. */
export interface PendingRecord {
  topic: string;
  partition: number;
  record: ProduceRecord;
  resolve(position: RecordPosition): void;
  reject(error: unknown): void;
}

/** Sends a batch; resolves each record (or rejects them all). */
export type SendBatch = (batch: PendingRecord[]) => Promise<void>;

/** Batching limits. */
export interface BatcherOptions {
  /** How long the first record of an idle batcher waits for others. */
  lingerMs: number;
  /** Most records in one request. */
  maxRecords: number;
  /**
   * Most bytes (as {@link recordBytes} counts them) in one request, one
   * record at least. Kafka refuses a whole record batch over its
   * message.max.bytes: three results of 400 KB each that happened to be
   * batched together were all refused, again at every retry. No bound when omitted.
   */
  maxBytes?: number;
  /** A call not acknowledged within this is refused (UNAVAILABLE). */
  timeoutMs: number;
}

/** About the bytes a record takes in a request: its value, key and headers, and room for the record's framing. */
export function recordBytes(record: ProduceRecord): number {
  let bytes = 64 + record.value.byteLength + record.key.length * 3;
  for (const name in record.headers) bytes += (name.length + record.headers[name]!.length) * 3;
  return bytes;
}

/** See the module comment. */
export class ProduceBatcher {
  private pending: PendingRecord[] = [];
  private inFlight = false;
  private scheduled = false;
  /** Whether a record waiting now was given with linger false: the next request goes without the linger. */
  private urgent = false;
  /** The linger's timer, while the next request waits for it. */
  private lingering: NodeJS.Timeout | undefined;

  constructor(
    private readonly send: SendBatch,
    private readonly options: BatcherOptions,
  ) {}

  /**
   * Queues records (already assigned to partitions) and resolves with their
   * positions once stored. Records still queued when the deadline passes are
   * withdrawn, so a refused call stores nothing unless its batch was already
   * on the wire. With `linger` false, an idle batcher sends without waiting
   * lingerMs for others (the calls of this turn still join).
   */
  add(
    records: Array<{ topic: string; partition: number; record: ProduceRecord }>,
    timeoutMs = this.options.timeoutMs,
    linger = true,
  ): Promise<RecordPosition[]> {
    const entries: PendingRecord[] = [];
    const positions = records.map(
      ({ topic, partition, record }) =>
        new Promise<RecordPosition>((resolve, reject) => {
          entries.push({ topic, partition, record, resolve, reject });
        }),
    );
    this.pending.push(...entries);
    if (!linger) this.urgent = true;
    const all = Promise.all(positions);
    this.schedule();
    if (timeoutMs === Infinity) return all;
    const timer = setTimeout(() => {
      const withdrawn = new Set(entries);
      this.pending = this.pending.filter((entry) => !withdrawn.has(entry));
      const error = new BrokerError(`not acknowledged by the broker within ${timeoutMs} ms`, true);
      for (const entry of entries) entry.reject(error);
    }, timeoutMs);
    const clear = () => clearTimeout(timer);
    all.then(clear, clear);
    return all;
  }

  private schedule(): void {
    if (this.inFlight || this.pending.length === 0) return;
    const now = this.pending.length >= this.options.maxRecords || this.options.lingerMs === 0 || this.urgent;
    if (this.scheduled) {
      // Lingering, and now a call that must not wait: cut the linger short.
      if (!now || this.lingering === undefined) return;
      clearTimeout(this.lingering);
    }
    this.scheduled = true;
    this.lingering = undefined;
    if (now) {
      // Still let the calls of this turn of the event loop join the batch.
      setImmediate(() => this.flush());
    } else {
      this.lingering = setTimeout(() => this.flush(), this.options.lingerMs);
    }
  }

  /** How many pending records the next request takes: up to maxRecords and maxBytes, one at least. */
  private batchLength(): number {
    const limit = Math.min(this.pending.length, this.options.maxRecords);
    const maxBytes = this.options.maxBytes;
    if (maxBytes === undefined) return limit;
    let bytes = recordBytes(this.pending[0]!.record);
    let length = 1;
    while (length < limit) {
      bytes += recordBytes(this.pending[length]!.record);
      if (bytes > maxBytes) break;
      length++;
    }
    return length;
  }

  private flush(): void {
    this.scheduled = false;
    this.urgent = false;
    this.lingering = undefined;
    if (this.pending.length === 0) return;
    const batch = this.pending.splice(0, this.batchLength());
    this.inFlight = true;
    this.send(batch)
      .catch((error: unknown) => {
        for (const entry of batch) entry.reject(error);
      })
      .finally(() => {
        this.inFlight = false;
        // Calls that arrived during the round trip have waited long enough; the
        // next request goes once the callers just answered have run, so that a
        // writer keeping one call out (the processor's) joins it rather than
        // wait a whole round trip more.
        if (this.pending.length > 0) {
          this.scheduled = true;
          setImmediate(() => this.flush());
        }
      });
  }
}
