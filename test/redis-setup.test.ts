// The test run's redis-server (test/support/redis-global-setup.ts) is up and
// reachable from a test file: a real ioredis client writes and reads back a key
// under this file's own prefix.
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { redisUrl, uniquePrefix } from "./support/redis.js";

describe("redis for the test run", () => {
  const prefix = uniquePrefix("redis-setup");
  let client: Redis;

  beforeAll(async () => {
    // No retries: a server that is not there fails here, not after a reconnect loop.
    client = new Redis(redisUrl(), { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    await client.connect();
  });

  afterAll(async () => {
    await client?.quit();
  });

  it("provides a URL and the same one in the environment", () => {
    expect(redisUrl()).toMatch(/^rediss?:\/\//);
    expect(process.env.STREAMGATE_TEST_REDIS_URL).toBe(redisUrl());
  });

  it("stores and returns a value under the file's prefix", async () => {
    const key = `${prefix}greeting`;
    const value = `hello ${prefix}`;
    expect(await client.set(key, value, "PX", 60_000)).toBe("OK");
    expect(await client.get(key)).toBe(value);
    expect(await client.del(key)).toBe(1);
    expect(await client.get(key)).toBeNull();
  });

  it("gives each call a different prefix", () => {
    expect(uniquePrefix("redis-setup")).not.toBe(prefix);
    expect(prefix).toMatch(/^sg-test-redis-setup-[0-9a-f]{8}:$/);
  });
});
