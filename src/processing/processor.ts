/**
 * The processor: a consumer-group member of the ingest topic that turns each
 * record into at most one result on the results topic. Per stream, records are
 * processed in order; an event id seen before yields no second result; the
 * stream's CEL filter and transform apply; a stream with `ratePerSecond` is
 * throttled (src/processing/pacer.ts) without holding up other streams. Offsets are committed
 * only below the oldest record whose result is not yet written, so a restart
 * neither loses nor skips a record.
 */

import type { Broker, RecordBatch, RecordPosition, StoredRecord, Subscription } from "../broker/broker.js";
import { delay } from "../common/waits.js";
import type { Logger } from "../observe/logger.js";
import type { RecordFailure } from "../observe/metrics.js";
import { type RateLimitedLog, warnTo } from "../observe/rate-limited-log.js";
import { traces } from "../observe/tracing.js";
import { encodeCursor } from "../streams/cursor.js";
import { dedupScope, TenantDedup } from "../streams/dedup.js";
import type { StreamRegistry } from "../streams/registry.js";
import type { StreamCounters } from "../streams/stream-counters.js";
import { splitStreamKey } from "../streams/stream-key.js";
import { CONTENT_TYPE, controlHeaders, type DecodedRecord, decodeRecord, HEADER } from "../topics/record-format.js";
import { CelCompiler, celRecordOf, celToJson, passes } from "./cel.js";
import { Pacer, type PacerClock } from "./pacer.js";
import { PartitionProgress } from "./partition-progress.js";
import { checkResultSize, failureDetail, failureReason, RecordFailedError, serializeResult } from "./record-failure.js";
import { recoverPartition } from "./recovery.js";
import { ResultWriter } from "./result-writer.js";
import { StreamPrograms } from "./stream-programs.js";

/** Dependencies and limits of the processor. */
export interface ProcessorOptions {
  broker: Broker;
  ingestTopic: string;
  resultsTopic: string;
  registry: StreamRegistry;
  counters: StreamCounters;
  logger: Logger;
  /** Event ids remembered for deduplication, per tenant. */
  dedupWindow: number;
  /** Records a partition may hold in flight before reading pauses. */
  maxInFlight: number;
  /** The consumer group. */
  groupId?: string;
  /** The streams' compiled filters and transforms, shared with StartStream (default: its own, default CEL settings). */
  programs?: StreamPrograms;
  /** The largest result kept (MAX_PAYLOAD_BYTES); a larger one fails its record (`result_too_large`). No bound when omitted. */
  maxPayloadBytes?: number;
  /** Called with the reason of each record that fails (streamgate_records_failed_total). */
  onFailed?: (reason: RecordFailure) => void;
  /** Where the warn lines of failed records go: the app's rate-limited log (a flood of bad records must not flood the log); the logger when omitted. */
  failureLog?: RateLimitedLog;
  /**
   * The clock and timers of the streams' throttles (`ratePerSecond`); the real ones when omitted.
   * For tests: a manual clock holds a throttled stream at a known record, or steps it one record at
   * a time, where waiting on the real clock would leave the outcome to how fast the machine is.
   */
  throttleClock?: PacerClock;
}

/** How long a stop waits for results being written. */
const STOP_WAIT_MS = 5000;

/** Results larger than this are written in a call of their own (see ResultWriterOptions.soloBytes). */
const SOLO_RESULT_BYTES = 64 * 1024;

/** Creates a processor; call `start()` to join the group. */
export function createProcessor(options: ProcessorOptions): Processor {
  return new Processor(options);
}

/** See the module comment. */
export class Processor {
  private subscription: Subscription | undefined;
  private readonly progress = new Map<number, PartitionProgress>();
  private readonly throttles = new Map<string, Pacer>();
  private readonly seen: TenantDedup<true>;
  private readonly programs: StreamPrograms;
  /**
   * Per stream, the ingest offset of the newest record that already has a
   * result, found by {@link recover}: records at or below it are not processed
   * again after a restart or a redelivery.
   */
  private readonly processedUpTo = new Map<string, number>();
  /** Per partition, the offset the next batch should start at; anything lower is a redelivery. */
  private readonly nextOffsets = new Map<number, number>();
  /** Records being processed right now (not those waiting in a throttle). */
  private readonly inProcess = new Set<Promise<void>>();
  private stopping = false;

  /** Per ingest partition, its results written in order, one call at a time. */
  private readonly writers = new Map<number, ResultWriter>();

  constructor(private readonly options: ProcessorOptions) {
    this.seen = new TenantDedup(options.dedupWindow);
    this.programs = options.programs ?? new StreamPrograms(new CelCompiler());
    // A stream removed (deleted, or closed long enough ago) leaves nothing behind here.
    options.registry.onRemoved((key) => {
      this.throttles.get(key)?.stop();
      this.throttles.delete(key);
      this.programs.delete(key);
    });
  }

  /** Joins the consumer group and starts processing. */
  async start(): Promise<void> {
    this.subscription = await this.options.broker.subscribe({
      topic: this.options.ingestTopic,
      groupId: this.groupId,
      from: "earliest",
      eachBatch: (batch) => this.handleBatch(batch),
      onError: (error) => this.options.logger.error({ err: error }, "processor batch failed"),
      onAssignment: (partitions) => this.assign(partitions),
    });
  }

  /**
   * Ingest records written to the partitions this processor reads but not yet
   * processed: per partition, its high watermark as of the newest batch minus
   * the first offset not yet finished (read is not enough: a throttled
   * record waits after it is read). A filtered, duplicate or close record is
   * finished like any other, and once the last record read is finished the
   * partition's lag is 0 with no further batch. Partitions not assigned here
   * count 0. The high watermark is the one of the newest batch, asking the
   * broker nothing: while backpressure holds a partition's reading, records
   * written meanwhile are not counted yet.
   */
  lag(): number {
    let total = 0;
    for (const progress of this.progress.values()) total += progress.lag;
    return total;
  }

  /**
   * Stops reading, drops throttled records not yet started (they stay
   * uncommitted, so they are processed again after a restart) and waits for
   * results being written.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    // A batch waiting for room behind a throttle must not hold up the stop.
    for (const progress of this.progress.values()) progress.release();
    for (const pacer of this.throttles.values()) pacer.stop();
    const finish = async () => {
      // Writes wait out a broker outage; a stop waits for them only so long
      // (what is unfinished stays uncommitted and is recovered on restart).
      await Promise.race([Promise.allSettled([...this.inProcess]), delay(STOP_WAIT_MS, { keepAlive: false })]);
      // A final commit that fails, or gets no answer in time, leaves those records to be recovered
      // on restart. No answer happens: when another member leaves the group at the same moment
      // (instances or workers stopped together), the commit waits on a rebalance this member,
      // stopping, takes no part in.
      await Promise.race([
        Promise.allSettled([...this.progress.values()].map((progress) => progress.flush())),
        delay(STOP_WAIT_MS, { keepAlive: false }),
      ]);
    };
    // The last commit is made before leaving the group: a member that has left cannot commit.
    if (this.subscription) await this.subscription.close(finish);
    else await finish();
    // What is left unprocessed is another instance's to process (or this one's after a restart).
    for (const progress of this.progress.values()) progress.forgetWatermark();
  }

  /** Takes a new assignment: partitions no longer assigned are another member's now. */
  private assign(partitions: number[]): void {
    const assigned = new Set(partitions);
    for (const [partition, progress] of this.progress) {
      if (assigned.has(partition)) continue;
      progress.forgetWatermark();
      // Another member may process it meanwhile: if it comes back, its first
      // batch must recover what that member wrote (and the event ids it saw),
      // even when it starts at the very offset expected here (that member
      // wrote results but committed nothing).
      this.nextOffsets.delete(partition);
    }
  }

  private async handleBatch(batch: RecordBatch): Promise<void> {
    const { partition, records } = batch;
    let progress = this.progress.get(partition);
    if (!progress) {
      progress = new PartitionProgress(
        (next) => this.subscription!.commit(partition, next),
        (error) =>
          this.options.logger.warn({ err: error, partition }, "committing processed offsets failed; will retry"),
        Math.max(1, Math.floor(this.options.maxInFlight / 2)),
      );
      this.progress.set(partition, progress);
    }
    progress.arrived(records[0]!.offset, batch.highWatermark);
    // First batch since start, a redelivery (a restart of the consumer, a
    // rebalance), or a jump ahead (another member processed the records in
    // between, e.g. while this one was out of the group after a session
    // timeout): find what already has a result, and the event ids seen, before
    // processing anything.
    if (this.nextOffsets.get(partition) !== records[0]!.offset) await this.recover(partition);
    this.nextOffsets.set(partition, records[records.length - 1]!.offset + 1);
    // A stream started on another instance may not be in this instance's registry yet.
    await Promise.all(
      [...new Set(records.map((record) => record.key))].map((id) => this.options.registry.whenKnown(id)),
    );

    for (const record of records) {
      if (this.stopping) return;
      progress.begin(record.offset);
      const offset = record.offset;
      this.dispatch(record).then(
        () => progress.end(offset),
        (error: unknown) => {
          // Only a stop leaves a record unfinished; it stays uncommitted.
          if (this.stopping) return;
          // process() fails a record itself; anything that still gets here
          // must not hold the partition either (see src/processing/record-failure.ts).
          this.fail(record, error);
          progress.end(offset);
        },
      );
      // Backpressure: the span from the oldest unfinished record (a throttled
      // stream's) to the newest read is bounded, which also bounds what
      // recover() must scan after a crash.
      if (progress.span >= this.options.maxInFlight) await progress.below(this.options.maxInFlight);
    }
  }

  /**
   * Learns from the results partition which records already have a result and
   * which event ids were seen (src/processing/recovery.ts). Every result of a
   * record past the committed offset is in the tail it reads (2 × `maxInFlight`
   * results at least): at most `maxInFlight` records span the oldest
   * unfinished one and the newest read, and fewer than `maxInFlight / 2`
   * finished ones wait for their commit (PartitionProgress).
   */
  private async recover(partition: number): Promise<void> {
    const { broker, resultsTopic, registry, logger, maxInFlight } = this.options;
    const found = await recoverPartition({
      broker,
      resultsTopic,
      registry,
      partition,
      minResults: 2 * maxInFlight,
      onResult: (key, sourceOffset, eventId, entry) => {
        this.processedUpTo.set(key, Math.max(this.processedUpTo.get(key) ?? -1, sourceOffset));
        if (eventId !== undefined) this.seen.set(dedupScope(key, entry), eventId, true);
      },
    });
    if (found > 0) logger.info({ partition, results: found }, "recovered processed records from the results log");
  }

  /** Processes a record now, or through its stream's throttle, keeping per-stream order. */
  private dispatch(record: StoredRecord): Promise<void> {
    const entry = this.options.registry.get(record.key);
    const rate = entry?.stream.processing?.ratePerSecond ?? 0;
    if (rate <= 0) return this.run(record);
    let pacer = this.throttles.get(record.key);
    if (!pacer) {
      pacer = new Pacer(rate, this.options.throttleClock);
      this.throttles.set(record.key, pacer);
    }
    return pacer.run(() => this.run(record));
  }

  private run(record: StoredRecord): Promise<void> {
    const processing = this.process(record);
    this.inProcess.add(processing);
    const forget = () => this.inProcess.delete(processing);
    processing.then(forget, forget);
    return processing;
  }

  /**
   * Processes one record: writes its result, or finishes it without one
   * (filtered, duplicate, failed). Only a write interrupted by a stop rejects,
   * which leaves the record uncommitted; any other failure fails the record.
   *
   * While tracing is on, the processing is a span continuing the trace the
   * record's headers carry, and the result's write its child, whose context
   * the result's headers carry on to the watchers. Off, `span` is undefined
   * and each `span?.` below is a check and nothing more.
   */
  private async process(record: StoredRecord): Promise<void> {
    const span = traces?.startProcess(record, this.groupId);
    let output: Output | undefined;
    try {
      output = this.prepare(record);
    } catch (error) {
      this.fail(record, error);
      span?.end(failureReason(error));
      return;
    }
    if (!output) {
      span?.end();
      return;
    }
    const sending = span?.sendResult(this.options.resultsTopic, output.headers);
    try {
      const position = await this.write(record.partition, output.key, output.value, output.headers);
      sending?.stored(position);
    } catch (error) {
      sending?.failed(error);
      // A result the broker can never store fails its record; a stop leaves it unfinished.
      if (!(error instanceof RecordFailedError)) {
        // Unfinished, so processed again after a restart: a second processing span in the same trace.
        span?.end("stopped");
        throw error;
      }
      this.fail(record, error);
      span?.end(failureReason(error));
      return;
    }
    output.written();
    span?.end();
  }

  /** Everything before a record's write: what to write, or undefined when there is nothing to write. */
  private prepare(record: StoredRecord): Output | undefined {
    const decoded = decodeRecord(record);
    const { key } = decoded;
    const sourceCursor = encodeCursor("ingest", record.partition, record.offset);
    if (record.offset <= (this.processedUpTo.get(key) ?? -1)) return undefined; // has its result already
    // A record without a tenant (stored before tenants existed, or a foreign producer's) has no one to watch it.
    if (!splitStreamKey(key)) return undefined;
    // A record from before its stream began is a deleted stream's of the same id, its close marker too:
    // made a result now, it would count as the new stream's, and that marker would end the new one's watchers.
    const current = this.options.registry.get(key);
    if (current && record.offset < current.ingestStart) return undefined;
    if (decoded.control === "close") {
      return {
        key,
        value: new Uint8Array(0),
        headers: { ...controlHeaders("end", Date.now()), [HEADER.sourceCursor]: sourceCursor },
        written: () => {
          this.throttles.delete(key);
          this.programs.delete(key);
        },
      };
    }
    // Nor do a deleted stream's last records (its close marker still ends its watchers, above).
    if (this.options.registry.wasDeleted(key)) return undefined;
    if (decoded.eventId !== "") {
      const scope = dedupScope(key, this.options.registry.get(key));
      if (this.seen.has(scope, decoded.eventId)) {
        this.options.counters.add(key, "duplicates");
        return undefined;
      }
      this.seen.set(scope, decoded.eventId, true);
    }
    const { counters } = this.options;
    counters.add(key, "processed");
    const result = this.evaluate(key, decoded);
    if (result === undefined) {
      counters.add(key, "filtered");
      return undefined;
    }
    // A passthrough payload a foreign producer wrote may be over the bound too.
    checkResultSize(result.value.byteLength, this.maxPayloadBytes);
    const headers: Record<string, string> = {
      ...decoded.headers,
      [HEADER.contentType]: result.contentType,
      [HEADER.sendTime]: String(decoded.sendTime),
      [HEADER.processTime]: String(Date.now()),
      [HEADER.sourceCursor]: sourceCursor,
    };
    if (decoded.eventId !== "") headers[HEADER.eventId] = decoded.eventId;
    return { key, value: result.value, headers, written: () => counters.add(key, "results") };
  }

  private get groupId(): string {
    return this.options.groupId ?? "streamgate-processor";
  }

  private get maxPayloadBytes(): number {
    return this.options.maxPayloadBytes ?? Infinity;
  }

  /**
   * Finishes a record as failed: GetStream's `failed` count (for a stream
   * this instance knows: a foreign producer's keys must not grow the
   * counters), the metric by reason, and a warn line with the stream key and
   * the record's cursor, never its payload.
   */
  private fail(record: StoredRecord, error: unknown): void {
    const reason = failureReason(error);
    try {
      if (this.options.registry.get(record.key)) this.options.counters.add(record.key, "failed");
      this.options.onFailed?.(reason);
      (this.options.failureLog ?? warnTo(this.options.logger))(
        {
          stream: record.key,
          cursor: encodeCursor("ingest", record.partition, record.offset),
          reason,
          ...failureDetail(error),
        },
        "record failed; no result, its partition moves on",
      );
    } catch {
      // Counting or logging a failure must not itself hold the partition.
    }
  }

  /** Applies filter and transform; undefined when the filter drops the record. */
  private evaluate(key: string, record: DecodedRecord): { contentType: string; value: Uint8Array } | undefined {
    const passthrough = {
      contentType:
        record.payload.kind === "json" ? CONTENT_TYPE.json : (record.headers[HEADER.contentType] ?? CONTENT_TYPE.bytes),
      value: record.payload.bytes,
    };
    const processing = this.options.registry.get(key)?.stream.processing;
    if (!processing || (processing.filter === "" && processing.transform === "")) return passthrough;
    const programs = this.programs.of(key, processing);
    const input = celRecordOf(record);
    if (programs.filter && !passes(programs.filter, input)) return undefined;
    if (!programs.transform) return passthrough;
    const value = celToJson(programs.transform(input));
    return { contentType: CONTENT_TYPE.json, value: serializeResult(value, this.maxPayloadBytes) };
  }

  /** Writes a result after every result given before it for the same ingest partition (src/processing/result-writer.ts). */
  private write(
    partition: number,
    key: string,
    value: Uint8Array,
    headers: Record<string, string>,
  ): Promise<RecordPosition> {
    let writer = this.writers.get(partition);
    if (!writer) {
      writer = new ResultWriter({
        // No linger: the writer batches what comes while its call is out, and waits for nothing else.
        produce: (records) =>
          this.options.broker.produce(this.options.resultsTopic, records, { timeoutMs: Infinity, linger: false }),
        soloBytes: SOLO_RESULT_BYTES,
        stopping: () => this.stopping,
        onRetry: (error, attempt) =>
          this.options.logger.warn({ err: error, partition, attempt }, "writing results failed; retrying"),
      });
      this.writers.set(partition, writer);
    }
    return writer.write({ key, value, headers });
  }
}

/** A result to write, and what to do once it is written. */
interface Output {
  key: string;
  value: Uint8Array;
  headers: Record<string, string>;
  written(): void;
}
