/**
 * The live progress line, once a second on stderr: elapsed time, the rate
 * offered, allowed and blocked per second, errors, and the latency of the
 * calls allowed in the last second. On a terminal the line is rewritten in
 * place; otherwise (a pipe, a log file, a test) one line per second is printed.
 */
import type { CallStats } from "./stats.js";

/** One second (or the run's last, shorter window) of a run. */
export interface WindowFigures {
  /** Seconds since the run started, at the window's end. */
  elapsed: number;
  /** The run's planned length in seconds. */
  duration: number;
  /** The window's length in seconds. */
  seconds: number;
  /** Calls due in the window (started or not sent at the in-flight cap). */
  offered: number;
  /** Calls that ended in the window. */
  ended: CallStats;
  /** Calls in flight at the window's end. */
  inFlight: number;
}

/** The progress line for one window, e.g. `  3.0/30 s  offered 20.0/s  allowed 5.0/s  blocked 15.0/s  errors 0  p50 1.2 ms  p99 3.1 ms  in flight 0`. */
export function progressLine(figures: WindowFigures): string {
  const { elapsed, duration, seconds, offered, ended, inFlight } = figures;
  const per = (count: number) => `${formatRate(seconds > 0 ? count / seconds : 0)}/s`;
  const latency = ended.allowedLatency;
  const ms = (q: number) => (latency.count === 0 ? "-" : `${formatMs(latency.percentile(q))} ms`);
  return [
    `${elapsed.toFixed(1).padStart(5)}/${duration} s`,
    `offered ${per(offered)}`,
    `allowed ${per(ended.allowed)}`,
    `blocked ${per(ended.blocked)}`,
    `errors ${ended.errorCount}`,
    `p50 ${ms(0.5)}`,
    `p99 ${ms(0.99)}`,
    `in flight ${inFlight}`,
  ].join("  ");
}

/** Where progress goes: stderr, or anything with `write` (and `isTTY` when it is a terminal). */
interface ProgressOutput {
  isTTY?: boolean;
  write(text: string): unknown;
}

/** Shows progress lines on `out`; see the module comment. */
export class ProgressPrinter {
  private shown = false;

  constructor(private readonly out: ProgressOutput) {}

  /** Shows `line`: rewrites the current line on a terminal, else prints it on a line of its own. */
  show(line: string): void {
    if (this.out.isTTY) {
      // \r back to the start, ESC[2K clears the old line (a new one may be shorter).
      this.out.write(`\r\x1b[2K${line}`);
      this.shown = true;
    } else {
      this.out.write(`${line}\n`);
    }
  }

  /** Ends the rewritten line on a terminal, so what follows starts on a line of its own. */
  end(): void {
    if (this.shown) this.out.write("\n");
    this.shown = false;
  }
}

/** A rate for people: one decimal below 100, whole above. */
function formatRate(perSecond: number): string {
  return perSecond >= 100 ? Math.round(perSecond).toString() : perSecond.toFixed(1);
}

/** Milliseconds for people: two decimals below 10, one below 100, whole above. */
export function formatMs(ms: number): string {
  return ms >= 100 ? Math.round(ms).toString() : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2);
}
