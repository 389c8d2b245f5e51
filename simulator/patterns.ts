/**
 * Traffic patterns, as pure functions of time: the rate of calls a run offers
 * at each moment, and its integral (the calls offered so far), from which an
 * open-loop schedule says how many calls are due. Open loop: calls are due on
 * the pattern's clock whatever the server's speed, as real clients would send;
 * a slow server does not slow the offered load down (it piles calls up in
 * flight, up to a cap, past which due calls are counted as not sent rather
 * than queued without bound).
 */

/** The patterns a run can follow. */
export const PATTERNS = ["steady", "burst", "wave"] as const;

/** One of {@link PATTERNS}. */
export type PatternName = (typeof PATTERNS)[number];

/** A burst pattern's high rate lasts this long at the start of each period, in seconds. */
export const BURST_SECONDS = 1;

/** Between bursts, the burst pattern offers this share of its rate. */
const BURST_QUIET_SHARE = 0.1;

/** The period, in seconds, of the patterns that have one when none is given. */
export const DEFAULT_PERIOD: Record<Exclude<PatternName, "steady">, number> = { burst: 5, wave: 20 };

/** A pattern: the offered rate over time and its integral. Time is in seconds from the start of the run. */
export interface Pattern {
  name: PatternName;
  /** Calls per second offered at `t`. */
  rate(t: number): number;
  /** Calls offered from 0 to `t`: the integral of {@link Pattern.rate}. */
  total(t: number): number;
}

/** `rps` calls per second all the time. */
export function steady(rps: number): Pattern {
  return { name: "steady", rate: () => rps, total: (t) => rps * t };
}

/**
 * `rps` calls per second during the first `burstSeconds` of every `period`
 * seconds, and {@link BURST_QUIET_SHARE} of it in between: a run starts with a burst.
 */
export function burst(rps: number, period: number = DEFAULT_PERIOD.burst, burstSeconds = BURST_SECONDS): Pattern {
  const quiet = rps * BURST_QUIET_SHARE;
  const high = Math.min(burstSeconds, period);
  const perPeriod = rps * high + quiet * (period - high);
  return {
    name: "burst",
    rate: (t) => (phase(t, period) < high ? rps : quiet),
    total: (t) => {
      const periods = Math.floor(t / period);
      const into = t - periods * period;
      return periods * perPeriod + rps * Math.min(into, high) + quiet * Math.max(0, into - high);
    },
  };
}

/**
 * A wave between 0 and `rps` calls per second, one cycle every `period`
 * seconds: `rps·(1 − cos(2πt/period))/2`. It starts at 0, peaks at `rps`
 * half a period in, and averages `rps/2`, so load rises and falls smoothly.
 */
export function wave(rps: number, period: number = DEFAULT_PERIOD.wave): Pattern {
  const omega = (2 * Math.PI) / period;
  return {
    name: "wave",
    rate: (t) => (rps * (1 - Math.cos(omega * t))) / 2,
    total: (t) => (rps / 2) * (t - Math.sin(omega * t) / omega),
  };
}

/** The pattern called `name` at `rps`, with `period` seconds (ignored by steady; the pattern's default when undefined). */
export function makePattern(name: PatternName, rps: number, period?: number): Pattern {
  switch (name) {
    case "steady":
      return steady(rps);
    case "burst":
      return burst(rps, period ?? DEFAULT_PERIOD.burst);
    case "wave":
      return wave(rps, period ?? DEFAULT_PERIOD.wave);
  }
}

/** What a schedule says to do at one moment. */
export interface Due {
  /** Calls to start now. */
  start: number;
  /** Calls due now that are not sent because the in-flight cap is reached. */
  skipped: number;
}

/**
 * An open-loop schedule over a pattern: the k-th call is due once the
 * pattern's integral reaches k, so the calls due in any window are its
 * integral over the window, within one. Ask it at any moments, in order, with
 * the calls in flight: every due call is either started or skipped, once.
 */
export class OpenLoopSchedule {
  private handedOut = 0;

  constructor(
    private readonly pattern: Pattern,
    /** The most calls in flight at once; due calls beyond it are skipped. */
    private readonly maxInFlight: number,
  ) {}

  /** The calls due by `t` not handed out yet, split into those to start given `inFlight` calls, and those skipped. */
  due(t: number, inFlight: number): Due {
    const dueNow = Math.max(0, Math.floor(this.pattern.total(t)) - this.handedOut);
    this.handedOut += dueNow;
    const start = Math.min(dueNow, Math.max(0, this.maxInFlight - inFlight));
    return { start, skipped: dueNow - start };
  }

  /**
   * About how long after `t` the next call is due, in seconds, at most
   * `maxWait` (the rate may change before then, so a timer re-asks).
   */
  nextDueIn(t: number, maxWait: number): number {
    const rate = this.pattern.rate(t);
    if (rate <= 0) return maxWait;
    const left = this.handedOut + 1 - this.pattern.total(t);
    return Math.min(maxWait, Math.max(0, left / rate));
  }
}

/** Where `t` falls in a `period`, from 0 to `period`. */
function phase(t: number, period: number): number {
  return t - Math.floor(t / period) * period;
}
