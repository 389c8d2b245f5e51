/**
 * Tenants, performed as two clients would against real servers: keys `alice`
 * and `bob` in tenants of their own, a watch-only and a send-only key in
 * alice's tenant, and an admin. On the embedded broker (one instance) and on
 * Kafka across two gateway instances sharing topics (alice on one, bob on the
 * other), over gRPC and Connect.
 */

import { fromJson, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminService } from "../gen/streamgate/v1/admin_service_pb.js";
import { type Result, StartPosition, StreamService, StreamState } from "../gen/streamgate/v1/stream_service_pb.js";
import {
  activeWatchers,
  type BrokerKind,
  brokerEnv,
  collect,
  startTestServer,
  type TestServer,
  TRANSPORTS,
  take,
  uniqueTopicPrefix,
} from "./support/server.js";

const KEY = {
  alice: "alice-key-0123456789",
  bob: "bob-key-0123456789",
  reader: "reader-key-0123456789",
  sensor: "sensor-key-0123456789",
  ops: "ops-key-0123456789",
} as const;

/** alice and bob are tenants of their own; reader (watch-only) and sensor (send-only) belong to alice's tenant. */
const AUTH = {
  API_KEYS: `alice:${KEY.alice}, bob:${KEY.bob}, reader@alice:${KEY.reader} streams:read, sensor@alice:${KEY.sensor} streams:write`,
  ADMIN_API_KEYS: `ops:${KEY.ops}`,
};

const HS256_SECRET = "a-tenants-test-hs256-secret-of-32-bytes+";

/** Sends `key` as x-api-key, and `tenant` as streamgate-tenant when given. */
function credentials(key: string, tenant?: string): Interceptor {
  return (next) => (request) => {
    request.header.set("x-api-key", key);
    if (tenant !== undefined) request.header.set("streamgate-tenant", tenant);
    return next(request);
  };
}

type StreamClient = Client<typeof StreamService>;

function clientOf(server: TestServer, transport: string, key: string, tenant?: string): StreamClient {
  return createClient(StreamService, TRANSPORTS[transport]!(server.baseUrl, [credentials(key, tenant)]));
}

const json = (value: unknown) => ({ case: "data" as const, value: fromJson(ValueSchema, value as never) });

/** A result's JSON data (undefined for a raw one). */
const dataOf = (result: Result) =>
  result.payload.case === "data" ? toJson(ValueSchema, result.payload.value) : undefined;

/** A call's outcome: its response, or its error's code and message. */
async function outcome(call: () => Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await call() };
  } catch (error) {
    const e = ConnectError.from(error);
    return { code: Code[e.code], message: e.rawMessage };
  }
}

async function codeOf(call: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await call;
  } catch (error) {
    const e = ConnectError.from(error);
    return { code: Code[e.code]!, message: e.rawMessage };
  }
  throw new Error("the call succeeded");
}

/** Two servers sharing one broker (the same server twice on the embedded broker). */
interface Pair {
  /** alice's gateway. */
  a: TestServer;
  /** bob's gateway (another instance on Kafka). */
  b: TestServer;
  close(): Promise<void>;
}

async function startPair(kind: BrokerKind, env: Record<string, string> = {}): Promise<Pair> {
  if (kind === "memory") {
    const server = await startTestServer({ ...AUTH, ...env }, "memory");
    return { a: server, b: server, close: () => server.close() };
  }
  // Same topics and consumer group: two instances of one deployment.
  const shared = brokerEnv("kafka", uniqueTopicPrefix());
  const a = await startTestServer({ ...shared, ...AUTH, ...env }, "kafka");
  const b = await startTestServer({ ...shared, ...AUTH, ...env }, "kafka");
  return { a, b, close: async () => void (await Promise.all([a.close(), b.close()])) };
}

/** Waits until `server` knows alice's stream (on Kafka the registry reaches the other instance through its topic). */
async function knownTo(server: TestServer, streamId: string, key: string = KEY.alice): Promise<void> {
  const client = clientOf(server, "grpc", key);
  await expect
    .poll(() => outcome(() => client.getStream({ streamId })).then((o) => "ok" in (o as object)), { timeout: 15_000 })
    .toBe(true);
}

describe.each(["memory", "kafka"] as const)("tenants on the %s broker", (kind) => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await startPair(kind);
  }, 60_000);
  afterAll(() => pair?.close());

  describe.each(["grpc", "connect-json"])("over %s", (transport) => {
    it("answers another tenant's stream exactly as a stream that does not exist, on every RPC", async () => {
      const alice = clientOf(pair.a, transport, KEY.alice);
      const bob = clientOf(pair.b, transport, KEY.bob);
      const streamId = `private-${transport}`;
      const watchCursor = "r-0-0";
      /** Every StreamService RPC bob can make naming the stream (StartStream makes bob's own: see below). */
      const probe = async () => ({
        sendData: await outcome(() => bob.sendData({ streamId, payload: json({ n: 1 }), eventId: "e1" })),
        sendDataStream: await outcome(() =>
          bob.sendDataStream(
            (async function* () {
              yield { streamId, payload: json({ n: 1 }) };
            })(),
          ),
        ),
        watch: await outcome(() => collect(bob.watchResults({ streamId }))),
        watchAfter: await outcome(() => collect(bob.watchResults({ streamId, afterCursor: watchCursor }))),
        watchLatest: await outcome(() => collect(bob.watchResults({ streamId, startPosition: StartPosition.LATEST }))),
        getStream: await outcome(() => bob.getStream({ streamId })),
        closeStream: await outcome(() => bob.closeStream({ streamId })),
        deleteStream: await outcome(() => bob.deleteStream({ streamId })),
        listStreams: await outcome(() => bob.listStreams({})),
      });

      const before = await probe();
      expect(before.getStream).toEqual({ code: "NotFound", message: `stream "${streamId}" not found` });

      // alice's stream, with labels, a record and a result.
      await alice.startStream({ streamId, labels: { owner: "alice" } });
      await alice.sendData({ streamId, payload: json({ secret: 42 }), eventId: "e1" });
      await take(alice.watchResults({ streamId }), 1);
      await knownTo(pair.b, streamId);

      expect(await probe()).toEqual(before);

      // Nothing bob tried changed alice's stream.
      const described = await alice.getStream({ streamId });
      expect(described.stream?.state).toBe(StreamState.OPEN);
      expect(described.stream?.labels).toEqual({ owner: "alice" });
      const results = await take(alice.watchResults({ streamId }), 1);
      expect(dataOf(results[0]!.result!)).toEqual({ secret: 42 });
      expect((await alice.sendData({ streamId, payload: json({ n: 2 }) })).duplicate).toBe(false);
    });

    it("keeps the same stream id in two tenants independent: sends, results, counts and close", async () => {
      const alice = clientOf(pair.a, transport, KEY.alice);
      const bob = clientOf(pair.b, transport, KEY.bob);
      const streamId = `orders-${transport}`;

      expect((await alice.startStream({ streamId, labels: { owner: "alice" } })).created).toBe(true);
      expect((await bob.startStream({ streamId, labels: { owner: "bob" } })).created).toBe(true);

      // The same event ids in both: neither is a duplicate of the other's.
      for (const n of [1, 2])
        expect(
          (await alice.sendData({ streamId, payload: json({ who: "alice", n }), eventId: `e${n}` })).duplicate,
        ).toBe(false);
      for (const n of [1, 2, 3])
        expect((await bob.sendData({ streamId, payload: json({ who: "bob", n }), eventId: `e${n}` })).duplicate).toBe(
          false,
        );

      const aliceResults = await take(alice.watchResults({ streamId }), 2);
      const bobResults = await take(bob.watchResults({ streamId }), 3);
      expect(aliceResults.map((r) => dataOf(r.result!))).toEqual([
        { who: "alice", n: 1 },
        { who: "alice", n: 2 },
      ]);
      expect(bobResults.map((r) => dataOf(r.result!))).toEqual([
        { who: "bob", n: 1 },
        { who: "bob", n: 2 },
        { who: "bob", n: 3 },
      ]);
      expect(aliceResults[0]!.result!.streamId).toBe(streamId);

      const aliceStream = await alice.getStream({ streamId });
      const bobStream = await bob.getStream({ streamId });
      expect(aliceStream.stream?.labels).toEqual({ owner: "alice" });
      expect(bobStream.stream?.labels).toEqual({ owner: "bob" });
      expect(aliceStream.counts?.accepted).toBe(2n);
      expect(bobStream.counts?.accepted).toBe(3n);

      // alice's close ends alice's watchers only; bob's stream stays open.
      const aliceWatch = collect(alice.watchResults({ streamId }));
      await alice.closeStream({ streamId });
      expect(await aliceWatch).toHaveLength(2);
      expect((await bob.getStream({ streamId })).stream?.state).toBe(StreamState.OPEN);
      expect((await bob.sendData({ streamId, payload: json({ who: "bob", n: 4 }) })).duplicate).toBe(false);
      await expect(alice.sendData({ streamId, payload: json(1) })).rejects.toMatchObject({
        code: Code.FailedPrecondition,
      });
    });

    it("lets a streams:read key watch, get and list, and refuses it send, start, close and delete by scope", async () => {
      const alice = clientOf(pair.a, transport, KEY.alice);
      // On Kafka, the scoped keys use the other instance.
      const reader = clientOf(pair.b, transport, KEY.reader);
      const sensor = clientOf(pair.b, transport, KEY.sensor);
      const streamId = `scoped-${transport}`;
      await alice.startStream({ streamId });
      await knownTo(pair.b, streamId);
      // The sensor (streams:write) sends into alice's tenant's stream; the reader watches it.
      await sensor.sendData({ streamId, payload: json({ temp: 21 }) });
      expect(dataOf((await take(reader.watchResults({ streamId }), 1))[0]!.result!)).toEqual({ temp: 21 });
      expect((await reader.getStream({ streamId })).stream?.streamId).toBe(streamId);
      expect((await reader.listStreams({})).streams.map((s) => s.streamId)).toContain(streamId);

      const denied = (scope: string) => ({
        code: "PermissionDenied",
        message: expect.stringContaining(`needs the scope ${scope}`),
      });
      expect(await codeOf(reader.sendData({ streamId, payload: json(1) }))).toEqual(denied("streams:write"));
      expect(
        await codeOf(
          reader.sendDataStream(
            (async function* () {
              yield { streamId, payload: json(1) };
            })(),
          ),
        ),
      ).toEqual(denied("streams:write"));
      expect(await codeOf(reader.startStream({ streamId: `${streamId}-2` }))).toEqual(denied("streams:manage"));
      expect(await codeOf(reader.closeStream({ streamId }))).toEqual(denied("streams:manage"));
      expect(await codeOf(reader.deleteStream({ streamId }))).toEqual(denied("streams:manage"));
      expect(await codeOf(collect(sensor.watchResults({ streamId })))).toEqual(denied("streams:read"));
      expect(await codeOf(sensor.getStream({ streamId }))).toEqual(denied("streams:read"));
      // Nothing the reader tried changed anything.
      expect((await alice.getStream({ streamId })).stream?.state).toBe(StreamState.OPEN);
      await expect(alice.getStream({ streamId: `${streamId}-2` })).rejects.toMatchObject({ code: Code.NotFound });
    });
  });

  it("keeps a tenant's event ids when another tenant sends 105,000 fresh ones: the retry is a duplicate, with one result", async () => {
    const alice = clientOf(pair.a, "grpc", KEY.alice);
    const bobHere = clientOf(pair.b, "grpc", KEY.bob);
    // On Kafka, bob's retry through alice's instance too: that instance's send path never saw
    // order-1, so only the processor's memory can keep the result single.
    const bobThere = clientOf(pair.a, "grpc", KEY.bob);
    const victim = "bob-orders";
    const flood = "alice-flood";
    await bobHere.startStream({ streamId: victim });
    await alice.startStream({ streamId: flood });
    const first = await bobHere.sendData({ streamId: victim, payload: json({ order: 1 }), eventId: "order-1" });
    await knownTo(pair.a, victim, KEY.bob);

    // alice's flood: 105,000 fresh event ids (more than DEDUP_WINDOW, 100,000), processed before bob retries.
    const count = 105_000;
    const done = take(
      alice.watchResults({ streamId: flood, startPosition: StartPosition.LATEST, filter: "event_id == 'last'" }),
      1,
    );
    const sent = await alice.sendDataStream(
      (async function* () {
        for (let i = 0; i < count; i++)
          yield { streamId: flood, payload: { case: "raw" as const, value: new Uint8Array([1]) }, eventId: `f${i}` };
        yield { streamId: flood, payload: json("last"), eventId: "last" };
      })(),
    );
    expect(sent.accepted).toBe(BigInt(count + 1));
    await done;

    const retry = await bobHere.sendData({ streamId: victim, payload: json({ order: 1 }), eventId: "order-1" });
    expect(retry).toMatchObject({ duplicate: true, cursor: first.cursor });
    if (kind === "kafka")
      await bobThere.sendData({ streamId: victim, payload: json({ order: 1 }), eventId: "order-1" });
    await bobHere.sendData({ streamId: victim, payload: json({ order: 2 }), eventId: "order-2" });

    const results = await take(bobHere.watchResults({ streamId: victim }), 2);
    expect(results.map((r) => r.result!.eventId)).toEqual(["order-1", "order-2"]);
  }, 180_000);

  it("pages through a tenant's streams, filtered by state and label, and shows nothing of another's", async () => {
    const alice = clientOf(pair.a, "connect-json", KEY.alice);
    // Listed on the other instance (on Kafka): the registry reaches it through its topic.
    const aliceThere = clientOf(pair.b, "grpc", KEY.alice);
    const bob = clientOf(pair.b, "grpc", KEY.bob);
    const ids = ["list-1", "list-2", "list-3", "list-4", "list-5"];
    for (const [i, streamId] of ids.entries())
      await alice.startStream({ streamId, labels: { parity: i % 2 === 0 ? "odd" : "even", set: "list" } });
    await bob.startStream({ streamId: "list-bob", labels: { set: "list" } });
    await alice.closeStream({ streamId: "list-2" });
    const closedThere = async () =>
      (await aliceThere.listStreams({ state: StreamState.CLOSED, labels: { set: "list" } })).streams.map(
        (s) => s.streamId,
      );
    await expect.poll(closedThere, { timeout: 15_000 }).toEqual(["list-2"]);

    const pages: string[][] = [];
    let pageToken = "";
    do {
      const page = await aliceThere.listStreams({ pageSize: 2, pageToken, labels: { set: "list" } });
      pages.push(page.streams.map((s) => s.streamId));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(pages).toEqual([["list-1", "list-2"], ["list-3", "list-4"], ["list-5"]]);

    const odd = await alice.listStreams({ labels: { parity: "odd" } });
    expect(odd.streams.map((s) => s.streamId)).toEqual(["list-1", "list-3", "list-5"]);
    const bobs = await bob.listStreams({ labels: { set: "list" } });
    expect(bobs.streams.map((s) => s.streamId)).toEqual(["list-bob"]);

    await expect(alice.listStreams({ pageToken: "not-a-token!" })).rejects.toMatchObject({
      code: Code.InvalidArgument,
    });
    await expect(alice.listStreams({ pageSize: 1001 })).rejects.toMatchObject({ code: Code.InvalidArgument });
  });

  it("lets the admin act in a tenant it names, never by default; another key may not name a tenant", async () => {
    const alice = clientOf(pair.a, "grpc", KEY.alice);
    const streamId = "admin-target";
    await alice.startStream({ streamId });
    await alice.sendData({ streamId, payload: json({ n: 1 }) });

    await knownTo(pair.b, streamId);

    // On Kafka, the admin uses the other instance.
    const opsDefault = clientOf(pair.b, "grpc", KEY.ops);
    await expect(opsDefault.getStream({ streamId })).rejects.toMatchObject({ code: Code.NotFound });
    const opsInAlice = clientOf(pair.b, "connect-json", KEY.ops, "alice");
    expect((await opsInAlice.getStream({ streamId })).stream?.streamId).toBe(streamId);
    expect(dataOf((await take(opsInAlice.watchResults({ streamId }), 1))[0]!.result!)).toEqual({ n: 1 });
    expect((await opsInAlice.listStreams({})).streams.map((s) => s.streamId)).toContain(streamId);

    const bobNamingAlice = clientOf(pair.b, "grpc", KEY.bob, "alice");
    expect(await codeOf(bobNamingAlice.getStream({ streamId }))).toEqual({
      code: "PermissionDenied",
      message: expect.stringContaining("only the admin role may act in another tenant"),
    });
    // Naming one's own tenant is allowed.
    expect((await clientOf(pair.a, "grpc", KEY.alice, "alice").getStream({ streamId })).stream?.streamId).toBe(
      streamId,
    );

    // WatchStats shows each client's tenant.
    await clientOf(pair.a, "grpc", KEY.reader).getStream({ streamId });
    const admin = createClient(AdminService, TRANSPORTS.grpc!(pair.a.baseUrl, [credentials(KEY.ops)]));
    const [snapshot] = await take(admin.watchStats({ intervalMs: 100 }), 1);
    const clients = snapshot!.stats!.topClients.map(({ client, tenant }) => ({ client, tenant }));
    expect(clients).toEqual(
      expect.arrayContaining([
        { client: "alice", tenant: "alice" },
        { client: "reader", tenant: "alice" },
      ]),
    );
  });

  it("deletes a stream: watchers end NOT_FOUND, the id may start again, and the new stream shows none of the old results", async () => {
    const alice = clientOf(pair.a, "grpc", KEY.alice);
    const streamId = "to-delete";
    await alice.startStream({ streamId, labels: { v: "1" } });
    await alice.sendData({ streamId, payload: json({ old: true }), eventId: "x1" });
    const [old] = await take(alice.watchResults({ streamId }), 1);

    // On Kafka, a watcher on the other instance too.
    const aliceThere = clientOf(pair.b, "connect-json", KEY.alice);
    await knownTo(pair.b, streamId);
    // Both watches open at the server before the delete (a watch that arrives after it is plain NOT_FOUND).
    const servers = kind === "memory" ? [pair.a] : [pair.a, pair.b];
    const openWatchers = async () => (await Promise.all(servers.map(activeWatchers))).reduce((sum, n) => sum + n, 0);
    await expect.poll(openWatchers, { timeout: 10_000 }).toBe(0);
    const watching = outcome(() => collect(alice.watchResults({ streamId, afterCursor: old!.result!.cursor })));
    const watchingThere = outcome(() =>
      collect(aliceThere.watchResults({ streamId, afterCursor: old!.result!.cursor })),
    );
    await expect.poll(openWatchers, { timeout: 10_000 }).toBe(2);
    await alice.deleteStream({ streamId });
    // Here at once; there whichever comes first, the tombstone (NOT_FOUND) or the end of the closed stream (OK, nothing more).
    expect(await watching).toMatchObject({ code: "NotFound" });
    expect([
      { code: "NotFound", message: `stream "${streamId}" not found: it was deleted` },
      { ok: [] },
    ]).toContainEqual(await watchingThere);
    await expect(alice.getStream({ streamId })).rejects.toMatchObject({ code: Code.NotFound });
    await expect(alice.sendData({ streamId, payload: json(1) })).rejects.toMatchObject({ code: Code.NotFound });
    expect((await alice.listStreams({})).streams.map((s) => s.streamId)).not.toContain(streamId);
    await expect
      .poll(() => outcome(() => aliceThere.getStream({ streamId })), { timeout: 15_000 })
      .toMatchObject({ code: "NotFound" });

    // Started again on the other instance, used here.
    expect((await aliceThere.startStream({ streamId, labels: { v: "2" } })).created).toBe(true);
    await knownTo(pair.a, streamId);
    // The new stream remembers none of the old one's event ids.
    expect((await alice.sendData({ streamId, payload: json({ fresh: true }), eventId: "x1" })).duplicate).toBe(false);
    const fromStart = await take(alice.watchResults({ streamId }), 1);
    expect(dataOf(fromStart[0]!.result!)).toEqual({ fresh: true });
    // An old cursor does not reach back into the deleted stream's results either.
    const fromOldCursor = await take(alice.watchResults({ streamId, afterCursor: "r-0-0" }), 1);
    expect(dataOf(fromOldCursor[0]!.result!)).toEqual({ fresh: true });
  });
});

describe.each(["memory", "kafka"] as const)("the stream quota on the %s broker", (kind) => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await startPair(kind, { TENANT_MAX_STREAMS: "3" });
  }, 60_000);
  afterAll(() => pair?.close());

  it("refuses a tenant's next StartStream past TENANT_MAX_STREAMS, counting every instance's starts, and not another tenant's", async () => {
    const onA = clientOf(pair.a, "grpc", KEY.alice);
    const onB = clientOf(pair.b, "connect-json", KEY.alice);
    await onA.startStream({ streamId: "q1" });
    await onA.startStream({ streamId: "q2" });
    await onB.startStream({ streamId: "q3" });
    for (const id of ["q1", "q2", "q3"]) await knownTo(pair.b, id);
    for (const id of ["q1", "q2", "q3"]) await knownTo(pair.a, id);

    for (const client of [onA, onB]) {
      expect(await codeOf(client.startStream({ streamId: "q4" }))).toEqual({
        code: "ResourceExhausted",
        message: expect.stringContaining("its quota (TENANT_MAX_STREAMS)"),
      });
    }
    // Counted where it was refused.
    for (const server of new Set([pair.a, pair.b])) {
      const scraped = await (await fetch(`${server.baseUrl}/metrics`)).text();
      expect(scraped).toContain(`streamgate_refusals_total{reason="stream_quota"} ${pair.a === pair.b ? 2 : 1}`);
    }
    // Starting an existing stream again is not a new stream; another tenant has its own quota.
    expect((await onA.startStream({ streamId: "q1" })).created).toBe(false);
    expect((await clientOf(pair.b, "grpc", KEY.bob).startStream({ streamId: "q4" })).created).toBe(true);

    await onA.deleteStream({ streamId: "q2" });
    expect((await onA.startStream({ streamId: "q4" })).created).toBe(true);
  });
});

describe("the watcher quota", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ ...AUTH, TENANT_MAX_WATCHERS: "2" });
  });
  afterAll(() => server?.close());

  it("refuses a tenant's watcher past TENANT_MAX_WATCHERS, whichever of its keys asks, and frees a place when one ends", async () => {
    const alice = clientOf(server, "grpc", KEY.alice);
    const reader = clientOf(server, "connect-json", KEY.reader);
    const bob = clientOf(server, "grpc", KEY.bob);
    await alice.startStream({ streamId: "watched" });
    await bob.startStream({ streamId: "watched" });
    await alice.sendData({ streamId: "watched", payload: json({ n: 1 }) });
    await bob.sendData({ streamId: "watched", payload: json({ n: 1 }) });

    // Two open watchers of alice's tenant, each having delivered a result (so each is counted).
    const first = new AbortController();
    const second = new AbortController();
    const firstWatch = alice.watchResults({ streamId: "watched" }, { signal: first.signal })[Symbol.asyncIterator]();
    const secondWatch = reader.watchResults({ streamId: "watched" }, { signal: second.signal })[Symbol.asyncIterator]();
    await firstWatch.next();
    await secondWatch.next();

    for (const client of [alice, reader]) {
      expect(await codeOf(collect(client.watchResults({ streamId: "watched" })))).toEqual({
        code: "ResourceExhausted",
        message: expect.stringContaining("its quota (TENANT_MAX_WATCHERS)"),
      });
    }
    // Another tenant has its own.
    const bobWatch = new AbortController();
    expect(
      (await bob.watchResults({ streamId: "watched" }, { signal: bobWatch.signal })[Symbol.asyncIterator]().next())
        .done,
    ).toBe(false);
    bobWatch.abort();
    const scraped = await (await fetch(`${server.baseUrl}/metrics`)).text();
    expect(scraped).toContain('streamgate_refusals_total{reason="watcher_quota"} 2');

    first.abort();
    await expect
      .poll(
        () => outcome(() => take(alice.watchResults({ streamId: "watched" }), 1)).then((o) => "ok" in (o as object)),
        { timeout: 10_000 },
      )
      .toBe(true);
    second.abort();
  });
});

describe.each(["memory", "kafka"] as const)("closed streams on the %s broker", (kind) => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await startPair(kind, { CLOSED_STREAM_RETENTION_MS: "300" });
  }, 60_000);
  afterAll(() => pair?.close());

  it("are removed from memory CLOSED_STREAM_RETENTION_MS after their close, on every instance, freeing their id", async () => {
    const alice = clientOf(pair.a, "grpc", KEY.alice);
    const aliceThere = clientOf(pair.b, "connect-json", KEY.alice);
    await alice.startStream({ streamId: "short-lived" });
    await alice.startStream({ streamId: "still-open" });
    await knownTo(pair.b, "short-lived");
    await knownTo(pair.b, "still-open");
    await alice.closeStream({ streamId: "short-lived" });
    for (const client of [alice, aliceThere]) {
      await expect
        .poll(() => outcome(() => client.getStream({ streamId: "short-lived" })), { timeout: 10_000 })
        .toMatchObject({ code: "NotFound" });
      expect((await client.listStreams({})).streams.map((s) => s.streamId)).toEqual(["still-open"]);
    }
    expect((await aliceThere.startStream({ streamId: "short-lived" })).created).toBe(true);
  });
});

describe("JWT tenants and scopes", () => {
  let server: TestServer;
  const secret = new TextEncoder().encode(HS256_SECRET);
  const token = (claims: Record<string, unknown>) =>
    new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuedAt().setExpirationTime("5m").sign(secret);
  const bearer =
    (jwt: string): Interceptor =>
    (next) =>
    (request) => {
      request.header.set("authorization", `Bearer ${jwt}`);
      return next(request);
    };
  const jwtClient = (jwt: string) => createClient(StreamService, TRANSPORTS.grpc!(server.baseUrl, [bearer(jwt)]));

  beforeAll(async () => {
    server = await startTestServer({ ...AUTH, JWT_HS256_SECRET: HS256_SECRET });
  });
  afterAll(() => server?.close());

  it("takes the tenant from the tenant claim (else sub) and the scopes from the scope claim", async () => {
    const alice = clientOf(server, "grpc", KEY.alice);
    await alice.startStream({ streamId: "jwt-visible" });
    await alice.sendData({ streamId: "jwt-visible", payload: json({ n: 1 }) });

    const browser = jwtClient(await token({ sub: "browser-7", tenant: "alice", scope: "openid streams:read" }));
    expect(dataOf((await take(browser.watchResults({ streamId: "jwt-visible" }), 1))[0]!.result!)).toEqual({ n: 1 });
    expect(await codeOf(browser.sendData({ streamId: "jwt-visible", payload: json(1) }))).toMatchObject({
      code: "PermissionDenied",
      message: expect.stringContaining("streams:write"),
    });

    // Without a tenant claim the tenant is the token's sub: alice's stream is not there.
    const own = jwtClient(await token({ sub: "someone-else" }));
    await expect(own.getStream({ streamId: "jwt-visible" })).rejects.toMatchObject({ code: Code.NotFound });
    expect((await own.startStream({ streamId: "jwt-visible" })).created).toBe(true);

    // A tenant that cannot be one (it would join stream keys) is no credential.
    const bad = jwtClient(await token({ sub: "x", tenant: "alice/evil" }));
    await expect(bad.getStream({ streamId: "jwt-visible" })).rejects.toMatchObject({ code: Code.Unauthenticated });
  });
});
