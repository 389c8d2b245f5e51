/**
 * Interleaved ghz runs, for figures whose target is a ratio to a baseline.
 * On a machine shared with other tenants the same code measured minutes
 * apart differs by ±30 % or more, so a baseline measured at the start of a
 * run and its subject measured later give a ratio that is mostly noise.
 * Here every subject's server is up at once, each is warmed up (unmeasured:
 * the JIT), then they run in turn, round after round (A, B, A, B, ...), each
 * ratio is taken within its own round, and the median of those is the figure.
 */
import { runGhzOn, warmUp, type GhzRun, type MeasuredReport } from "./ghz.js";
import type { StreamgateServer } from "./processes.js";
import type { Latency } from "./result.js";

/** One server and the ghz run it gets in every round. */
export interface RoundSubject {
  server: StreamgateServer;
  run: Omit<GhzRun, "port" | "durationSec">;
}

/** How long and how often. */
export interface RoundsOptions {
  rounds: number;
  /** Seconds of each subject's phase in each round. */
  phaseSec: number;
  /** Seconds of each subject's unmeasured warm-up, before the first round. */
  warmupSec: number;
}

/** A subject's phases over all rounds. */
export interface RoundsReport {
  /** Each round's run, in order. */
  rounds: MeasuredReport[];
  /** Calls over all rounds per second of all rounds. */
  rps: number;
  count: number;
  /** The median over rounds of each percentile (ghz reports percentiles, not samples to merge). */
  latencyMs: Latency;
  errors: number;
  /** Server CPU time per call over all rounds, in µs. */
  cpuMicrosPerCall: number;
}

/** Runs `subjects` in turn for `options.rounds` rounds; returns one report per subject, in the same order. */
export async function runGhzRounds(subjects: RoundSubject[], options: RoundsOptions): Promise<RoundsReport[]> {
  for (const { server, run } of subjects) {
    await warmUp(server, run, options.warmupSec);
  }
  const runs = subjects.map(() => [] as RoundsReport["rounds"]);
  for (let round = 0; round < options.rounds; round++) {
    for (const [index, { server, run }] of subjects.entries()) {
      runs[index]!.push(await runGhzOn(server, { ...run, durationSec: options.phaseSec }));
    }
  }
  return runs.map(summarize);
}

/** The ratio of `subject` to `baseline` in each round, and their median. */
export function roundRatios(subject: RoundsReport, baseline: RoundsReport): { median: number; ratios: number[] } {
  const ratios = subject.rounds.map((run, round) => run.rps / baseline.rounds[round]!.rps);
  return { median: median(ratios), ratios };
}

function summarize(rounds: RoundsReport["rounds"]): RoundsReport {
  const count = rounds.reduce((sum, run) => sum + run.count, 0);
  const seconds = rounds.reduce((sum, run) => sum + run.seconds, 0);
  const cpu = rounds.reduce((sum, run) => sum + run.serverCpuSeconds, 0);
  const percentile = (key: "p50" | "p95" | "p99") => median(rounds.map((run) => run.latencyMs[key]));
  return {
    rounds,
    rps: count / seconds,
    count,
    latencyMs: {
      p50: percentile("p50"),
      p95: percentile("p95"),
      p99: percentile("p99"),
      max: Math.max(...rounds.map((run) => run.latencyMs.max ?? 0)),
    },
    errors: rounds.reduce((sum, run) => sum + run.errors, 0),
    cpuMicrosPerCall: Math.round((cpu / count) * 1e6),
  };
}

/** The median (the mean of the middle two for an even count). */
function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
