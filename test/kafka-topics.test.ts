/**
 * The topics as a non-Node Kafka client sees them: after SendData calls (JSON
 * data, raw bytes, event ids, a client header), kcat reads the ingest and
 * results topics and finds the stream key (`<tenant>/<stream id>`) as key, streamgate's metadata in
 * plain string headers, and the payload as sent (JSON text, or the bytes
 * unchanged), at the partition and offset the cursors name. The registry topic
 * is compacted.
 */

import { Admin, ConfigResourceTypes } from "@platformatic/kafka";
import { afterAll, beforeAll, expect, it } from "vitest";
import { StartPosition } from "../gen/streamgate/v1/stream_service_pb.js";
import { streamKey } from "../src/streams/stream-key.js";
import { kafkaBrokers } from "./support/kafka-control.js";
import { jsonData, startKafkaTestServer, uniqueTopicPrefix } from "./support/kafka-gateway.js";
import { kcatPath, kcatReadTopic, kcatValueBytes, position, recordAt } from "./support/kafka-kcat.js";
import { streamClient, TEST_TENANT, type TestServer, take } from "./support/server.js";

const prefix = uniqueTopicPrefix("topics");
let server: TestServer | undefined;
beforeAll(async () => {
  server = await startKafkaTestServer(prefix);
});
afterAll(() => server?.close());

it("kcat reads keys, headers and values of the ingest and results topics", async () => {
  kcatPath(); // a missing kcat fails here, with how to install it
  const brokers = kafkaBrokers();
  const client = streamClient(server!);
  const streamId = "kcat-stream";
  // Every record of the stream is keyed by its tenant (the test key's) and its id.
  const key = streamKey(TEST_TENANT, streamId);
  expect(key).toBe("test/kcat-stream");
  await client.startStream({ streamId });

  const sentAt = Date.now();
  const json = await client.sendData({
    streamId,
    payload: jsonData({ temp: 21.5, unit: "C" }),
    eventId: "evt-json",
    headers: { "x-origin": "kcat-test" },
  });
  const rawBytes = new Uint8Array([0, 1, 2, 0xff, 0x0a, 0x22]); // not UTF-8, has a newline and a quote
  const raw = await client.sendData({
    streamId,
    payload: { case: "raw", value: rawBytes },
    eventId: "evt-raw",
    headers: { "x-origin": "kcat-test" },
  });
  const results = (await take(client.watchResults({ streamId, startPosition: StartPosition.EARLIEST }), 2)).map(
    (response) => response.result!,
  );
  const sentBy = Date.now();
  const time = expect.stringMatching(/^\d+$/);

  // Ingest: exactly the two records, where the SendData cursors say.
  const ingest = await kcatReadTopic(brokers, `${prefix}ingest`);
  expect(ingest).toHaveLength(2);
  const ingestJson = recordAt(ingest, json.cursor);
  const ingestRaw = recordAt(ingest, raw.cursor);
  expect(ingestJson.key).toBe(key);
  expect(ingestJson.headers).toEqual({
    "x-origin": "kcat-test",
    "content-type": "application/json",
    "streamgate-event-id": "evt-json",
    "streamgate-send-time": time,
  });
  expect(JSON.parse(ingestJson.payload!)).toEqual({ temp: 21.5, unit: "C" });
  const sendTime = Number(ingestJson.headers["streamgate-send-time"]);
  expect(sendTime).toBeGreaterThanOrEqual(sentAt);
  expect(sendTime).toBeLessThanOrEqual(sentBy);

  expect(ingestRaw.key).toBe(key);
  expect(ingestRaw.headers).toEqual({
    "x-origin": "kcat-test",
    "content-type": "application/octet-stream",
    "streamgate-event-id": "evt-raw",
    "streamgate-send-time": time,
  });
  const { partition: rawPartition, offset: rawOffset } = position(raw.cursor);
  expect(await kcatValueBytes(brokers, `${prefix}ingest`, rawPartition, rawOffset)).toEqual(Buffer.from(rawBytes));

  // Results: one per record, where the result cursors say, pointing back at their ingest record.
  const resultRecords = await kcatReadTopic(brokers, `${prefix}results`);
  expect(resultRecords).toHaveLength(2);
  const resultJson = recordAt(resultRecords, results[0]!.cursor);
  const resultRaw = recordAt(resultRecords, results[1]!.cursor);
  expect(resultJson.key).toBe(key);
  expect(resultJson.headers).toEqual({
    "x-origin": "kcat-test",
    "content-type": "application/json",
    "streamgate-event-id": "evt-json",
    "streamgate-send-time": ingestJson.headers["streamgate-send-time"],
    "streamgate-process-time": time,
    "streamgate-source-cursor": json.cursor,
  });
  expect(Number(resultJson.headers["streamgate-process-time"])).toBeGreaterThanOrEqual(sendTime);
  expect(JSON.parse(resultJson.payload!)).toEqual({ temp: 21.5, unit: "C" });

  expect(resultRaw.key).toBe(key);
  expect(resultRaw.headers).toEqual({
    "x-origin": "kcat-test",
    "content-type": "application/octet-stream",
    "streamgate-event-id": "evt-raw",
    "streamgate-send-time": ingestRaw.headers["streamgate-send-time"],
    "streamgate-process-time": time,
    "streamgate-source-cursor": raw.cursor,
  });
  const resultPosition = position(results[1]!.cursor);
  expect(await kcatValueBytes(brokers, `${prefix}results`, resultPosition.partition, resultPosition.offset)).toEqual(
    Buffer.from(rawBytes),
  );

  // The registry: the stream's state under its key, as JSON.
  const registry = await kcatReadTopic(brokers, `${prefix}streams`);
  expect(registry.map((record) => record.key)).toEqual([key]);
  expect(JSON.parse(registry[0]!.payload!)).toMatchObject({ stream: { streamId, state: "STREAM_STATE_OPEN" } });
});

it("the registry topic is compacted; ingest and results are not", async () => {
  const admin = new Admin({ clientId: "kafka-topics-test", bootstrapBrokers: [kafkaBrokers()] });
  try {
    const names = ["streams", "ingest", "results"].map((name) => `${prefix}${name}`);
    const described = await admin.describeConfigs({
      resources: names.map((name) => ({
        resourceType: ConfigResourceTypes.TOPIC,
        resourceName: name,
        configurationKeys: ["cleanup.policy"],
      })),
    });
    const policies = Object.fromEntries(
      described.map((resource) => [
        resource.resourceName,
        resource.configs.find((entry) => entry.name === "cleanup.policy")?.value,
      ]),
    );
    expect(policies).toEqual({ [names[0]!]: "compact", [names[1]!]: "delete", [names[2]!]: "delete" });
  } finally {
    await admin.close();
  }
});
