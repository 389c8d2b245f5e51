/**
 * The whole lifecycle through each of the four Connect transports on one port:
 * start → send (unary and client-streaming) → watch → resume after a cursor →
 * close, with the watch ending OK; on the embedded broker and on Kafka.
 */

import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Result } from "../gen/streamgate/v1/stream_service_pb.js";
import { StartPosition, StreamState } from "../gen/streamgate/v1/stream_service_pb.js";
import {
  BROKERS,
  collect,
  startTestServer,
  streamClient,
  type TestServer,
  TRANSPORTS,
  take,
} from "./support/server.js";

describe.each(BROKERS)("on the %s broker", (kind) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({}, kind);
  });
  afterAll(() => server?.close());

  describe.each(Object.keys(TRANSPORTS))("lifecycle over %s", (transport) => {
    it("starts, sends, watches, resumes and closes", async () => {
      const client = streamClient(server, transport);
      const streamId = `life-${transport}`;

      const started = await client.startStream({ streamId, labels: { via: transport } });
      expect(started.created).toBe(true);
      expect(started.stream?.streamId).toBe(streamId);
      expect(started.stream?.state).toBe(StreamState.OPEN);
      const again = await client.startStream({ streamId, labels: { via: transport } });
      expect(again.created).toBe(false);

      const first = await client.sendData({ streamId, payload: { case: "data", value: json({ n: 1 }) } });
      expect(first.cursor).toMatch(/^i-\d+-\d+$/);
      const raw = await client.sendData({
        streamId,
        payload: { case: "raw", value: new Uint8Array([0, 1, 2, 255]) },
        headers: { "content-type": "image/x-test" },
      });
      expect(raw.cursor).not.toBe(first.cursor);

      const summary = await client.sendDataStream(
        (async function* () {
          yield { streamId, payload: { case: "data" as const, value: json({ n: 3 }) } };
          yield { payload: { case: "data" as const, value: json({ n: 4 }) } }; // inherits the stream id
          yield { streamId, payload: { case: undefined } }; // rejected alone
        })(),
      );
      expect(summary.accepted).toBe(2n);
      expect(summary.rejected).toBe(1n);
      expect(summary.rejections[0]).toMatchObject({ index: 2n, code: "invalid_argument" });
      expect(summary.lastCursor).toMatch(/^i-/);

      const results = await take(client.watchResults({ streamId, startPosition: StartPosition.EARLIEST }), 4);
      expect(results.map((r) => payloadOf(r.result!))).toEqual([{ n: 1 }, "raw:0,1,2,255", { n: 3 }, { n: 4 }]);
      expect(results[1]!.result!.headers["content-type"]).toBe("image/x-test");
      expect(results[0]!.result!.sourceCursor).toBe(first.cursor);

      const resumed = await take(client.watchResults({ streamId, afterCursor: results[1]!.result!.cursor }), 2);
      expect(resumed.map((r) => r.result!.cursor)).toEqual(results.slice(2).map((r) => r.result!.cursor));

      // A live watcher sees later results, then ends with OK when the stream closes.
      const live = collect(client.watchResults({ streamId, afterCursor: results[3]!.result!.cursor }));
      await client.sendData({ streamId, payload: { case: "data", value: json({ n: 5 }) } });
      const closed = await client.closeStream({ streamId });
      expect(closed.stream?.state).toBe(StreamState.CLOSED);
      expect((await live).map((r) => payloadOf(r.result!))).toEqual([{ n: 5 }]);

      const sendAfterClose = client.sendData({ streamId, payload: { case: "data", value: json(1) } });
      await expect(sendAfterClose).rejects.toMatchObject({ code: Code.FailedPrecondition });

      const described = await client.getStream({ streamId });
      expect(described.stream?.labels).toEqual({ via: transport });
      expect(described.counts).toMatchObject({ accepted: 5n, rejected: 1n, results: 5n });

      // After the close, a watch from the start replays everything and ends.
      expect(await collect(client.watchResults({ streamId }))).toHaveLength(5);
    });

    it("reports an unknown stream as NOT_FOUND on every call", async () => {
      const client = streamClient(server, transport);
      const streamId = "no-such-stream";
      const calls = [
        () => client.sendData({ streamId, payload: { case: "data", value: json(1) } }),
        () => client.getStream({ streamId }),
        () => client.closeStream({ streamId }),
        () => collect(client.watchResults({ streamId })),
      ];
      for (const call of calls) {
        const error = await call().then(
          () => undefined,
          (e: unknown) => ConnectError.from(e),
        );
        expect(error?.code).toBe(Code.NotFound);
      }
    });
  });
});

/** A JSON value as a google.protobuf.Value, as the generated client takes it. */
function json(value: unknown) {
  return toValue(value);
}

function toValue(value: unknown) {
  return fromJson(ValueSchema, value as JsonValue);
}

function payloadOf(result: Result): unknown {
  return result.payload.case === "data"
    ? toJson(ValueSchema, result.payload.value)
    : `raw:${Array.from(result.payload.value ?? []).join(",")}`;
}
