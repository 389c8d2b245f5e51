/**
 * README claims that no other test checks, each performed against a real
 * server as a client would see it:
 * - SendDataStream lists the index, code and reason of the first 100
 *   rejections only, and counts them all;
 * - CloseStream is idempotent: a second close succeeds and changes nothing
 *   (no record written, same close time, same counts);
 * - the peer address keys the bucket of calls without a valid credential and
 *   of the open services: one bucket per address for both kinds of call, none
 *   shared between addresses, never spent by a valid credential, and the
 *   address is the `peer` of the log lines;
 * - a token taken from a client's bucket is not given back when the global
 *   bucket then refuses the call (local buckets and Redis);
 * - DEDUP_WINDOW: an event id is a duplicate while its tenant has sent fewer
 *   than DEDUP_WINDOW event ids since (on any of its streams; another tenant's
 *   sends never count), and is new again once it has sent that many.
 */
import * as net from "node:net";
import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { RetryInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { type Result, StartPosition, StreamService, StreamState } from "../gen/streamgate/v1/stream_service_pb.js";
import { capturingLogger } from "./support/capturing-logger.js";
import { redisUrl, uniquePrefix } from "./support/redis.js";
import { failureOf, outcomeOf } from "./support/refusal.js";
import {
  apiKeyHeader,
  BROKERS,
  collect,
  startTestServer,
  streamClient,
  TEST_API_KEY,
  type TestServer,
  take,
} from "./support/server.js";

const json = (value: unknown) => ({ case: "data" as const, value: fromJson(ValueSchema, value as JsonValue) });

/** A result's JSON data (undefined for a raw one). */
const dataOf = (result: Result) =>
  result.payload.case === "data" ? toJson(ValueSchema, result.payload.value) : undefined;

/** The value of one sample in `server`'s /metrics, 0 when absent. */
async function metric(server: TestServer, sample: string): Promise<number> {
  const text = await (await fetch(`${server.baseUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${sample} `));
  return line === undefined ? 0 : Number(line.slice(sample.length + 1));
}

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe("SendDataStream rejections", () => {
  // README, The API: "Returns `accepted`, `duplicates`, `rejected` (with index, code and reason of the first 100) and `lastCursor`."
  it("counts every rejected record but lists only the first 100, with index, code and reason", async () => {
    server = await startTestServer();
    const client = streamClient(server);
    const streamId = "rejections";
    await client.startStream({ streamId });

    // 300 records: even indexes good, odd ones bad (150), of two kinds: an
    // empty payload (invalid_argument) and a stream that does not exist (not_found).
    const total = 300;
    const bad = (i: number) => i % 2 === 1;
    const request = (i: number) =>
      !bad(i)
        ? { streamId, payload: json({ i }) }
        : i % 4 === 1
          ? { streamId, payload: { case: undefined } }
          : { streamId: `missing-${i}`, payload: json({ i }) };
    const summary = await client.sendDataStream(
      (async function* () {
        for (let i = 0; i < total; i++) yield request(i);
      })(),
    );
    const badIndexes = Array.from({ length: total }, (_, i) => i).filter(bad);
    const goodIndexes = Array.from({ length: total }, (_, i) => i).filter((i) => !bad(i));
    expect(summary.accepted).toBe(BigInt(goodIndexes.length));
    expect(summary.duplicates).toBe(0n);
    expect(summary.rejected).toBe(BigInt(badIndexes.length));
    expect(badIndexes.length).toBeGreaterThan(100);
    expect(summary.rejections).toHaveLength(100);
    expect(summary.rejections.map((r) => Number(r.index))).toEqual(badIndexes.slice(0, 100));

    // The stream holds the good records only, in order; the invalid ones sent to it count as rejected.
    const described = await client.getStream({ streamId });
    expect(described.counts).toMatchObject({
      accepted: BigInt(goodIndexes.length),
      rejected: BigInt(badIndexes.filter((i) => i % 4 === 1).length),
    });
    const results = await take(client.watchResults({ streamId, startPosition: StartPosition.EARLIEST }), total / 2);
    expect(results.map((r) => dataOf(r.result!))).toEqual(goodIndexes.map((i) => ({ i })));
    expect(results[results.length - 1]!.result!.sourceCursor).toBe(summary.lastCursor);

    // Each listed code and reason is what SendData answers for the same record.
    for (const rejection of summary.rejections) {
      const index = Number(rejection.index);
      const error = await failureOf(client.sendData(request(index)));
      expect(error.code).toBe(index % 4 === 1 ? Code.InvalidArgument : Code.NotFound);
      expect(rejection.code).toBe(index % 4 === 1 ? "invalid_argument" : "not_found");
      expect(rejection.reason).toBe(error.rawMessage);
    }
  });
});

describe("CloseStream", () => {
  // README, The API: "| `CloseStream` | unary | Closes a stream (idempotent). |"
  it("is idempotent: a second close succeeds, writes nothing and changes nothing", async () => {
    server = await startTestServer();
    const client = streamClient(server);
    const streamId = "close-twice";
    await client.startStream({ streamId, labels: { kind: "twice" } });
    const live = collect(client.watchResults({ streamId, startPosition: StartPosition.EARLIEST }));
    for (const n of [1, 2, 3]) await client.sendData({ streamId, payload: json({ n }) });

    const first = await client.closeStream({ streamId });
    expect(first.stream?.state).toBe(StreamState.CLOSED);
    // The watcher ends with OK once the results of every record sent before the close are delivered.
    expect((await live).map((r) => dataOf(r.result!))).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    await expect
      .poll(async () => (await client.getStream({ streamId })).counts, { timeout: 5000 })
      .toMatchObject({ accepted: 3n, processed: 3n, results: 3n });

    const before = await client.getStream({ streamId });
    const produced = async () => ({
      ingest: await metric(server!, 'streamgate_broker_records_produced_total{topic_kind="ingest"}'),
      streams: await metric(server!, 'streamgate_broker_records_produced_total{topic_kind="streams"}'),
    });
    const producedBefore = await produced();
    expect(producedBefore.ingest).toBeGreaterThan(0);
    expect(producedBefore.streams).toBeGreaterThan(0);

    const second = await client.closeStream({ streamId });
    expect(second.stream).toEqual(first.stream); // same state, same close time
    const after = await client.getStream({ streamId });
    expect(after).toEqual(before);
    // No second close marker on the ingest topic, no new registry record.
    expect(await produced()).toEqual(producedBefore);

    // Still closed: sends are refused, and a watch from the start replays the results and ends OK.
    await expect(client.sendData({ streamId, payload: json({ n: 4 }) })).rejects.toMatchObject({
      code: Code.FailedPrecondition,
    });
    expect((await collect(client.watchResults({ streamId }))).map((r) => dataOf(r.result!))).toEqual([
      { n: 1 },
      { n: 2 },
      { n: 3 },
    ]);
  });
});

/** Transport options that connect from `localAddress` (any 127.x address reaches the loopback listener on Linux). */
function fromAddress(target: TestServer, localAddress: string, interceptors: Interceptor[] = []) {
  return createGrpcTransport({
    baseUrl: target.baseUrl,
    interceptors,
    nodeOptions: { createConnection: () => net.connect({ port: target.port, host: "127.0.0.1", localAddress }) },
  });
}

describe("the peer address", () => {
  // README, Configuration: "`PEER_RATE_LIMIT_RPS` | `50` | One bucket per peer address, always on, for calls that
  // fail authentication and calls to the `AUTH_OPEN_SERVICES`"; Limits and protections: "calls with a valid
  // credential never use this bucket"; Observability: "`peer` (the client's address)".
  it("keys one bucket for failed authentication and open services per address, unused by valid credentials", async () => {
    const BURST = 4;
    const logs = capturingLogger();
    server = await startTestServer(
      { PEER_RATE_LIMIT_RPS: "1", PEER_RATE_LIMIT_BURST: String(BURST), REFUSAL_LOGS_PER_SECOND: "1000" },
      "memory",
      logs.logger,
    );
    const A = "127.0.0.2";
    const B = "127.0.0.3";
    const started = performance.now();

    // A spends its whole burst on calls with a wrong key: each is UNAUTHENTICATED.
    const wrongA = createClient(StreamService, fromAddress(server, A, [apiKeyHeader(`${TEST_API_KEY}-wrong`)]));
    const wrongCodes = [];
    for (let i = 0; i < BURST; i++) wrongCodes.push(await outcomeOf(wrongA.getStream({ streamId: "s" })));
    expect(wrongCodes).toEqual(Array(BURST).fill(Code.Unauthenticated));

    // The same bucket limits A's health checks: at most what refilled meanwhile (1 a second) is served.
    const healthA = createClient(Health, fromAddress(server, A));
    const checksA = await Promise.all(
      Array.from({ length: 5 }, () => healthA.check({ service: "" }).then(() => "ok", ConnectError.from)),
    );
    const seconds = (performance.now() - started) / 1000;
    const servedA = checksA.filter((c) => c === "ok").length;
    expect(servedA).toBeLessThanOrEqual(Math.floor(seconds) + 1);
    const refusedA = checksA.filter((c): c is ConnectError => c !== "ok");
    expect(refusedA.length).toBeGreaterThanOrEqual(5 - (Math.floor(seconds) + 1));
    expect(refusedA.length).toBeGreaterThan(0);
    for (const error of refusedA) {
      expect(error.code).toBe(Code.ResourceExhausted);
      expect(error.rawMessage).toContain("PEER_RATE_LIMIT_RPS");
      expect(error.findDetails(RetryInfoSchema)).toHaveLength(1);
    }

    // B, another address, has a full bucket of its own: its burst of checks and a wrong key, all answered.
    const healthB = createClient(Health, fromAddress(server, B));
    for (let i = 0; i < BURST - 1; i++) {
      expect((await healthB.check({ service: "" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    }
    const wrongB = createClient(StreamService, fromAddress(server, B, [apiKeyHeader(`${TEST_API_KEY}-wrong`)]));
    expect(await outcomeOf(wrongB.getStream({ streamId: "s" }))).toBe(Code.Unauthenticated);

    // A valid key from A is served while A's bucket is empty.
    const validA = createClient(StreamService, fromAddress(server, A, [apiKeyHeader(TEST_API_KEY)]));
    await validA.startStream({ streamId: "from-a" });
    await validA.sendData({ streamId: "from-a", payload: json({ from: A }) });

    // The log names each call's own address as its peer.
    const lines = logs.lines();
    const refusals = lines.filter((l) => l.msg === "call refused at the edge");
    expect(refusals.filter((l) => l.reason === "peer_rate_limit").map((l) => [l.peer, l.procedure])).toEqual(
      Array(refusedA.length).fill([A, "grpc.health.v1.Health/Check"]),
    );
    expect(refusals.filter((l) => l.reason === "unauthenticated").map((l) => l.peer)).toEqual([
      ...Array(BURST).fill(A),
      B,
    ]);
    const rpc = lines.filter((l) => l.msg === "rpc");
    expect(rpc.filter((l) => l.procedure === "grpc.health.v1.Health/Check").map((l) => l.peer)).toEqual([
      ...Array(servedA).fill(A),
      ...Array(BURST - 1).fill(B),
    ]);
    expect(
      rpc.filter((l) => String(l.procedure).startsWith("streamgate.v1.StreamService/")).map((l) => [l.peer, l.client]),
    ).toEqual([
      [A, "test"],
      [A, "test"],
    ]);
  });
});

describe.each(["local", "redis"] as const)("rate limit buckets (%s)", (where) => {
  // README, Rate limits: "A token taken from the client's bucket is not given back when the global bucket then
  // refuses the call." (and: "A unary call takes one token from the client's bucket, then one from the global one.")
  it("spends the client's token on a call the global bucket refuses", async () => {
    server = await startTestServer({
      API_KEYS: "acc:k1",
      RATE_LIMIT_RPS: "1",
      RATE_LIMIT_BURST: "1",
      CLIENT_RATE_LIMIT_RPS: "1",
      CLIENT_RATE_LIMIT_BURST: "3",
      ...(where === "redis" ? { REDIS_URL: redisUrl(), REDIS_KEY_PREFIX: uniquePrefix("readme-claims") } : {}),
    });
    const transport = createGrpcTransport({ baseUrl: server.baseUrl, interceptors: [apiKeyHeader("k1")] });
    // The connection is made first (health is not limited by these buckets), so the four calls follow at once.
    await createClient(Health, transport).check({ service: "" });
    const client = createClient(StreamService, transport);
    const started = performance.now();
    const outcomes: string[] = [];
    for (let i = 0; i < 4; i++) {
      const refused = await client.startStream({ streamId: `spent-${i}` }).then(() => undefined, ConnectError.from);
      if (refused) expect(refused.code).toBe(Code.ResourceExhausted);
      outcomes.push(
        refused === undefined
          ? "ok"
          : refused.rawMessage.includes("server's rate limit")
            ? "global"
            : refused.rawMessage.includes("client's rate limit")
              ? "client"
              : refused.rawMessage,
      );
    }
    // Both buckets refill at 1 a second: the sequence below holds only if they did not refill meanwhile.
    expect(performance.now() - started).toBeLessThan(900);
    // Call 1 takes the global bucket's only token; calls 2 and 3 are refused by it, each still spending a
    // client token; so call 4 finds the client's bucket (burst 3) empty. Given back, call 4 would be refused
    // by the global bucket again.
    expect(outcomes).toEqual(["ok", "global", "global", "client"]);
    const decisions = async (result: string, limit: string) =>
      metric(
        server!,
        `streamgate_limiter_requests_total{result="${result}",limit="${limit}",client="acc",tenant="acc"}`,
      );
    expect(await decisions("allowed", "client")).toBe(3);
    expect(await decisions("denied", "client")).toBe(1);
    expect(await decisions("allowed", "global")).toBe(1);
    expect(await decisions("denied", "global")).toBe(2);
  });
});

describe.each(BROKERS)("DEDUP_WINDOW on the %s broker", (kind) => {
  // README, Tenants: "Event ids are remembered per tenant, `DEDUP_WINDOW` (100,000) of them: a retried `eventId` is
  // answered as a duplicate (with the first cursor) and produces no second result as long as the stream's tenant
  // has sent fewer than `DEDUP_WINDOW` event ids since, on any of its streams. Another tenant's sends, however many,
  // never count." Configuration: "`DEDUP_WINDOW` | `100000` | Event ids remembered for deduplication, per tenant:
  // a tenant's sends forget only its own older ids."
  it("keeps an event id for fewer than DEDUP_WINDOW of its tenant's later ids, whatever other tenants send", async () => {
    const WINDOW = 3;
    server = await startTestServer(
      { API_KEYS: "alice:alice-key-0123456789,bob:bob-key-0123456789", DEDUP_WINDOW: String(WINDOW) },
      kind,
    );
    const alice = streamClient(server, "grpc", "alice-key-0123456789");
    const bob = streamClient(server, "grpc", "bob-key-0123456789");
    const [watched, other] = ["orders", "other"];
    await alice.startStream({ streamId: watched });
    await alice.startStream({ streamId: other });
    await bob.startStream({ streamId: watched });

    const first = await alice.sendData({ streamId: watched, payload: json({ order: 1 }), eventId: "order-1" });
    expect(first.duplicate).toBe(false);
    const retry = () => alice.sendData({ streamId: watched, payload: json({ order: 1 }), eventId: "order-1" });

    // bob, another tenant, sends many more fresh ids than the window, on a stream of the same id.
    for (let i = 0; i < WINDOW * 4; i++) {
      expect((await bob.sendData({ streamId: watched, payload: json({ i }), eventId: `bob-${i}` })).duplicate).toBe(
        false,
      );
    }
    expect(await retry()).toMatchObject({ duplicate: true, cursor: first.cursor });

    // alice's own fresh ids, on another of her streams: WINDOW - 1 of them since order-1 keep it.
    for (let i = 1; i < WINDOW; i++) await alice.sendData({ streamId: other, payload: json({ i }), eventId: `a-${i}` });
    expect(await retry()).toMatchObject({ duplicate: true, cursor: first.cursor });

    // The WINDOW-th forgets it: the retry is a new record, stored again. Its result is awaited first, so
    // that the processor, which remembers ids in the same order, has seen it too (partitions run apart).
    const lastOther = alice.sendData({ streamId: other, payload: json({ i: WINDOW }), eventId: `a-${WINDOW}` });
    const otherResults = take(alice.watchResults({ streamId: other, startPosition: StartPosition.EARLIEST }), WINDOW);
    await lastOther;
    expect((await otherResults).map((r) => r.result!.eventId)).toEqual(
      Array.from({ length: WINDOW }, (_, i) => `a-${i + 1}`),
    );
    const again = await retry();
    expect(again.duplicate).toBe(false);
    expect(again.cursor).not.toBe(first.cursor);

    // The duplicates produced no result; the record stored again did.
    await alice.sendData({ streamId: watched, payload: json("end") });
    const results = await take(alice.watchResults({ streamId: watched, startPosition: StartPosition.EARLIEST }), 3);
    expect(results.map((r) => [r.result!.eventId, r.result!.sourceCursor])).toEqual([
      ["order-1", first.cursor],
      ["order-1", again.cursor],
      ["", expect.any(String)],
    ]);
    expect(dataOf(results[2]!.result!)).toBe("end");
    expect((await alice.getStream({ streamId: watched })).counts).toMatchObject({ accepted: 3n, duplicates: 2n });
  });
});
