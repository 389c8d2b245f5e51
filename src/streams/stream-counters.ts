/**
 * Per-stream counters (by stream key), as this instance saw them, for GetStream.
 */
import { create } from "@bufbuild/protobuf";
import { type StreamCounts, StreamCountsSchema } from "../../gen/streamgate/v1/stream_service_pb.js";

/** The counter names, as in the StreamCounts message. */
export type CounterName = "accepted" | "duplicates" | "rejected" | "processed" | "filtered" | "failed" | "results";

/** Counters of every stream this instance has seen traffic for. */
export class StreamCounters {
  private readonly counts = new Map<string, Record<CounterName, number>>();

  /** Adds `n` to a stream's counter. */
  add(streamId: string, name: CounterName, n = 1): void {
    let counts = this.counts.get(streamId);
    if (!counts) {
      counts = { accepted: 0, duplicates: 0, rejected: 0, processed: 0, filtered: 0, failed: 0, results: 0 };
      this.counts.set(streamId, counts);
    }
    counts[name] += n;
  }

  /** Forgets a stream's counters (it was removed). */
  delete(streamId: string): void {
    this.counts.delete(streamId);
  }

  /** A stream's counters as a message. */
  snapshot(streamId: string): StreamCounts {
    const counts = this.counts.get(streamId);
    const message = create(StreamCountsSchema);
    if (counts) {
      for (const name of Object.keys(counts) as CounterName[]) message[name] = BigInt(counts[name]);
    }
    return message;
  }
}
