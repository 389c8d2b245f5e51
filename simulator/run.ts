/**
 * A run: calls started on an open-loop schedule (see patterns.ts), spread
 * round robin over the clients, counted per client and per second, until the
 * duration is over (or the run is stopped), then the calls still in flight are
 * awaited so every call sent is counted with how it ended.
 */
import { setMaxListeners } from "node:events";
import type { SimClient } from "./client.js";
import { CALL_TIMEOUT_MS } from "./client.js";
import { OpenLoopSchedule, type Pattern } from "./patterns.js";
import type { WindowFigures } from "./progress.js";
import { CallStats } from "./stats.js";

/** The schedule is looked at least this often, in seconds (rates change; timers are coarse). */
const MAX_TICK_SECONDS = 0.02;

/** The run's last window is shown only if at least this long, in seconds: rates over a sliver mislead. */
const MIN_LAST_WINDOW_SECONDS = 0.25;

/** What a run needs. */
export interface RunSettings {
  pattern: Pattern;
  /** Seconds of load. */
  duration: number;
  /** The most calls in flight at once. */
  maxInFlight: number;
  /** The clients, called in turn. */
  clients: SimClient[];
  /** Aborting it ends the load early; calls in flight are still awaited. */
  stop: AbortSignal;
  /** Aborting it cancels the calls in flight (they end "canceled"). */
  cancel: AbortSignal;
  /** Told of each second's figures, and of the last, shorter window's. */
  onWindow(figures: WindowFigures): void;
}

/** How a run went, beyond the clients' own counts. */
export interface RunOutcome {
  /** Seconds from the start until the last call ended. */
  elapsed: number;
  /** Calls due by the schedule. */
  offered: number;
  /** Calls due but not sent because the in-flight cap was reached. */
  notSent: number;
  /** Whether the run was stopped before its duration. */
  stopped: boolean;
}

/** Runs the load; see the module comment. */
export async function runLoad(settings: RunSettings): Promise<RunOutcome> {
  const { pattern, duration, maxInFlight, clients, stop, cancel, onWindow } = settings;
  const schedule = new OpenLoopSchedule(pattern, maxInFlight);
  const calls = new AbortController();
  // Every call in flight listens to it (and stops listening when it ends): thousands at once are expected.
  setMaxListeners(0, calls.signal);
  const onCancel = () => calls.abort();
  cancel.addEventListener("abort", onCancel, { once: true });
  const start = performance.now();
  const now = () => (performance.now() - start) / 1000;

  let inFlight = 0;
  let next = 0;
  let offered = 0;
  let notSent = 0;
  let window = { from: 0, offered: 0, ended: new CallStats() };
  /** Set while the run waits for the calls in flight to end. */
  let drained: (() => void) | undefined;

  const closeWindow = () => {
    const t = now();
    onWindow({
      elapsed: t,
      duration,
      seconds: t - window.from,
      offered: window.offered,
      ended: window.ended,
      inFlight,
    });
    window = { from: t, offered: 0, ended: new CallStats() };
  };
  const send = (count: number) => {
    for (let i = 0; i < count; i++) {
      const client = clients[next++ % clients.length]!;
      client.stats.sent++;
      inFlight++;
      void client.call(calls.signal).then(({ code, ms }) => {
        client.stats.record(code, ms);
        window.ended.record(code, ms);
        if (--inFlight === 0) drained?.();
      });
    }
  };

  const seconds = setInterval(closeWindow, 1000);
  await new Promise<void>((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const end = () => {
      clearTimeout(timer);
      stop.removeEventListener("abort", end);
      resolve();
    };
    const tick = () => {
      const t = Math.min(now(), duration);
      const due = schedule.due(t, inFlight);
      offered += due.start + due.skipped;
      window.offered += due.start + due.skipped;
      notSent += due.skipped;
      send(due.start);
      if (t >= duration) return end();
      timer = setTimeout(tick, Math.max(1, schedule.nextDueIn(t, MAX_TICK_SECONDS) * 1000));
    };
    if (stop.aborted) return end();
    stop.addEventListener("abort", end, { once: true });
    tick();
  });

  if (inFlight > 0) {
    const allEnded = new Promise<void>((resolve) => (drained = resolve));
    // Calls time out on their own; this only guards against one that never ends.
    const guard = setTimeout(onCancel, CALL_TIMEOUT_MS + 2000);
    await allEnded;
    clearTimeout(guard);
  }
  clearInterval(seconds);
  if (now() - window.from >= MIN_LAST_WINDOW_SECONDS) closeWindow();
  cancel.removeEventListener("abort", onCancel);
  return { elapsed: now(), offered, notSent, stopped: stop.aborted };
}
