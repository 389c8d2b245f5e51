/**
 * AdminService and the must-show, on a real server:
 * - with API_KEYS=acc:k1 ADMIN_API_KEYS=adm:k2 RATE_LIMIT_RPS=1 RATE_LIMIT_BURST=5,
 *   grpcurl (an independent client) sees no key → Unauthenticated, k1 → OK,
 *   AdminService with k1 → PermissionDenied and with k2 → OK, and 20 rapid
 *   calls → at most 6 accepted, the rest ResourceExhausted with a RetryInfo it
 *   can decode; then /metrics passes promtool and shows those calls by method and code;
 * - UpdateLimits takes effect at once (a lowered burst refuses sooner, a raised
 *   one accepts at once), changes only the fields of its mask, refuses bad input
 *   without changing anything, and needs the admin role;
 * - admin calls are not limited, and WatchStats does not count as a watcher;
 * - WatchStats pushes figures that move with the traffic, and ends with
 *   UNAVAILABLE when the server shuts down.
 */
import { execFileSync } from "node:child_process";
import { Code } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import type { Stats } from "../gen/streamgate/v1/admin_service_pb.js";
import { StartPosition } from "../gen/streamgate/v1/stream_service_pb.js";
import { run, toolPath } from "./support/clients-cli.js";
import { failureOf } from "./support/refusal.js";
import { adminClient, startTestServer, streamClient, type TestServer, take } from "./support/server.js";

const MUST_SHOW_ENV = { API_KEYS: "acc:k1", ADMIN_API_KEYS: "adm:k2", RATE_LIMIT_RPS: "1", RATE_LIMIT_BURST: "5" };

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe("the must-show, seen by grpcurl", () => {
  it("unauthenticated, OK, permission_denied, OK, then at most 6 of 20 rapid calls with RetryInfo", async () => {
    server = await startTestServer(MUST_SHOW_ENV);
    const address = `127.0.0.1:${server.port}`;
    /** grpcurl with errors as JSON (-format-error), so codes and details can be read. */
    const grpcurl = (key: string | undefined, method: string, request = "{}") =>
      run(toolPath("grpcurl"), [
        "-plaintext",
        "-format-error",
        ...(key === undefined ? [] : ["-H", `x-api-key: ${key}`]),
        "-d",
        request,
        address,
        method,
      ]);
    const errorJson = (stdout: string) => JSON.parse(stdout) as { code: number; message: string; details?: unknown[] };

    const noKey = await grpcurl(undefined, "streamgate.v1.StreamService/StartStream");
    expect(errorJson(noKey.stderr).code).toBe(Code.Unauthenticated);

    const ok = await grpcurl("k1", "streamgate.v1.StreamService/StartStream", '{"stream_id": "must-show"}');
    expect(ok.code, ok.stderr + ok.stdout).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ stream: { streamId: "must-show" }, created: true });

    const userOnAdmin = await grpcurl("k1", "streamgate.v1.AdminService/GetLimits");
    expect(errorJson(userOnAdmin.stderr).code).toBe(Code.PermissionDenied);

    const adminOnAdmin = await grpcurl("k2", "streamgate.v1.AdminService/GetLimits");
    expect(adminOnAdmin.code, adminOnAdmin.stderr).toBe(0);
    expect(JSON.parse(adminOnAdmin.stdout)).toEqual({ limits: { global: { ratePerSecond: 1, burst: 5 } } });

    // 20 at once: the burst (4 tokens left after the OK call above) plus at most a refill or two.
    const rapid = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        grpcurl("k1", "streamgate.v1.StreamService/StartStream", `{"stream_id": "rapid-${i}"}`),
      ),
    );
    const accepted = rapid.filter((result) => result.code === 0);
    const refused = rapid.filter((result) => result.code !== 0).map((result) => errorJson(result.stderr));
    expect(accepted.length).toBeGreaterThanOrEqual(1);
    expect(accepted.length).toBeLessThanOrEqual(6);
    expect(refused).toHaveLength(20 - accepted.length);
    for (const error of refused) {
      expect(error.code).toBe(Code.ResourceExhausted);
      expect(error.message).toMatch(/rate limit \(RATE_LIMIT_RPS\); retry in \d+ s/);
      // Decoded through reflection: grpcurl knows google.rpc.RetryInfo.
      expect(error.details).toEqual([
        { "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: expect.stringMatching(/^\d+(\.\d+)?s$/) },
      ]);
    }

    // /metrics: valid for promtool, and the calls just made by method and code.
    const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
    execFileSync("promtool", ["check", "metrics"], { input: metrics });
    const handled = (service: string, method: string, code: string) =>
      new RegExp(
        `grpc_server_handled_total\\{grpc_service="${service.replace(/\./g, "\\.")}",grpc_method="${method}",grpc_type="unary",grpc_code="${code}"\\} (\\d+)`,
      ).exec(metrics)?.[1];
    expect(handled("streamgate.v1.StreamService", "StartStream", "Unauthenticated")).toBe("1");
    expect(handled("streamgate.v1.StreamService", "StartStream", "OK")).toBe(String(1 + accepted.length));
    expect(handled("streamgate.v1.StreamService", "StartStream", "ResourceExhausted")).toBe(String(refused.length));
    expect(handled("streamgate.v1.AdminService", "GetLimits", "PermissionDenied")).toBe("1");
    expect(handled("streamgate.v1.AdminService", "GetLimits", "OK")).toBe("1");
  });
});

describe("UpdateLimits", () => {
  it("takes effect at once: a lowered burst refuses sooner, a raised one accepts at once", async () => {
    server = await startTestServer({ ...MUST_SHOW_ENV, RATE_LIMIT_BURST: "100" });
    const user = streamClient(server, "grpc", "k1");
    const admin = adminClient(server, "connect-json", "k2");
    for (let i = 0; i < 10; i++) expect((await failureOf(user.getStream({ streamId: "x" }))).code).toBe(Code.NotFound);

    const lowered = await admin.updateLimits({ limits: { global: { ratePerSecond: 1, burst: 2 } } });
    expect(lowered.limits?.global).toMatchObject({ ratePerSecond: 1, burst: 2 });
    await user.startStream({ streamId: "a" });
    await user.startStream({ streamId: "b" });
    const error = await failureOf(user.startStream({ streamId: "c" }));
    expect(error.code).toBe(Code.ResourceExhausted);

    await admin.updateLimits({ limits: { global: { ratePerSecond: 1000, burst: 1000 } } });
    // Nothing of the refused call happened.
    expect((await failureOf(user.getStream({ streamId: "c" }))).code).toBe(Code.NotFound);
    for (let i = 0; i < 20; i++) await user.startStream({ streamId: `after-${i}` });
  });

  it("changes only the fields of its update mask; an unset bucket in the mask removes that limit", async () => {
    server = await startTestServer({ ...MUST_SHOW_ENV, CLIENT_MAX_WATCHERS: "3" });
    const admin = adminClient(server, "grpc-web", "k2");
    const changed = await admin.updateLimits({
      limits: { perClient: { ratePerSecond: 7, burst: 9 }, global: { ratePerSecond: 99, burst: 99 } },
      updateMask: { paths: ["per_client"] },
    });
    expect(changed.limits).toMatchObject({
      global: { ratePerSecond: 1, burst: 5 },
      perClient: { ratePerSecond: 7, burst: 9 },
      clientMaxWatchers: 3,
    });
    const removed = await admin.updateLimits({ limits: {}, updateMask: { paths: ["global", "client_max_watchers"] } });
    expect(removed.limits?.global).toBeUndefined();
    expect(removed.limits?.clientMaxWatchers).toBe(0);
    expect((await admin.getLimits({})).limits).toEqual(removed.limits);

    // No global limit any more: more calls than the old burst go through.
    const user = streamClient(server, "grpc", "k1");
    for (let i = 0; i < 8; i++) await user.startStream({ streamId: `s-${i}` });
  });

  it("refuses bad input with invalid_argument and changes nothing", async () => {
    server = await startTestServer(MUST_SHOW_ENV);
    const admin = adminClient(server, "grpc", "k2");
    const before = await admin.getLimits({});
    const bad = [
      { limits: { global: { ratePerSecond: 0, burst: 5 } } },
      { limits: { global: { ratePerSecond: 5, burst: 0 } } },
      { limits: { perClient: { ratePerSecond: 2_000_000, burst: 5 } } },
      { limits: { clientMaxWatchers: 2_000_000 } },
      { limits: {}, updateMask: { paths: ["globl"] } },
    ];
    for (const request of bad) {
      const error = await failureOf(admin.updateLimits(request));
      expect(error.code, JSON.stringify(request)).toBe(Code.InvalidArgument);
    }
    expect(await admin.getLimits({})).toEqual(before);
  });

  it("needs the admin role: a user key gets permission_denied and nothing changes", async () => {
    server = await startTestServer(MUST_SHOW_ENV);
    const error = await failureOf(
      adminClient(server, "grpc", "k1").updateLimits({ limits: { global: { ratePerSecond: 100, burst: 100 } } }),
    );
    expect(error.code).toBe(Code.PermissionDenied);
    expect((await adminClient(server, "grpc", "k2").getLimits({})).limits?.global).toMatchObject({ burst: 5 });
  });
});

describe("admin calls and limits", () => {
  it("are not refused when the buckets are empty, and WatchStats does not take a watcher slot", async () => {
    server = await startTestServer({
      ...MUST_SHOW_ENV,
      RATE_LIMIT_BURST: "1",
      CLIENT_MAX_WATCHERS: "1",
      API_KEYS: "acc:k1,adm2:k3",
      ADMIN_API_KEYS: "adm:k2",
    });
    const user = streamClient(server, "grpc", "k1");
    await user.startStream({ streamId: "w" });
    expect((await failureOf(user.startStream({ streamId: "w2" }))).code).toBe(Code.ResourceExhausted);
    const admin = adminClient(server, "grpc", "k2");
    for (let i = 0; i < 5; i++) expect((await admin.getLimits({})).limits?.global?.burst).toBe(1);

    // Two stats watchers of one client, beyond CLIENT_MAX_WATCHERS=1, both open.
    const first = new AbortController();
    const second = new AbortController();
    const a = admin.watchStats({ intervalMs: 100 }, { signal: first.signal })[Symbol.asyncIterator]();
    const b = admin.watchStats({ intervalMs: 100 }, { signal: second.signal })[Symbol.asyncIterator]();
    expect((await a.next()).done).toBe(false);
    expect((await b.next()).done).toBe(false);
    first.abort();
    second.abort();
  });

  it("a lowered CLIENT_MAX_WATCHERS applies to the next watcher", async () => {
    server = await startTestServer({ API_KEYS: "acc:k1", ADMIN_API_KEYS: "adm:k2", CLIENT_MAX_WATCHERS: "5" });
    const user = streamClient(server, "grpc", "k1");
    await user.startStream({ streamId: "capped" });
    await user.sendData({ streamId: "capped", payload: { case: "raw", value: new Uint8Array([1]) } });
    const open = new AbortController();
    const watching = user.watchResults(
      { streamId: "capped", startPosition: StartPosition.EARLIEST },
      { signal: open.signal },
    );
    expect((await watching[Symbol.asyncIterator]().next()).done).toBe(false);

    await adminClient(server, "grpc", "k2").updateLimits({
      limits: { clientMaxWatchers: 1 },
      updateMask: { paths: ["client_max_watchers"] },
    });
    const error = await failureOf(take(user.watchResults({ streamId: "capped" }), 1));
    expect(error.code).toBe(Code.ResourceExhausted);
    expect(error.rawMessage).toContain("CLIENT_MAX_WATCHERS");
    open.abort();
  });
});

describe("WatchStats", () => {
  it("pushes figures that move with the traffic", async () => {
    server = await startTestServer({ ...MUST_SHOW_ENV, RATE_LIMIT_BURST: "3" });
    const user = streamClient(server, "connect-json", "k1");
    const admin = adminClient(server, "grpc", "k2");
    const watching = new AbortController();
    const stats = admin.watchStats({ intervalMs: 100 }, { signal: watching.signal })[Symbol.asyncIterator]();
    const next = async (): Promise<Stats> => {
      const { value, done } = await stats.next();
      expect(done).toBe(false);
      return value!.stats!;
    };
    const quiet = await next();
    expect(quiet.allowedPerSecond).toBe(0);
    expect(quiet.globalTokens).toBe(3);
    expect(quiet.globalBurst).toBe(3);
    expect(quiet.limits?.global).toMatchObject({ ratePerSecond: 1, burst: 3 });

    await user.startStream({ streamId: "busy" });
    await user.startStream({ streamId: "busy-2" });
    let refused = 0;
    for (let i = 0; i < 4; i++) {
      refused += await user.startStream({ streamId: `more-${i}` }).then(
        () => 0,
        () => 1,
      );
    }
    // Every request within the minute is in the client's figures; rates show in the snapshot that covers them.
    let allowedSeen = 0;
    let blockedSeen = 0;
    let latest: Stats;
    do {
      latest = await next();
      allowedSeen += latest.allowedPerSecond;
      blockedSeen += latest.blockedPerSecond;
    } while (Number(latest.topClients[0]?.allowed ?? 0) + Number(latest.topClients[0]?.blocked ?? 0) < 6);
    expect(allowedSeen).toBeGreaterThan(0);
    expect(blockedSeen).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
    expect(latest.topClients).toEqual([
      expect.objectContaining({ client: "acc", tenant: "acc", allowed: BigInt(6 - refused), blocked: BigInt(refused) }),
    ]);
    expect(latest.globalTokens).toBeLessThan(3);
    expect(latest.activeStreams).toBe(BigInt(6 - refused));
    expect(latest.latencyP99Ms).toBeGreaterThan(0);
    expect(latest.latencyP50Ms).toBeLessThanOrEqual(latest.latencyP99Ms);
    watching.abort();
  });

  it("refuses an interval out of range", async () => {
    server = await startTestServer(MUST_SHOW_ENV);
    const error = await failureOf(take(adminClient(server, "grpc", "k2").watchStats({ intervalMs: 10 }), 1));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toContain("interval_ms");
  });

  it("ends with unavailable when the server shuts down", async () => {
    server = await startTestServer(MUST_SHOW_ENV);
    const stats = adminClient(server, "grpc", "k2").watchStats({ intervalMs: 60_000 })[Symbol.asyncIterator]();
    expect((await stats.next()).done).toBe(false);
    const closing = server.close();
    const error = await failureOf(stats.next());
    expect(error.code).toBe(Code.Unavailable);
    await closing;
    server = undefined;
  });
});
