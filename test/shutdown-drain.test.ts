/**
 * Draining on the real process (src/main.ts), as README "Shutdown" describes
 * it: after SIGTERM the server reports NOT_SERVING on gRPC health while a call
 * is still in progress, and that call still finishes; a call still open when
 * SHUTDOWN_TIMEOUT_MS passes is cut and the process exits 0 (after waiting at
 * least that long for it, and long before the default timeout); a second
 * signal exits at once, without waiting for calls in progress. The process
 * runs on the broker the environment gives it (KAFKA_BROKERS, else the
 * embedded one), as test/shutdown.test.ts's does.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { type Client, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../gen/grpc/health/v1/health_pb.js";
import {
  type SendDataStreamRequestSchema,
  type SendDataStreamResponse,
  StartPosition,
  StreamService,
} from "../gen/streamgate/v1/stream_service_pb.js";
import { killLeftover, listeningPort, type StreamgateProcess, spawnStreamgate } from "./support/clients-process.js";
import { Pushable } from "./support/pushable.js";
import { apiKeyHeader, TEST_API_KEY, take } from "./support/server.js";

let running: StreamgateProcess | undefined;
afterEach(async () => {
  await killLeftover(running);
  running = undefined;
});

const data = (value: unknown) => ({ case: "data" as const, value: fromJson(ValueSchema, value as JsonValue) });

type Records = Pushable<MessageInitShape<typeof SendDataStreamRequestSchema>>;

/** Starts the process with `env` and returns a StreamService client of it and its base URL. */
async function start(env: Record<string, string>): Promise<{ client: Client<typeof StreamService>; baseUrl: string }> {
  running = spawnStreamgate({ PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "info", ...env });
  const baseUrl = `http://127.0.0.1:${await listeningPort(running)}`;
  const client = createClient(
    StreamService,
    createGrpcTransport({ baseUrl, interceptors: [apiKeyHeader(TEST_API_KEY)] }),
  );
  return { client, baseUrl };
}

/**
 * Opens a client stream to a new stream `streamId` and leaves it open once its
 * first record is stored (its result seen by a watch): a call in progress.
 */
async function openClientStream(
  client: Client<typeof StreamService>,
  streamId: string,
): Promise<{ records: Records; summary: Promise<SendDataStreamResponse> }> {
  await client.startStream({ streamId });
  const records: Records = new Pushable();
  const summary = client.sendDataStream(records);
  summary.catch(() => undefined); // awaited by the test; a failure meanwhile must not go unhandled
  const seen = take(client.watchResults({ streamId, startPosition: StartPosition.EARLIEST }), 1);
  records.push({ streamId, payload: data({ n: 1 }) });
  expect(await seen).toHaveLength(1);
  return { records, summary };
}

/**
 * `promise`, or a failure naming `what` once `ms` have passed without it: a
 * bound on waiting for an event, so that one that never comes fails clearly
 * instead of at the test's timeout.
 */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** Whether `promise` has settled by the time the event loop has turned once. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  const pending = Symbol("pending");
  const first = await Promise.race([
    promise.then(
      () => true,
      () => true,
    ),
    new Promise((r) => setImmediate(() => r(pending))),
  ]);
  return first !== pending;
}

describe("draining after SIGTERM", () => {
  // README, Shutdown: "On SIGTERM (or SIGINT) the server reports `NOT_SERVING`, refuses new calls with
  // `unavailable`, ends watchers with `unavailable` and the cursor to resume from, lets calls in progress finish
  // (up to `SHUTDOWN_TIMEOUT_MS`), commits what the processor finished and exits 0."
  // README, The API: "Also served: `grpc.health.v1.Health` (`NOT_SERVING` while draining)".
  it("reports NOT_SERVING on gRPC health while a call is still in progress, which then finishes", async () => {
    const { client, baseUrl } = await start({ SHUTDOWN_TIMEOUT_MS: "60000" });
    const { records, summary } = await openClientStream(client, "drain-health");

    // A health watch (no credential: an open service) on a connection of its own.
    const watching = new AbortController();
    const health = createClient(Health, createGrpcTransport({ baseUrl }));
    const statuses = health.watch({ service: "" }, { signal: watching.signal })[Symbol.asyncIterator]();
    expect((await statuses.next()).value?.status).toBe(Status.SERVING);
    // The streamgate service's own status too.
    const service = health
      .watch({ service: StreamService.typeName }, { signal: watching.signal })
      [Symbol.asyncIterator]();
    expect((await service.next()).value?.status).toBe(Status.SERVING);

    running!.child.kill("SIGTERM");
    await running!.waitForLog((line) => line.msg === "draining");
    expect((await within(statuses.next(), 10_000, "health after SIGTERM")).value?.status).toBe(Status.NOT_SERVING);
    expect((await within(service.next(), 10_000, "health after SIGTERM")).value?.status).toBe(Status.NOT_SERVING);
    // Reported while the client stream is still open: it has not ended, and the process is still up.
    expect(await settled(summary)).toBe(false);
    expect(running!.child.exitCode).toBeNull();

    // The call in progress finishes with every record counted, then the process stops.
    records.push({ payload: data({ n: 2 }) });
    records.end();
    expect(await summary).toMatchObject({ accepted: 2n, rejected: 0n });
    watching.abort();
    expect(await running!.exited).toEqual({ code: 0, signal: null });
    expect(running!.logs.map((line) => line.msg)).toContain("stopped");
  });

  // README, Shutdown: "lets calls in progress finish (up to `SHUTDOWN_TIMEOUT_MS`), commits what the processor
  // finished and exits 0"; Configuration: "`SHUTDOWN_TIMEOUT_MS` | `10000` | How long SIGTERM waits for calls in
  // progress."
  it("cuts a call still in progress once SHUTDOWN_TIMEOUT_MS has passed, and exits 0", async () => {
    const timeoutMs = 500;
    const { client } = await start({ SHUTDOWN_TIMEOUT_MS: String(timeoutMs) });
    const { summary } = await openClientStream(client, "drain-timeout"); // never ended by the client

    const signalled = performance.now();
    running!.child.kill("SIGTERM");
    const cutAfter = summary.then(
      () => undefined,
      (error: unknown) => ({ error: ConnectError.from(error), ms: performance.now() - signalled }),
    );
    const exitedAfter = running!.exited.then((exit) => ({ exit, ms: performance.now() - signalled }));

    const cut = await cutAfter;
    expect(cut).toBeDefined(); // the call failed: the server ended it, the client never did
    // Not before the timeout: the server waited for it that long.
    expect(cut!.ms).toBeGreaterThanOrEqual(timeoutMs - 50);
    const { exit, ms } = await exitedAfter;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(running!.logs.map((line) => line.msg)).toEqual(expect.arrayContaining(["draining", "stopped"]));
    // Far sooner than the default SHUTDOWN_TIMEOUT_MS (10 s) would allow.
    expect(ms).toBeLessThan(6000);
  });

  // README, Shutdown: "A second signal exits at once."
  it.each([
    ["SIGTERM", "SIGINT"],
    ["SIGINT", "SIGTERM"],
  ] as const)(
    "exits at once on a second signal (%s, then %s), with a call still in progress",
    async (firstSignal, secondSignal) => {
      const { client } = await start({ SHUTDOWN_TIMEOUT_MS: "120000" });
      const { summary } = await openClientStream(client, "drain-twice"); // never ended by the client

      running!.child.kill(firstSignal);
      await running!.waitForLog((line) => line.msg === "draining");
      // Draining waits for the open call (up to 120 s): still up.
      expect(await settled(summary)).toBe(false);
      expect(running!.child.exitCode).toBeNull();

      const signalled = performance.now();
      running!.child.kill(secondSignal);
      const exit = await running!.exited;
      // Exited by its own hand (not killed by the signal), without finishing the drain.
      expect(exit.signal).toBeNull();
      expect(exit.code).not.toBeNull();
      expect(running!.logs.map((line) => line.msg)).not.toContain("stopped");
      expect(performance.now() - signalled).toBeLessThan(5000);
      // The call in progress was not waited for: it ends with the process.
      expect(
        await summary.then(
          () => "finished",
          () => "cut",
        ),
      ).toBe("cut");
    },
  );
});
