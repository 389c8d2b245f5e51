/**
 * One measured figure of a benchmark run, as RESULTS.md and results.json show it.
 */

/** Latency percentiles in milliseconds. */
export interface Latency {
  p50: number;
  p95: number;
  p99: number;
  max?: number;
}

/** A target the issue sets for a figure, and whether this run met it. */
export interface Target {
  /** What is required, e.g. "≥ 0.75 × bare connect-node". */
  goal: string;
  met: boolean;
  /** The figure compared, as text ("0.81×", "p99 12.3 ms"). */
  measured: string;
}

/** One row of the results. */
export interface BenchResult {
  /** Scenario name, e.g. "senddata-unary". */
  scenario: string;
  /** "memory", "kafka", or "-" for a baseline with no broker. */
  broker: string;
  /** Concurrent callers (or watchers, or streams). */
  concurrency: number;
  /** Payload size in bytes (0 when not applicable). */
  payloadBytes: number;
  /** The main figure. */
  throughput: number;
  /** Its unit: "req/s", "msg/s", "results/s", ... */
  unit: string;
  latencyMs?: Latency;
  /** The baseline row this is compared with (its scenario name), and the ratio to it. */
  baseline?: string;
  ratio?: number;
  target?: Target;
  /** Calls or messages that failed. */
  errors: number;
  /** Anything else worth reading (RSS, event-loop delay, offered load...). */
  extra?: Record<string, number | string>;
}

/** Milliseconds from nanoseconds, rounded to 0.01 ms. */
export function ms(nanoseconds: number): number {
  return Math.round(nanoseconds / 1e4) / 100;
}

/** The nearest-rank p99 of `values` (milliseconds). */
export function p99(values: number[]): number {
  return percentiles(values).p99;
}

/** Nearest-rank percentiles of `values` (milliseconds), with the max. */
export function percentiles(values: number[]): Latency {
  if (values.length === 0) return { p50: 0, p95: 0, p99: 0, max: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (q: number) => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
  const round = (value: number) => Math.round(value * 100) / 100;
  return {
    p50: round(rank(0.5)),
    p95: round(rank(0.95)),
    p99: round(rank(0.99)),
    max: round(sorted[sorted.length - 1]!),
  };
}
