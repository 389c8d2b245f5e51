/**
 * The test run's redis (test/support/redis-global-setup.ts) as test files see it.
 *
 * Test files run in parallel against the one server, so each keeps to keys of
 * its own (e.g. a server started with `REDIS_KEY_PREFIX: uniquePrefix("limits")`)
 * rather than flushing the server. Bottleneck names its keys `b_<id>_...`, so a
 * limiter id needs the prefix in it too.
 */
import { randomBytes } from "node:crypto";
import { inject } from "vitest";

/** The URL of the run's redis-server, "redis://127.0.0.1:PORT" (or REDIS_URL as given). */
export function redisUrl(): string {
  return inject("redisUrl");
}

/**
 * A key prefix no other test (or run, on a shared REDIS_URL) uses:
 * `sg-test-<name>-<8 hex>:`, e.g. `uniquePrefix("limits")` → `sg-test-limits-1f2e3d4c:`.
 */
export function uniquePrefix(name: string): string {
  return `sg-test-${name}-${randomBytes(4).toString("hex")}:`;
}
