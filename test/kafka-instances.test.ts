/**
 * Two gateway processes on one broker with the same topics: a stream started
 * on A becomes usable on B (the delay is measured and reported as an
 * annotation, not asserted), and a watcher on B receives every result of sends
 * made alternately on A and B, exactly once, in the order the sends were
 * acknowledged.
 */

import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type Result, StartPosition, StreamState } from "../gen/streamgate/v1/stream_service_pb.js";
import {
  jsonData,
  type KafkaGateway,
  payloadOf,
  pollUntil,
  spawnKafkaGateway,
  uniqueTopicPrefix,
} from "./support/kafka-gateway.js";
import { collect, take } from "./support/server.js";

const prefix = uniqueTopicPrefix("instances");
let a: KafkaGateway | undefined;
let b: KafkaGateway | undefined;
beforeAll(async () => {
  // One after the other: B joining the processor group is a rebalance A takes part in.
  a = await spawnKafkaGateway(prefix);
  b = await spawnKafkaGateway(prefix);
});
afterAll(async () => {
  await Promise.all([a?.kill(), b?.kill()]);
});

it("a stream started on A becomes usable on B", async ({ annotate }) => {
  const streamId = "started-on-a";
  const started = await a!.client.startStream({ streamId, labels: { on: "a" } });
  const createdAt = Date.now();
  const found = await pollUntil(
    "GetStream on B finding the stream started on A",
    async () => {
      try {
        return await b!.client.getStream({ streamId });
      } catch (error) {
        if (ConnectError.from(error).code === Code.NotFound) return undefined;
        throw error;
      }
    },
    { timeoutMs: 5000, intervalMs: 10 },
  );
  const delay = Date.now() - createdAt;
  expect(found.stream).toMatchObject({ streamId, state: StreamState.OPEN, labels: { on: "a" } });
  expect(found.stream?.createTime).toEqual(started.stream?.createTime);
  await b!.client.sendData({ streamId, payload: jsonData("usable on B") });
  await annotate(`stream started on A found on B after ${delay} ms`);
});

it("a watcher on B receives every result of sends on A and B, in acknowledgement order", async () => {
  const streamId = "sent-on-both";
  await a!.client.startStream({ streamId });
  await pollUntil("the stream known on B", () => b!.client.getStream({ streamId }), {
    timeoutMs: 5000,
    intervalMs: 10,
  });
  const watch = take(b!.client.watchResults({ streamId, startPosition: StartPosition.EARLIEST }), 100);

  // Each send is acknowledged before the next is made, so acknowledgement order is send order.
  const acknowledged: string[] = [];
  for (let n = 0; n < 100; n++) {
    const via = n % 2 === 0 ? a! : b!;
    const { cursor } = await via.client.sendData({ streamId, payload: jsonData({ n, via: n % 2 === 0 ? "a" : "b" }) });
    acknowledged.push(cursor);
  }

  const results: Result[] = (await watch).map((response) => response.result!);
  expect(results.map((result) => result.sourceCursor)).toEqual(acknowledged);
  expect(results.map(payloadOf)).toEqual(acknowledged.map((_, n) => ({ n, via: n % 2 === 0 ? "a" : "b" })));

  // And nothing else: once the stream is closed, a full watch on A ends after exactly those results.
  await b!.client.closeStream({ streamId });
  const all = await collect(a!.client.watchResults({ streamId, startPosition: StartPosition.EARLIEST }));
  expect(all.map((response) => response.result!.cursor)).toEqual(results.map((result) => result.cursor));
});
