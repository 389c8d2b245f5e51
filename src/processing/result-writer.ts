/**
 * Writes the results of one ingest partition (so of every stream in it) in
 * the order they are given, one produce call at a time: while a call is out,
 * later results wait and go together in the next. A call that fails is tried
 * again, first and whole, before anything given after it, so no later result
 * is stored before an earlier one. (Retried one by one, a result waiting out a
 * broker outage in its backoff was overtaken by a later record's result
 * written as soon as the broker was back.)
 *
 * A call waits for as long as the broker is away (a deadline could refuse a
 * write that is stored later, and the retry would then repeat it); only a
 * call that definitely failed is retried, so no result is written twice.
 */
import type { ProduceRecord, RecordPosition } from "../broker/broker.js";
import { RecordTooLargeError } from "../broker/errors.js";
import { retry } from "../common/backoff.js";
import { RecordFailedError } from "./record-failure.js";

/** Waits between attempts to write results through a broker outage. */
const RETRY_BACKOFF = { firstMs: 100, maxMs: 5000 };

/** What a writer needs. */
export interface ResultWriterOptions {
  /** Stores records, in order, in one call (waiting for as long as the broker is away); resolves with their positions. */
  produce(records: ProduceRecord[]): Promise<RecordPosition[]>;
  /**
   * Results larger than this go in a call of their own: the broker can refuse
   * only a large record as too large (its batches are cut by size), and a call
   * refused for it would fail every result in it.
   */
  soloBytes: number;
  /** True once the processor stops: a failed call is then not retried, and what waits is dropped. */
  stopping(): boolean;
  /** Told of each failed call that will be retried. */
  onRetry(error: unknown, attempt: number): void;
}

interface Pending {
  record: ProduceRecord;
  resolve(position: RecordPosition): void;
  reject(error: unknown): void;
}

/** See the module comment. */
export class ResultWriter {
  private queue: Pending[] = [];
  private running = false;

  constructor(private readonly options: ResultWriterOptions) {}

  /**
   * Resolves once `record` is stored, with where. Rejects with RecordFailedError when the
   * broker refuses it as too large (retrying would refuse it for ever, and
   * hold the partition), or with the broker's error when it fails during a stop.
   */
  write(record: ProduceRecord): Promise<RecordPosition> {
    return new Promise((resolve, reject) => {
      this.queue.push({ record, resolve, reject });
      if (this.running) return;
      this.running = true;
      // After the code running now: the results of one batch go in one call.
      process.nextTick(() => void this.run());
    });
  }

  private async run(): Promise<void> {
    try {
      while (this.queue.length > 0) await this.store(this.take());
    } finally {
      this.running = false;
    }
  }

  /** The next call's results: the first large one alone, else every small one up to the next large one. */
  private take(): Pending[] {
    const { soloBytes } = this.options;
    if (this.queue[0]!.record.value.byteLength > soloBytes) return this.queue.splice(0, 1);
    let count = 1;
    while (count < this.queue.length && this.queue[count]!.record.value.byteLength <= soloBytes) count++;
    return this.queue.splice(0, count);
  }

  private async store(batch: Pending[]): Promise<void> {
    const { stopping } = this.options;
    let positions: RecordPosition[];
    try {
      positions = await retry(() => this.options.produce(batch.map((pending) => pending.record)), {
        ...RETRY_BACKOFF,
        giveUp: (error) => stopping() || error instanceof RecordTooLargeError,
        onRetry: this.options.onRetry,
      });
    } catch (error) {
      if (stopping() || !(error instanceof RecordTooLargeError)) {
        // Left unfinished, and uncommitted: processed again after a restart.
        for (const pending of [...batch, ...this.queue.splice(0)]) pending.reject(error);
        return;
      }
      if (batch.length === 1) {
        batch[0]!.reject(
          new RecordFailedError("result_too_large", "the broker refused the result as too large", { cause: error }),
        );
        return;
      }
      // Small results refused together: each on its own, in order, finds the one at fault.
      for (const pending of batch) await this.store([pending]);
      return;
    }
    batch.forEach((pending, index) => pending.resolve(positions[index]!));
  }
}
