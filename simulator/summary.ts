/**
 * The end-of-run summary: totals (offered, sent, allowed, blocked, errors by
 * code, not sent at the in-flight cap), the allowed and blocked shares,
 * latency percentiles of allowed and of blocked calls, and a per-client table;
 * as one JSON object (--json) or as text for people.
 */
import type { SimClient } from "./client.js";
import type { LatencyHistogram } from "./histogram.js";
import type { SimOptions } from "./options.js";
import { DEFAULT_PERIOD } from "./patterns.js";
import { formatMs } from "./progress.js";
import type { RunOutcome } from "./run.js";
import { type CallStats, totalOf } from "./stats.js";

/** Latency percentiles in milliseconds (0 when no call). */
interface Percentiles {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** Counts of calls, for the run or for one client. */
export interface Counts {
  sent: number;
  allowed: number;
  blocked: number;
  /** Calls that ended with another code, by code ("unavailable", ...). */
  errors: Record<string, number>;
  /** The sum of {@link Counts.errors}. */
  errorCount: number;
  /** allowed / sent, 0 to 1 (0 when nothing was sent). */
  allowedShare: number;
  /** blocked / sent, 0 to 1. */
  blockedShare: number;
  latencyMs: { allowed: Percentiles; blocked: Percentiles };
}

/** The summary, as --json prints it. */
export interface Summary extends Counts {
  url: string;
  pattern: string;
  /** Peak calls per second offered. */
  rps: number;
  /** The burst or wave period in seconds; null for steady. */
  period: number | null;
  /** Planned seconds of load. */
  duration: number;
  /** Seconds from the start until the last call ended. */
  elapsed: number;
  /** True when stopped early (Ctrl-C). */
  stopped: boolean;
  /** The RPC each call made. */
  method: "SendData" | "StartStream";
  clients: number;
  /** Calls due by the schedule: sent + notSent. */
  offered: number;
  /** Calls due but not sent: the in-flight cap was reached. */
  notSent: number;
  perClient: Array<Counts & { client: number; identity: string; streamId: string }>;
}

/** The summary of a run with `options` of `clients`, which went as `outcome`. */
export function summarize(options: SimOptions, clients: SimClient[], outcome: RunOutcome): Summary {
  return {
    url: options.url,
    pattern: options.pattern,
    rps: options.rps,
    period: options.pattern === "steady" ? null : (options.period ?? DEFAULT_PERIOD[options.pattern]),
    duration: options.duration,
    elapsed: round(outcome.elapsed),
    stopped: outcome.stopped,
    method: options.method === "send" ? "SendData" : "StartStream",
    clients: clients.length,
    offered: outcome.offered,
    notSent: outcome.notSent,
    ...counts(totalOf(clients.map((client) => client.stats))),
    perClient: clients.map((client) => ({
      client: client.index,
      identity: client.credential.identity,
      streamId: client.streamId,
      ...counts(client.stats),
    })),
  };
}

/** The summary as text for people. */
export function formatSummary(summary: Summary): string {
  const share = (part: number) => `${(part * 100).toFixed(1)} %`;
  const latency = (p: Percentiles) =>
    p.count === 0
      ? "-"
      : `p50 ${formatMs(p.p50)} ms  p95 ${formatMs(p.p95)} ms  p99 ${formatMs(p.p99)} ms  max ${formatMs(p.max)} ms`;
  const shape = summary.period === null ? summary.pattern : `${summary.pattern} (period ${summary.period} s)`;
  const lines = [
    `${shape} at ${summary.rps}/s for ${summary.duration} s, ${summary.clients} client${summary.clients === 1 ? "" : "s"}, ` +
      `${summary.method} to ${summary.url}` +
      (summary.stopped ? `: stopped early, after ${summary.elapsed.toFixed(1)} s` : ""),
    "",
    `calls     offered ${summary.offered}   sent ${summary.sent}   not sent (in-flight cap) ${summary.notSent}`,
    `          allowed ${summary.allowed} (${share(summary.allowedShare)})   blocked ${summary.blocked} (${share(summary.blockedShare)})   errors ${summary.errorCount}`,
  ];
  if (summary.errorCount > 0) {
    lines.push(
      `errors    ${Object.entries(summary.errors)
        .map(([code, count]) => `${code} ${count}`)
        .join(", ")}`,
    );
  }
  lines.push(
    `latency   allowed  ${latency(summary.latencyMs.allowed)}`,
    `          blocked  ${latency(summary.latencyMs.blocked)}`,
    "",
  );
  const ms = (p: Percentiles, value: number) => (p.count === 0 ? "-" : formatMs(value));
  lines.push(
    ...table(
      ["client", "identity", "sent", "allowed", "blocked", "errors", "p50 ms", "p99 ms"],
      summary.perClient.map((c) => [
        String(c.client),
        c.identity,
        String(c.sent),
        String(c.allowed),
        String(c.blocked),
        String(c.errorCount),
        ms(c.latencyMs.allowed, c.latencyMs.allowed.p50),
        ms(c.latencyMs.allowed, c.latencyMs.allowed.p99),
      ]),
    ),
  );
  return `${lines.join("\n")}\n`;
}

/** The counts of `stats`, with shares and percentiles. */
function counts(stats: CallStats): Counts {
  return {
    sent: stats.sent,
    allowed: stats.allowed,
    blocked: stats.blocked,
    errors: Object.fromEntries([...stats.errors].sort(([, a], [, b]) => b - a)),
    errorCount: stats.errorCount,
    allowedShare: stats.sent === 0 ? 0 : round(stats.allowed / stats.sent, 4),
    blockedShare: stats.sent === 0 ? 0 : round(stats.blocked / stats.sent, 4),
    latencyMs: { allowed: percentiles(stats.allowedLatency), blocked: percentiles(stats.blockedLatency) },
  };
}

function percentiles(histogram: LatencyHistogram): Percentiles {
  return {
    count: histogram.count,
    p50: round(histogram.percentile(0.5)),
    p95: round(histogram.percentile(0.95)),
    p99: round(histogram.percentile(0.99)),
    max: round(histogram.max),
  };
}

/** Rows under a header, columns padded: text left, the rest (numbers) right. */
function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i <= 1 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

function round(value: number, digits = 3): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
