/**
 * The live figures behind WatchStats, under an injected clock: percentiles of
 * the handling times since a moment, and the per-client leaderboard of the last
 * minute, which forgets what is older.
 */
import { describe, expect, it } from "vitest";
import { LiveStats } from "../src/observe/live-stats.js";

describe("LiveStats", () => {
  it("gives nearest-rank percentiles of the times recorded since a moment", () => {
    let now = 1_000_000;
    const stats = new LiveStats(() => now);
    stats.handled(500); // before the moment asked about
    now += 10;
    for (let ms = 1; ms <= 100; ms++) stats.handled(ms);
    expect(stats.percentiles(now - 5)).toEqual({ p50: 50, p95: 95, p99: 99 });
    expect(stats.percentiles(now)).toEqual({ p50: 0, p95: 0, p99: 0 });
  });

  it("ranks clients by requests over the last minute and forgets older ones", () => {
    let now = 0;
    const stats = new LiveStats(() => now);
    stats.request("client:a", true);
    stats.request("client:a", false);
    now += 30_000;
    for (let i = 0; i < 3; i++) stats.request("client:b", true);
    expect(stats.topClients(10)).toEqual([
      { client: "client:b", allowed: 3, blocked: 0 },
      { client: "client:a", allowed: 1, blocked: 1 },
    ]);
    expect(stats.topClients(1)).toHaveLength(1);
    expect(stats.counted).toEqual({ allowed: 4, blocked: 1 });

    now += 35_000; // a's requests are over a minute old, b's are not
    expect(stats.topClients(10)).toEqual([{ client: "client:b", allowed: 3, blocked: 0 }]);
    now += 60_000;
    expect(stats.topClients(10)).toEqual([]);
    // The totals are for rates between readings, and never forget.
    expect(stats.counted).toEqual({ allowed: 4, blocked: 1 });
  });
});
