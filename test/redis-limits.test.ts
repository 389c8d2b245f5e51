/**
 * Limits shared through a real redis-server (REDIS_URL): two streamgate
 * processes spend one budget (global and per client), UpdateLimits made on one
 * is in force on the other, an instance started later adopts the changed
 * limits rather than its environment's, a REDIS_URL that does not answer
 * stops the start with a clear message, and a Redis that stops answering lets
 * calls through (with a warning) until it is back.
 */
import { rm } from "node:fs/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { startApp } from "../src/app/app.js";
import { ConfigError, loadConfig } from "../src/config/config.js";
import { listeningPort, type StreamgateProcess, spawnStreamgate } from "./support/clients-process.js";
import { freePort } from "./support/ports.js";
import { redisUrl, uniquePrefix } from "./support/redis.js";
import { type Started, startRedis, stopRedis } from "./support/redis-global-setup.js";
import { adminClient, startTestServer, streamClient, type TestServer } from "./support/server.js";

/** A streamgate process as the clients of test/support/server.ts reach it. */
interface Instance {
  process: StreamgateProcess;
  target: TestServer;
}

async function spawnInstance(env: Record<string, string>): Promise<Instance> {
  const process = spawnStreamgate({ PORT: "0", HOST: "127.0.0.1", ...env });
  const port = await listeningPort(process);
  const target = { port, baseUrl: `http://127.0.0.1:${port}`, apiKey: undefined } as unknown as TestServer;
  return { process, target };
}

async function stop(instance: Instance | undefined): Promise<void> {
  if (!instance || instance.process.child.exitCode !== null) return;
  instance.process.child.kill("SIGTERM");
  await instance.process.exited;
}

/** Whether a call was accepted; a refusal must be a rate limit. */
async function accepted(call: Promise<unknown>): Promise<boolean> {
  try {
    await call;
    return true;
  } catch (error) {
    expect(ConnectError.from(error).code).toBe(Code.ResourceExhausted);
    return false;
  }
}

describe("two processes on one Redis", () => {
  const prefix = uniquePrefix("limits");
  const env = {
    REDIS_URL: redisUrl(),
    REDIS_KEY_PREFIX: prefix,
    API_KEYS: "acc:k1,other:k3",
    ADMIN_API_KEYS: "adm:k2",
    RATE_LIMIT_RPS: "1",
    RATE_LIMIT_BURST: "6",
  };
  let a: Instance | undefined;
  let b: Instance | undefined;
  beforeAll(async () => {
    [a, b] = await Promise.all([spawnInstance(env), spawnInstance(env)]);
  });
  afterAll(async () => {
    await Promise.all([stop(a), stop(b)]);
  });

  it("spend one global budget: 20 rapid calls alternating between them get at most 7 through", async () => {
    const clients = [streamClient(a!.target, "grpc", "k1"), streamClient(b!.target, "connect-json", "k1")];
    const outcomes: boolean[] = [];
    for (let i = 0; i < 20; i++)
      outcomes.push(await accepted(clients[i % 2]!.startStream({ streamId: `shared-${i}` })));
    const through = outcomes.filter(Boolean).length;
    // Separate buckets would let 6 through on each.
    expect(through).toBeGreaterThanOrEqual(6);
    expect(through).toBeLessThanOrEqual(7);
    // Both instances refused some: each saw the other's spending.
    expect(outcomes.filter((ok, i) => !ok && i % 2 === 0).length).toBeGreaterThan(0);
    expect(outcomes.filter((ok, i) => !ok && i % 2 === 1).length).toBeGreaterThan(0);
  });

  it("apply UpdateLimits made on one of them, per-client buckets shared too", async () => {
    const changed = await adminClient(a!.target, "grpc", "k2").updateLimits({
      limits: { perClient: { ratePerSecond: 1, burst: 3 } },
      updateMask: { paths: ["per_client", "global"] },
    });
    expect(changed.limits?.global).toBeUndefined();
    expect(changed.limits?.perClient).toMatchObject({ ratePerSecond: 1, burst: 3 });

    // B learns of it through Redis: a bounded wait for its GetLimits to say so.
    const adminB = adminClient(b!.target, "grpc", "k2");
    expect((await adminB.getLimits({})).shared).toBe(true);
    await vi.waitFor(async () => expect((await adminB.getLimits({})).limits).toEqual(changed.limits), {
      timeout: 5000,
      interval: 20,
    });

    // k1's 3 tokens, spent across both instances; k3 has a bucket of its own.
    const onA = streamClient(a!.target, "grpc", "k1");
    const onB = streamClient(b!.target, "grpc", "k1");
    const outcomes = [];
    for (let i = 0; i < 8; i++)
      outcomes.push(await accepted((i % 2 ? onB : onA).startStream({ streamId: `client-${i}` })));
    const through = outcomes.filter(Boolean).length;
    expect(through).toBeGreaterThanOrEqual(3);
    expect(through).toBeLessThanOrEqual(4);
    const error = await streamClient(b!.target, "grpc", "k1")
      .startStream({ streamId: "one-more" })
      .then(() => undefined, ConnectError.from);
    expect(error?.rawMessage).toContain("client's rate limit");
    expect(await accepted(streamClient(b!.target, "grpc", "k3").startStream({ streamId: "other" }))).toBe(true);
  });

  it("an instance started later adopts the changed limits, not its environment's", async () => {
    const c = await spawnInstance(env);
    try {
      const limits = (await adminClient(c.target, "grpc", "k2").getLimits({})).limits;
      expect(limits?.global).toBeUndefined(); // its environment says RATE_LIMIT_RPS=1
      expect(limits?.perClient).toMatchObject({ ratePerSecond: 1, burst: 3 });
    } finally {
      await stop(c);
    }
  });
});

describe("REDIS_URL", () => {
  it("that does not answer stops the start with a clear message", async () => {
    const port = await freePort(); // nothing listens there
    const config = loadConfig({
      PORT: "0",
      HOST: "127.0.0.1",
      API_KEYS: "acc:k1",
      REDIS_URL: `redis://127.0.0.1:${port}`,
    });
    await expect(startApp(config, pino({ level: "silent" }))).rejects.toThrow(/cannot reach Redis at REDIS_URL/);
  });

  it("must be a redis URL, and the message does not repeat it (it may hold a password)", () => {
    let error: unknown;
    try {
      loadConfig({ REDIS_URL: "http://user:secret@example" });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(String(error)).toContain("REDIS_URL must be a redis:// or rediss:// URL");
    expect(String(error)).not.toContain("secret");
  });
});

describe("when Redis stops answering", () => {
  let redis: Started | undefined;
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.close();
    if (redis) {
      await stopRedis(redis.child);
      await rm(redis.dir, { recursive: true, force: true });
    }
  });

  it("allows calls, warns, and limits again once Redis is back", async () => {
    const port = await freePort();
    redis = await startRedis(port);
    const logs: string[] = [];
    const logger = pino({ level: "warn" }, { write: (line: string) => void logs.push(line) });
    server = await startTestServer(
      { REDIS_URL: `redis://127.0.0.1:${port}`, API_KEYS: "acc:k1", RATE_LIMIT_RPS: "1", RATE_LIMIT_BURST: "2" },
      "memory",
      logger,
    );
    const client = streamClient(server, "grpc", "k1");
    const outcomes = [];
    for (let i = 0; i < 4; i++) outcomes.push(await accepted(client.startStream({ streamId: `before-${i}` })));
    expect(outcomes.filter(Boolean).length).toBeLessThanOrEqual(3);

    await stopRedis(redis.child);
    await rm(redis.dir, { recursive: true, force: true });
    redis = undefined;
    for (let i = 0; i < 5; i++) await client.startStream({ streamId: `during-${i}` });
    expect(logs.join("")).toContain("Redis unreachable: request limits are not enforced until it answers");
    // Never the URL (it may carry a password).
    expect(logs.join("")).not.toContain(`127.0.0.1:${port}`);

    redis = await startRedis(port);
    // The client reconnects on its own schedule: wait, boundedly, for a refusal.
    let n = 0;
    await vi.waitFor(async () => expect(await accepted(client.startStream({ streamId: `after-${n++}` }))).toBe(false), {
      timeout: 15_000,
      interval: 100,
    });
  });
});
