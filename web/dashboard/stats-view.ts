/** The headline figures of each Stats snapshot, as plain numbers. */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Stats } from "../../gen/streamgate/v1/admin_service_pb.js";
import { byId } from "./dom.js";
import { formatNumber, formatTime } from "./format.js";

/** Shown where there is no figure yet. */
const NONE = "—";

const FIGURES = [
  "allowed-rate",
  "blocked-rate",
  "global-tokens",
  "stats-global-burst",
  "latency-p50",
  "latency-p95",
  "latency-p99",
  "active-streams",
  "active-watchers",
  "stats-time",
] as const;

type Figure = (typeof FIGURES)[number];

/** The figures' elements, filled from each snapshot. */
export class StatsView {
  private readonly cells = new Map<Figure, HTMLElement>(FIGURES.map((id) => [id, byId(id, HTMLElement)]));

  /** Shows `stats`. */
  show(stats: Stats): void {
    this.set("allowed-rate", formatNumber(stats.allowedPerSecond, 1));
    this.set("blocked-rate", formatNumber(stats.blockedPerSecond, 1));
    // No tokens: no global bucket, or (should it happen) a level the store could not tell.
    const hasGlobal = stats.limits?.global !== undefined;
    this.set(
      "global-tokens",
      stats.globalTokens !== undefined ? formatNumber(stats.globalTokens, 1) : hasGlobal ? "unknown" : "no limit",
    );
    this.set("stats-global-burst", stats.globalBurst !== undefined ? formatNumber(stats.globalBurst) : NONE);
    this.set("latency-p50", formatNumber(stats.latencyP50Ms, 2));
    this.set("latency-p95", formatNumber(stats.latencyP95Ms, 2));
    this.set("latency-p99", formatNumber(stats.latencyP99Ms, 2));
    this.set("active-streams", formatNumber(stats.activeStreams));
    this.set("active-watchers", formatNumber(stats.activeWatchers));
    this.set("stats-time", stats.time ? formatTime(timestampDate(stats.time)) : NONE);
  }

  /** Back to no figures (another key, another session). */
  clear(): void {
    for (const cell of this.cells.values()) cell.textContent = NONE;
  }

  private set(id: Figure, text: string): void {
    const cell = this.cells.get(id)!;
    if (cell.textContent !== text) cell.textContent = text;
  }
}
