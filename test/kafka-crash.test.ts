/**
 * kill -9 of a gateway during a steady stream of sends, then a restart on the
 * same topics: every acknowledged record has exactly one result (none lost,
 * none repeated); a watcher that was on the killed process reconnects to the
 * new one with its last cursor and sees no gap and no duplicate; and event ids
 * acknowledged before the crash, sent again after it, yield no second result.
 */

import { ConnectError } from "@connectrpc/connect";
import { afterAll, expect, it } from "vitest";
import { type Result, StartPosition } from "../gen/streamgate/v1/stream_service_pb.js";
import {
  jsonData,
  type KafkaGateway,
  payloadOf,
  spawnKafkaGateway,
  uniqueTopicPrefix,
} from "./support/kafka-gateway.js";
import { collect } from "./support/server.js";

const prefix = uniqueTopicPrefix("crash");
const gateways: KafkaGateway[] = [];
afterAll(async () => {
  await Promise.all(gateways.map((gateway) => gateway.kill()));
});

/** A send the gateway acknowledged. */
interface Acknowledged {
  eventId: string;
  cursor: string;
}

/** How many results each source cursor has. */
function countBySource(results: Result[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const result of results) counts.set(result.sourceCursor, (counts.get(result.sourceCursor) ?? 0) + 1);
  return counts;
}

it("after kill -9 and a restart, every acknowledged record has exactly one result and a watcher resumes seamlessly", async () => {
  const first = await spawnKafkaGateway(prefix);
  gateways.push(first);
  const streamId = "crash-stream";
  await first.client.startStream({ streamId });

  // A watcher on the process that will be killed, signalling once it has seen 20 results.
  const before: Result[] = [];
  let twentySeen!: () => void;
  const twenty = new Promise<void>((resolve) => (twentySeen = resolve));
  const watching = (async () => {
    try {
      for await (const response of first.client.watchResults({ streamId, startPosition: StartPosition.EARLIEST })) {
        before.push(response.result!);
        if (before.length === 20) twentySeen();
      }
      return undefined;
    } catch (error) {
      return ConnectError.from(error);
    }
  })();

  // The steady sender: each SendData awaited, until one fails.
  const acknowledged: Acknowledged[] = [];
  const sending = (async () => {
    for (let n = 0; ; n++) {
      const eventId = `ev-${n}`;
      try {
        const { cursor } = await first.client.sendData(
          { streamId, eventId, payload: jsonData({ n }) },
          { timeoutMs: 10_000 },
        );
        acknowledged.push({ eventId, cursor });
      } catch (error) {
        return ConnectError.from(error);
      }
    }
  })();

  await twenty;
  await first.kill();
  // Both calls end with an error: the process is gone, nothing ended cleanly.
  expect(await sending).toBeInstanceOf(ConnectError);
  expect(await watching).toBeInstanceOf(ConnectError);
  const lastBefore = before[before.length - 1]!;

  const second = await spawnKafkaGateway(prefix);
  gateways.push(second);
  // The watcher reconnects with its last cursor; it ends when the stream is closed below.
  const resumed = collect(second.client.watchResults({ streamId, afterCursor: lastBefore.cursor }));

  // Event ids acknowledged before the crash, sent again (with other data), then new records.
  const repeated = [...acknowledged.slice(0, 3), ...acknowledged.slice(-3)];
  for (const { eventId } of repeated) {
    await second.client.sendData({ streamId, eventId, payload: jsonData({ again: eventId }) });
  }
  for (let n = 0; n < 5; n++) {
    const eventId = `ev-after-${n}`;
    const { cursor } = await second.client.sendData({ streamId, eventId, payload: jsonData({ after: n }) });
    acknowledged.push({ eventId, cursor });
  }
  await second.client.closeStream({ streamId });

  const after = (await resumed).map((response) => response.result!);
  const all = (await collect(second.client.watchResults({ streamId, startPosition: StartPosition.EARLIEST }))).map(
    (response) => response.result!,
  );

  // The reconnected watcher: what it had plus what it got since is the whole sequence.
  expect([...before, ...after].map((result) => result.cursor)).toEqual(all.map((result) => result.cursor));

  // Every acknowledged record exactly once; no record (acknowledged or not) twice.
  const counts = countBySource(all);
  expect(acknowledged.filter(({ cursor }) => counts.get(cursor) !== 1)).toEqual([]);
  expect([...counts].filter(([, count]) => count > 1)).toEqual([]);

  // Event ids: one result each; a repeated one's is the original record's.
  const eventIds = all.map((result) => result.eventId);
  expect(eventIds.filter((eventId, index) => eventIds.indexOf(eventId) !== index)).toEqual([]);
  for (const { eventId, cursor } of repeated) {
    const result = all.find((candidate) => candidate.eventId === eventId);
    expect(result?.sourceCursor).toBe(cursor);
    expect(payloadOf(result!)).toEqual({ n: Number(eventId.slice("ev-".length)) });
  }
  // Results come in send order, the records sent after the restart last.
  const order = acknowledged.map(({ cursor }) => cursor);
  expect(all.map((result) => result.sourceCursor).filter((cursor) => order.includes(cursor))).toEqual(order);
  expect(all.slice(-5).map(payloadOf)).toEqual([0, 1, 2, 3, 4].map((n) => ({ after: n })));
}, 90_000);
