/**
 * Interleaved phases, for figures whose target is a ratio to a baseline.
 * On a machine shared with other tenants the same code measured minutes
 * apart differs by ±30 % or more, so a baseline measured at the start of a
 * run and its subject measured later give a ratio that is mostly noise.
 * Here every subject is ready at once (servers up, producers connected), each
 * is warmed up (unmeasured: the JIT), then they run in turn, round after round
 * (A, B, A, B, ...), each ratio is taken within its own round, and the median
 * of those is the figure.
 */
import { type GhzRun, runGhzOn, warmUp } from "./ghz.js";
import type { StreamgateServer } from "./processes.js";
import type { Latency } from "./result.js";

/** What one subject's phase measured. */
export interface RoundPhase {
  /** Calls (or messages) per second. */
  rps: number;
  count: number;
  /** Seconds the phase took. */
  seconds: number;
  latencyMs: Latency;
  errors: number;
  /** The server's CPU time over the phase, when the subject is a server. */
  serverCpuSeconds?: number;
}

/** Something measured in every round: a server under ghz, or a load generator of its own. */
export interface RoundSubject {
  /** Unmeasured load before the first round. */
  warmUp(): Promise<void>;
  /** One measured phase of `seconds`. */
  measure(seconds: number): Promise<RoundPhase>;
}

/** A server, and the ghz run it gets in every round after `warmupSec` of it unmeasured. */
export function ghzSubject(
  server: StreamgateServer,
  run: Omit<GhzRun, "port" | "durationSec">,
  warmupSec: number,
): RoundSubject {
  return {
    warmUp: () => warmUp(server, run, warmupSec),
    measure: (seconds) => runGhzOn(server, { ...run, durationSec: seconds }),
  };
}

/** How long and how often. */
export interface RoundsOptions {
  rounds: number;
  /** Seconds of each subject's phase in each round. */
  phaseSec: number;
}

/** A subject's phases over all rounds. */
export interface RoundsReport {
  /** Each round's phase, in order. */
  rounds: RoundPhase[];
  /** Calls over all rounds per second of all rounds. */
  rps: number;
  count: number;
  /** The median over rounds of each percentile (ghz reports percentiles, not samples to merge). */
  latencyMs: Latency;
  errors: number;
  /** Server CPU time per call over all rounds, in µs (when the subject is a server). */
  cpuMicrosPerCall?: number;
}

/** Runs `subjects` in turn for `options.rounds` rounds; returns one report per subject, in the same order. */
export async function runRounds(subjects: RoundSubject[], options: RoundsOptions): Promise<RoundsReport[]> {
  for (const subject of subjects) await subject.warmUp();
  const phases = subjects.map(() => [] as RoundPhase[]);
  for (let round = 0; round < options.rounds; round++) {
    for (const [index, subject] of subjects.entries()) {
      phases[index]!.push(await subject.measure(options.phaseSec));
    }
  }
  return phases.map(summarize);
}

/** The ratio of `subject` to `baseline` in each round, and their median. */
export function roundRatios(subject: RoundsReport, baseline: RoundsReport): { median: number; ratios: number[] } {
  const ratios = subject.rounds.map((phase, round) => phase.rps / baseline.rounds[round]!.rps);
  return { median: median(ratios), ratios };
}

function summarize(rounds: RoundPhase[]): RoundsReport {
  const count = rounds.reduce((sum, phase) => sum + phase.count, 0);
  const seconds = rounds.reduce((sum, phase) => sum + phase.seconds, 0);
  const cpu = rounds.every((phase) => phase.serverCpuSeconds !== undefined)
    ? rounds.reduce((sum, phase) => sum + phase.serverCpuSeconds!, 0)
    : undefined;
  const percentile = (key: "p50" | "p95" | "p99") => median(rounds.map((phase) => phase.latencyMs[key]));
  return {
    rounds,
    rps: count / seconds,
    count,
    latencyMs: {
      p50: percentile("p50"),
      p95: percentile("p95"),
      p99: percentile("p99"),
      max: Math.max(...rounds.map((phase) => phase.latencyMs.max ?? 0)),
    },
    errors: rounds.reduce((sum, phase) => sum + phase.errors, 0),
    ...(cpu === undefined ? {} : { cpuMicrosPerCall: Math.round((cpu / count) * 1e6) }),
  };
}

/** The median (the mean of the middle two for an even count). */
function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
