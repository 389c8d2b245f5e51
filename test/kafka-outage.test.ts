/**
 * The broker stops during traffic while the gateway keeps running: SendData
 * ends with UNAVAILABLE from the gateway's own produce deadline (the client's
 * deadline is longer, so a hang would show as DEADLINE_EXCEEDED), and Health
 * reports NOT_SERVING. Once the broker is back the same gateway process
 * acknowledges sends again and reports SERVING, a watcher open across the
 * outage receives every result (or ends with a ResumeInfo cursor and resumes
 * from it with no gap), and no acknowledged record is lost or repeated.
 *
 * This is the one test file that stops the shared test broker; it starts it
 * again in a finally. It must not run alongside other Kafka test files.
 *
 * It can stop only a broker this run started (test/support/kafka-global-setup.ts
 * without KAFKA_BROKERS, as in `npm test` and CI): with KAFKA_BROKERS given, the
 * broker is the user's, and the test is skipped, saying so, rather than failing.
 */

import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, expect, it } from "vitest";
import { HealthCheckResponse_ServingStatus as Serving } from "../gen/grpc/health/v1/health_pb.js";
import { type Result, ResumeInfoSchema, StartPosition } from "../gen/streamgate/v1/stream_service_pb.js";
import { brokerNotStartedByRun, startKafka, stopKafka } from "./support/kafka-control.js";
import {
  jsonData,
  type KafkaGateway,
  pollUntil,
  spawnKafkaGateway,
  uniqueTopicPrefix,
} from "./support/kafka-gateway.js";
import { collect } from "./support/server.js";

const PRODUCE_TIMEOUT_MS = 2000;
/** Longer than the gateway's produce deadline: a call that hangs ends DEADLINE_EXCEEDED, not UNAVAILABLE. */
const CLIENT_TIMEOUT_MS = 10_000;

const prefix = uniqueTopicPrefix("outage");
let gateway: KafkaGateway | undefined;
afterAll(() => gateway?.kill());

it("a broker outage: UNAVAILABLE and NOT_SERVING while down, recovery without a restart, nothing lost", async ({
  annotate,
  skip,
}) => {
  // Skipped only when the user gave the broker (KAFKA_BROKERS); a run that started its own always runs it.
  const notOurs = brokerNotStartedByRun();
  skip(notOurs !== undefined, notOurs);
  gateway = await spawnKafkaGateway(prefix, {
    KAFKA_PRODUCE_TIMEOUT_MS: String(PRODUCE_TIMEOUT_MS),
    HEALTH_PROBE_INTERVAL_MS: "200",
  });
  const { client, health, process: gatewayProcess } = gateway;
  // The gateway must live through the outage: if it exits, fail now and show why.
  const died = gatewayProcess.exited.then(({ code, signal }) => {
    throw new Error(`the gateway exited (${code ?? signal}) during the test:\n${gatewayProcess.stderr()}`);
  });
  died.catch(() => undefined); // raced below; the kill in afterAll must not count as a failure
  const alive = <T>(promise: Promise<T>) => Promise.race([promise, died]);

  const streamId = "outage-stream";
  await client.startStream({ streamId });
  expect((await health.check({})).status).toBe(Serving.SERVING);

  // A watcher open across the outage: it may stay open, or end with an error to resume from.
  const watched: Result[] = [];
  const watching = (async () => {
    try {
      for await (const response of client.watchResults({ streamId, startPosition: StartPosition.EARLIEST })) {
        watched.push(response.result!);
      }
      return undefined;
    } catch (error) {
      return ConnectError.from(error);
    }
  })();

  // Traffic: one send at a time until told to stop; failures are kept by code.
  const acknowledged: string[] = [];
  const failures: Code[] = [];
  const ackWaiters: Array<{ count: number; resolve: () => void }> = [];
  /** Resolves once `count` sends are acknowledged; rejects after `timeoutMs`. */
  const acknowledgedCount = (count: number, timeoutMs: number) =>
    alive(
      new Promise<void>((resolve, reject) => {
        if (acknowledged.length >= count) return resolve();
        const timer = setTimeout(
          () => reject(new Error(`${count} sends not acknowledged within ${timeoutMs} ms`)),
          timeoutMs,
        );
        ackWaiters.push({
          count,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      }),
    );
  let stopTraffic = false;
  const traffic = (async () => {
    for (let n = 0; !stopTraffic; n++) {
      try {
        const { cursor } = await client.sendData(
          { streamId, payload: jsonData({ n }) },
          { timeoutMs: CLIENT_TIMEOUT_MS },
        );
        acknowledged.push(cursor);
        for (const waiter of ackWaiters.filter(({ count }) => acknowledged.length >= count)) {
          ackWaiters.splice(ackWaiters.indexOf(waiter), 1);
          waiter.resolve();
        }
      } catch (error) {
        failures.push(ConnectError.from(error).code);
      }
    }
  })();
  await acknowledgedCount(10, 10_000);

  let acknowledgedBefore: number;
  try {
    await stopKafka();
    acknowledgedBefore = acknowledged.length;
    // A send while the broker is down ends with UNAVAILABLE, from the gateway's deadline.
    const refused = await client
      .sendData({ streamId, payload: jsonData("while down") }, { timeoutMs: CLIENT_TIMEOUT_MS })
      .then(
        () => undefined,
        (error: unknown) => ConnectError.from(error),
      );
    expect(refused?.code).toBe(Code.Unavailable);
    await alive(
      pollUntil(
        "Health NOT_SERVING while the broker is down",
        async () => ((await health.check({})).status === Serving.NOT_SERVING ? true : undefined),
        { timeoutMs: 10_000, intervalMs: 100 },
      ),
    );
  } finally {
    await startKafka();
  }

  // The same process recovers by itself: the traffic's sends are acknowledged again, Health is SERVING.
  await acknowledgedCount(acknowledgedBefore + 5, 60_000);
  await alive(
    pollUntil(
      "Health SERVING after the broker is back",
      async () => ((await health.check({})).status === Serving.SERVING ? true : undefined),
      { timeoutMs: 10_000, intervalMs: 100 },
    ),
  );
  stopTraffic = true;
  await traffic;
  for (let n = 0; n < 5; n++) {
    acknowledged.push((await client.sendData({ streamId, payload: jsonData({ final: n }) })).cursor);
  }
  // Every send that failed during the outage failed with UNAVAILABLE: none hung until the client's deadline.
  expect(failures.length).toBeGreaterThan(0);
  expect(failures.filter((code) => code !== Code.Unavailable)).toEqual([]);

  // Closing the stream ends the watcher cleanly if it stayed open.
  await client.closeStream({ streamId });
  const ended = await watching;
  if (ended === undefined) {
    await annotate(`the watcher stayed open across the outage (${watched.length} results)`);
  } else {
    // It ended early: UNAVAILABLE with the cursor of the last result it received; it resumes from there.
    expect(ended.code).toBe(Code.Unavailable);
    const resume = ended.findDetails(ResumeInfoSchema).map((info) => info.cursor);
    expect(resume).toEqual([watched[watched.length - 1]?.cursor ?? ""]);
    await annotate(`the watcher ended with UNAVAILABLE and ResumeInfo ${resume[0]} (${ended.rawMessage})`);
    const rest = await collect(
      client.watchResults(
        resume[0] === "" ? { streamId, startPosition: StartPosition.EARLIEST } : { streamId, afterCursor: resume[0] },
      ),
    );
    watched.push(...rest.map((response) => response.result!));
  }

  // No gap, no duplicate for the watcher; every acknowledged record has exactly one result, in order.
  const all = (await collect(client.watchResults({ streamId, startPosition: StartPosition.EARLIEST }))).map(
    (response) => response.result!,
  );
  expect(watched.map((result) => result.cursor)).toEqual(all.map((result) => result.cursor));
  const sources = all.map((result) => result.sourceCursor);
  expect(sources.filter((cursor, index) => sources.indexOf(cursor) !== index)).toEqual([]);
  expect(acknowledged.filter((cursor) => !sources.includes(cursor))).toEqual([]);
  expect(sources.filter((cursor) => acknowledged.includes(cursor))).toEqual(acknowledged);
  expect(gatewayProcess.child.exitCode).toBeNull();
}, 120_000);
