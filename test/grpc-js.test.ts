/**
 * An independent gRPC client: @grpc/grpc-js with the .proto loaded at run time by
 * @grpc/proto-loader (no generated code, no connect). It drives the whole
 * lifecycle over HTTP/2 (unary, client-streaming and server-streaming calls),
 * sees NOT_FOUND as status 5, and checks grpc.health.v1.Health; on the
 * embedded broker and on Kafka.
 */
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BROKERS, grpcJsApiKey, startTestServer, TEST_API_KEY, type TestServer } from "./support/server.js";

const PROTO_DIR = fileURLToPath(new URL("../proto/", import.meta.url));

// google/protobuf/{struct,timestamp}.proto are not in proto/: proto-loader's
// protobufjs resolves them from its bundled well-known types.
const definition = protoLoader.loadSync(["streamgate/v1/stream_service.proto", "grpc/health/v1/health.proto"], {
  includeDirs: [PROTO_DIR],
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const loaded = grpc.loadPackageDefinition(definition) as unknown as {
  streamgate: { v1: { StreamService: grpc.ServiceClientConstructor } };
  grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
};

/** A loosely typed message in proto-loader's object form. */
type Message = Record<string, any>;

/** A client made from the loaded definition: methods are looked up by name, untyped. */
type DynamicClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

/** The server of the broker being tested (each broker's describe block starts its own), and a client of it. */
let server: TestServer;
let client: DynamicClient;

/** Calls a unary method and resolves with its response, or rejects with the grpc-js ServiceError. */
function unary(target: DynamicClient, method: string, request: Message): Promise<Message> {
  return new Promise((resolve, reject) => {
    target[method]!.call(target, request, (error: grpc.ServiceError | null, response: Message) =>
      error ? reject(error) : resolve(response),
    );
  });
}

/** Sends `requests` on a client stream, ends it, and resolves with the response. */
function clientStream(method: string, requests: Message[]): Promise<Message> {
  return new Promise((resolve, reject) => {
    const call = client[method]!.call(client, (error: grpc.ServiceError | null, response: Message) =>
      error ? reject(error) : resolve(response),
    ) as grpc.ClientWritableStream<Message>;
    for (const request of requests) call.write(request);
    call.end();
  });
}

/** Opens a WatchResults call. */
function watch(request: Message): grpc.ClientReadableStream<Message> {
  return client.watchResults!.call(client, request) as grpc.ClientReadableStream<Message>;
}

/** Reads `count` messages from a call that stays open, then cancels it. */
function take(call: grpc.ClientReadableStream<Message>, count: number): Promise<Message[]> {
  return new Promise((resolve, reject) => {
    const taken: Message[] = [];
    call.on("data", (message: Message) => {
      taken.push(message);
      if (taken.length === count) {
        call.cancel();
        resolve(taken);
      }
    });
    call.on("error", (error: grpc.ServiceError) => {
      if (error.code !== grpc.status.CANCELLED) reject(error);
    });
    call.on("end", () => reject(new Error(`the call ended after ${taken.length} of ${count} messages`)));
  });
}

/** Reads a call to its end; resolves with the messages and the final status. */
function untilEnd(
  call: grpc.ClientReadableStream<Message>,
): Promise<{ messages: Message[]; status: grpc.StatusObject }> {
  return new Promise((resolve, reject) => {
    const messages: Message[] = [];
    call.on("data", (message: Message) => messages.push(message));
    call.on("error", reject);
    call.on("status", (status: grpc.StatusObject) => {
      if (status.code === grpc.status.OK) resolve({ messages, status });
    });
  });
}

/** google.protobuf.Value in proto-loader's object form for `{ temp }`. */
function temperature(temp: number): Message {
  return { structValue: { fields: { temp: { numberValue: temp } } } };
}

function tempOf(response: Message): number {
  return response.result.data.structValue.fields.temp.numberValue;
}

describe.each(BROKERS)("grpc-js client, on the %s broker", (kind) => {
  beforeAll(async () => {
    server = await startTestServer({}, kind);
    const address = `127.0.0.1:${server.port}`;
    client = new loaded.streamgate.v1.StreamService(address, grpc.credentials.createInsecure(), {
      interceptors: [grpcJsApiKey(TEST_API_KEY)],
    }) as typeof client;
  });
  afterAll(async () => {
    client?.close();
    await server?.close();
  });

  it("runs the lifecycle: start, send, send on a stream, watch, resume, close", async () => {
    const streamId = "grpcjs-life";
    const started = await unary(client, "startStream", { streamId, labels: { via: "grpc-js" } });
    expect(started.created).toBe(true);
    expect(started.stream).toMatchObject({ streamId, state: "STREAM_STATE_OPEN", labels: { via: "grpc-js" } });

    const sent = await unary(client, "sendData", { streamId, data: temperature(21.5), eventId: "e1" });
    expect(sent.cursor).toMatch(/^i-\d+-\d+$/);
    expect(sent.duplicate).toBe(false);

    const summary = await clientStream("sendDataStream", [
      { streamId, data: temperature(22) },
      { eventId: "e1", data: temperature(99) }, // inherits the stream id; a duplicate of the first send
      { data: temperature(22.5) },
    ]);
    expect(summary).toMatchObject({ accepted: "2", duplicates: "1", rejected: "0" });
    expect(summary.lastCursor).toMatch(/^i-\d+-\d+$/);
    expect(summary.lastCursor).not.toBe(sent.cursor);

    const results = await take(watch({ streamId, startPosition: "START_POSITION_EARLIEST" }), 3);
    expect(results.map(tempOf)).toEqual([21.5, 22, 22.5]);
    expect(results[0]!.result.sourceCursor).toBe(sent.cursor);
    expect(results[0]!.result.eventId).toBe("e1");
    expect(results[0]!.result.payload).toBe("data");

    const resumed = await take(watch({ streamId, afterCursor: results[0]!.result.cursor }), 2);
    expect(resumed.map((r) => r.result.cursor)).toEqual(results.slice(1).map((r) => r.result.cursor));

    // A watch open across the close sees the later result, then ends with OK.
    const live = untilEnd(watch({ streamId, afterCursor: results[2]!.result.cursor }));
    await unary(client, "sendData", { streamId, data: temperature(23) });
    const closed = await unary(client, "closeStream", { streamId });
    expect(closed.stream.state).toBe("STREAM_STATE_CLOSED");
    const { messages, status } = await live;
    expect(messages.map(tempOf)).toEqual([23]);
    expect(status.code).toBe(grpc.status.OK);

    const described = await unary(client, "getStream", { streamId });
    expect(described.counts).toMatchObject({ accepted: "4", duplicates: "1", results: "4" });
  });

  it("gets NOT_FOUND (status 5) for an unknown stream", async () => {
    const streamId = "grpcjs-no-such-stream";
    await expect(unary(client, "sendData", { streamId, data: temperature(1) })).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
    });
    await expect(unary(client, "getStream", { streamId })).rejects.toMatchObject({ code: 5 });
    await expect(untilEnd(watch({ streamId }))).rejects.toMatchObject({ code: 5 });
  });

  it("checks health through grpc.health.v1.Health", async () => {
    const address = `127.0.0.1:${server.port}`;
    const health = new loaded.grpc.health.v1.Health(address, grpc.credentials.createInsecure()) as DynamicClient;
    try {
      expect(await unary(health, "check", { service: "" })).toEqual({ status: "SERVING" });
      expect(await unary(health, "check", { service: "streamgate.v1.StreamService" })).toEqual({ status: "SERVING" });
      await expect(unary(health, "check", { service: "no.such.Service" })).rejects.toMatchObject({
        code: grpc.status.NOT_FOUND,
      });
    } finally {
      health.close();
    }
  });
});
