/**
 * What a run counts, per client identity and over each second: calls sent,
 * allowed (OK), blocked by a rate limit (resource_exhausted), other errors by
 * code, and latencies of allowed and blocked calls kept apart (a refusal is
 * answered before any work, so mixing them would hide both).
 */
import { LatencyHistogram } from "./histogram.js";

/** How a call ended: "ok" or a Connect code name ("resource_exhausted", "unavailable", ...). */
export type CallCode = string;

/** The code of a call refused by a rate limit. */
const BLOCKED_CODE: CallCode = "resource_exhausted";

/** Counts of calls and their latencies; see the module comment. */
export class CallStats {
  /** Calls started. */
  sent = 0;
  /** Calls that ended OK. */
  allowed = 0;
  /** Calls refused with resource_exhausted. */
  blocked = 0;
  /** Calls that ended with another code, by code. */
  readonly errors = new Map<CallCode, number>();
  /** Latencies of allowed calls, in milliseconds. */
  readonly allowedLatency = new LatencyHistogram();
  /** Latencies of blocked calls, in milliseconds. */
  readonly blockedLatency = new LatencyHistogram();

  /** Counts one call that ended with `code` after `ms` milliseconds. */
  record(code: CallCode, ms: number): void {
    if (code === "ok") {
      this.allowed++;
      this.allowedLatency.record(ms);
    } else if (code === BLOCKED_CODE) {
      this.blocked++;
      this.blockedLatency.record(ms);
    } else {
      this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
    }
  }

  /** Calls that ended with a code other than OK and resource_exhausted. */
  get errorCount(): number {
    let sum = 0;
    for (const count of this.errors.values()) sum += count;
    return sum;
  }

  /** Adds `other`'s counts to this one's. */
  merge(other: CallStats): void {
    this.sent += other.sent;
    this.allowed += other.allowed;
    this.blocked += other.blocked;
    for (const [code, count] of other.errors) this.errors.set(code, (this.errors.get(code) ?? 0) + count);
    this.allowedLatency.merge(other.allowedLatency);
    this.blockedLatency.merge(other.blockedLatency);
  }
}

/** The sum of several stats (e.g. every client's: the run's totals). */
export function totalOf(all: Iterable<CallStats>): CallStats {
  const total = new CallStats();
  for (const stats of all) total.merge(stats);
  return total;
}
