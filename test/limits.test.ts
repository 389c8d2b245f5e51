/**
 * Rate limits: a bucket's burst, refusal with the time until a token is back,
 * and recovery after the refill (the Limits module under fake timers); and on
 * real servers: 20 rapid calls against RATE_LIMIT_RPS=1 RATE_LIMIT_BURST=5 over
 * gRPC and Connect JSON (at most 6 accepted, the rest resource_exhausted with
 * RetryInfo and retry-after), a client stream refused mid-stream (earlier
 * records stored, the refused one and later ones not), per-client buckets that
 * do not share a budget, and the cap on a client's open watchers.
 */

import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterEach, describe, expect, it, vi } from "vitest";
import { RetryInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { StartPosition } from "../gen/streamgate/v1/stream_service_pb.js";
import { ConfigError, loadConfig } from "../src/config/config.js";
import { Limits } from "../src/guard/limits/limits.js";
import { localBuckets } from "../src/guard/limits/local-buckets.js";
import { failureOf } from "./support/refusal.js";
import { startTestServer, streamClient, type TestServer, TRANSPORTS, take } from "./support/server.js";

const CLIENT = { key: "client:a/a", label: "a", tenantLabel: "a" };

// Only performance.now is faked: the local buckets refill by it (a monotonic clock).
describe("Limits (fake timers)", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("allows the burst, refuses with the time until a token, and recovers after the refill", async () => {
    vi.useFakeTimers({ toFake: ["performance"] });
    const limits = new Limits(
      { generation: 1, global: { rps: 2, burst: 3 }, client: undefined, clientMaxWatchers: undefined },
      localBuckets,
    );
    try {
      for (let i = 0; i < 3; i++) expect(await limits.take(CLIENT)).toEqual({ allowed: true });
      const refused = await limits.take(CLIENT);
      // 2 tokens per second: one is back within half a second.
      expect(refused).toEqual({ allowed: false, limit: "global", retryMs: 500 });

      await vi.advanceTimersByTimeAsync(250);
      expect((await limits.take(CLIENT)).allowed).toBe(false);
      await vi.advanceTimersByTimeAsync(250);
      expect(await limits.take(CLIENT)).toEqual({ allowed: true });
      expect((await limits.take(CLIENT)).allowed).toBe(false);

      // Long idle: back to the burst, never more.
      await vi.advanceTimersByTimeAsync(10_000);
      for (let i = 0; i < 3; i++) expect(await limits.take(CLIENT)).toEqual({ allowed: true });
      expect((await limits.take(CLIENT)).allowed).toBe(false);
    } finally {
      await limits.close();
    }
  });

  it("keeps one bucket per client and names the client limit when it refuses", async () => {
    vi.useFakeTimers({ toFake: ["performance"] });
    const decisions: string[] = [];
    const limits = new Limits(
      { generation: 1, global: undefined, client: { rps: 1, burst: 1 }, clientMaxWatchers: undefined },
      localBuckets,
      (result, limit, client) => decisions.push(`${client.label}:${limit}:${result}`),
    );
    try {
      expect((await limits.take(CLIENT)).allowed).toBe(true);
      expect(await limits.take(CLIENT)).toEqual({ allowed: false, limit: "client", retryMs: 1000 });
      expect((await limits.take({ key: "client:b/b", label: "b", tenantLabel: "b" })).allowed).toBe(true);
      expect(decisions).toEqual(["a:client:allowed", "a:client:denied", "b:client:allowed"]);
    } finally {
      await limits.close();
    }
  });
});

describe("limit configuration", () => {
  it("defaults the burst to one second's worth, and refuses a burst without a rate", () => {
    expect(loadConfig({ RATE_LIMIT_RPS: "7" }).limits.global).toEqual({ rps: 7, burst: 7 });
    expect(loadConfig({ CLIENT_RATE_LIMIT_RPS: "0", CLIENT_RATE_LIMIT_BURST: "" }).limits.client).toBeUndefined();
    expect(() => loadConfig({ CLIENT_RATE_LIMIT_BURST: "5" })).toThrow(ConfigError);
  });
});

/** Expects a rate-limit refusal: resource_exhausted with RetryInfo and retry-after. */
function expectRateLimited(error: ConnectError, limit: "server's" | "client's"): void {
  expect(error.code).toBe(Code.ResourceExhausted);
  expect(error.rawMessage).toContain(`${limit} rate limit`);
  const [retry] = error.findDetails(RetryInfoSchema);
  expect(retry?.retryDelay).toBeDefined();
  const delayMs = Number(retry!.retryDelay!.seconds) * 1000 + retry!.retryDelay!.nanos / 1e6;
  expect(delayMs).toBeGreaterThan(0);
  const retryAfter = Number(error.metadata.get("retry-after"));
  expect(Number.isInteger(retryAfter) && retryAfter >= 1).toBe(true);
  expect(retryAfter).toBe(Math.max(1, Math.ceil(delayMs / 1000)));
}

const json = (value: unknown) => fromJson(ValueSchema, value as JsonValue);

describe("rate limits on a real server", () => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  describe.each(["grpc", "connect-json"])("over %s", (transport) => {
    it("accepts at most 6 of 20 rapid calls with RATE_LIMIT_RPS=1 RATE_LIMIT_BURST=5", async () => {
      server = await startTestServer({ API_KEYS: "acc:k1", RATE_LIMIT_RPS: "1", RATE_LIMIT_BURST: "5" });
      const client = streamClient(server, transport, "k1");
      const outcomes = [];
      for (let i = 0; i < 20; i++) {
        outcomes.push(await client.startStream({ streamId: `rapid-${i}` }).then(() => undefined, ConnectError.from));
      }
      const refused = outcomes.filter((outcome) => outcome !== undefined);
      expect(20 - refused.length).toBeGreaterThanOrEqual(5);
      expect(20 - refused.length).toBeLessThanOrEqual(6);
      for (const error of refused) expectRateLimited(error, "server's");
      // Never the credential.
      for (const error of refused) expect(error.rawMessage).not.toContain("k1");
      // The metric counts each decision under the key's name.
      const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
      expect(metrics).toContain(
        `streamgate_limiter_requests_total{result="denied",limit="global",client="acc",tenant="acc"} ${refused.length}`,
      );
      expect(metrics).toContain(
        `streamgate_limiter_requests_total{result="allowed",limit="global",client="acc",tenant="acc"} ${20 - refused.length}`,
      );
    });
  });

  it("does not limit the open services (health)", async () => {
    server = await startTestServer({ API_KEYS: "acc:k1", RATE_LIMIT_RPS: "1", RATE_LIMIT_BURST: "1" });
    const client = streamClient(server, "grpc", "k1");
    await client.startStream({ streamId: "one" });
    expectRateLimited(await failureOf(client.startStream({ streamId: "two" })), "server's");
    const health = createClient(Health, TRANSPORTS.grpc!(server.baseUrl));
    for (let i = 0; i < 3; i++) {
      expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    }
  });

  it("refuses a client stream mid-stream: earlier records stored, the refused one and later ones not", async () => {
    // Two clients of one tenant: they share its streams, not their limits.
    server = await startTestServer({
      API_KEYS: "a@shared:ka,b@shared:kb",
      CLIENT_RATE_LIMIT_RPS: "1",
      CLIENT_RATE_LIMIT_BURST: "4",
    });
    const a = streamClient(server, "grpc", "ka");
    const b = streamClient(server, "grpc", "kb");
    const streamId = "mid-stream";
    await a.startStream({ streamId }); // a: 3 tokens left
    const error = await failureOf(
      a.sendDataStream(
        (async function* () {
          for (let n = 1; n <= 6; n++) yield { streamId, payload: { case: "data" as const, value: json({ n }) } };
        })(),
      ),
    );
    expectRateLimited(error, "client's");

    // b has its own bucket: a's empty one does not refuse it. Its marker comes after a's stored records.
    await b.sendData({ streamId, payload: { case: "data", value: json({ marker: true }) } });
    const results = await take(b.watchResults({ streamId, startPosition: StartPosition.EARLIEST }), 4);
    expect(results.map((r) => toJson(ValueSchema, r.result!.payload.value as never))).toEqual([
      { n: 1 },
      { n: 2 },
      { n: 3 },
      { marker: true },
    ]);
    expectRateLimited(await failureOf(a.getStream({ streamId })), "client's");
  });

  it("caps a client's open watchers at CLIENT_MAX_WATCHERS, per client", async () => {
    // Two clients of one tenant: they share its streams, not their limits.
    server = await startTestServer({ API_KEYS: "a@shared:ka,b@shared:kb", CLIENT_MAX_WATCHERS: "1" });
    const a = streamClient(server, "connect-json", "ka");
    const b = streamClient(server, "connect-json", "kb");
    const streamId = "watched";
    await a.startStream({ streamId });
    await a.sendData({ streamId, payload: { case: "data", value: json(1) } });

    const first = new AbortController();
    const watching = a.watchResults({ streamId, startPosition: StartPosition.EARLIEST }, { signal: first.signal });
    // Read without take(), which would end the call: open, it has delivered a result.
    expect((await watching[Symbol.asyncIterator]().next()).done).toBe(false);

    const second = await failureOf(take(a.watchResults({ streamId }), 1));
    expect(second.code).toBe(Code.ResourceExhausted);
    expect(second.rawMessage).toContain("CLIENT_MAX_WATCHERS");
    // Another client has its own slots.
    expect(await take(b.watchResults({ streamId, startPosition: StartPosition.EARLIEST }), 1)).toHaveLength(1);

    // Closing the first frees its slot (once the server has seen the call end).
    first.abort();
    await vi.waitFor(
      async () =>
        expect(await take(a.watchResults({ streamId, startPosition: StartPosition.EARLIEST }), 1)).toHaveLength(1),
      { timeout: 5000, interval: 50 },
    );
  });
});
