/**
 * The credential is checked at the edge, from the headers, before the body is
 * read, and failed authentication and the open services are limited per peer
 * address, with rate-limited refusal logs. Each test
 * performs the attack against a real server and checks that a client with a
 * valid key, on a connection of its own (from the same address, 127.0.0.1),
 * is still served.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RetryInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { SendDataRequestSchema } from "../gen/streamgate/v1/stream_service_pb.js";
import { capturingLogger } from "./support/capturing-logger.js";
import { outcomeOf } from "./support/refusal.js";
import { collect, startTestServer, streamClient, TEST_API_KEY, type TestServer, TRANSPORTS } from "./support/server.js";

/** The value of one sample in `server`'s /metrics, 0 when absent. */
async function metric(server: TestServer, sample: string): Promise<number> {
  const text = await (await fetch(`${server.baseUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${sample} `));
  return line === undefined ? 0 : Number(line.slice(sample.length + 1));
}

/** A valid-key client on a connection of its own creates a stream and sends a record to it. */
async function validClientIsServed(server: TestServer, streamId: string): Promise<void> {
  const client = streamClient(server, "grpc", TEST_API_KEY);
  await client.startStream({ streamId });
  const sent = await client.sendData({ streamId, payload: { case: "raw", value: new Uint8Array([1, 2, 3]) } });
  expect(sent).toBeDefined();
}

const MESSAGE_BYTES = 1024 * 1024;
const SENT_BYTES = 990 * 1024;

describe("a request without a valid credential is refused from its headers", () => {
  let server: TestServer;
  beforeAll(async () => {
    // A large peer burst: every refusal here is UNAUTHENTICATED, none RESOURCE_EXHAUSTED.
    server = await startTestServer({
      PEER_RATE_LIMIT_RPS: "1",
      PEER_RATE_LIMIT_BURST: "1000",
      CORS_ORIGINS: "https://app.example",
    });
  });
  afterAll(() => server?.close());

  it("a browser sees the refusal with its CORS headers: gRPC-Web status in the headers, Connect as 401 JSON", async () => {
    const call = (contentType: string) =>
      fetch(`${server.baseUrl}/streamgate.v1.StreamService/GetStream`, {
        method: "POST",
        headers: { "content-type": contentType, origin: "https://app.example", "x-grpc-web": "1" },
        body: new Uint8Array(5),
      });
    const grpcWeb = await call("application/grpc-web+proto");
    expect(grpcWeb.status).toBe(200);
    expect(grpcWeb.headers.get("grpc-status")).toBe(String(Code.Unauthenticated));
    expect(grpcWeb.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(grpcWeb.headers.get("access-control-expose-headers")).toContain("Grpc-Status");
    const connect = await call("application/json");
    expect(connect.status).toBe(401);
    expect(connect.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(await connect.json()).toMatchObject({ code: "unauthenticated" });
    await validClientIsServed(server, "after-browser-refusal");
  });

  it("HTTP/2: 60 SendData streams, each 990 KB into a 1 MB message and never finished, are all answered UNAUTHENTICATED unread", async () => {
    const received = () =>
      metric(
        server,
        'grpc_server_msg_received_total{grpc_service="streamgate.v1.StreamService",grpc_method="SendData",grpc_type="unary"}',
      );
    const receivedBefore = await received();
    // The client's own session must hold the 58 MB it is asked to send (its default is 10 MB).
    const session = http2.connect(server.baseUrl, { maxSessionMemory: 1000 });
    session.on("error", () => undefined);
    // A gRPC envelope announcing a 1 MB message, then 990 KB of it: the message never completes.
    const body = Buffer.alloc(SENT_BYTES);
    body.writeUInt32BE(MESSAGE_BYTES, 1);
    const streams = 60;
    const statuses = await Promise.all(
      Array.from({ length: streams }, (_, index) => {
        const headers: http2.OutgoingHttpHeaders = {
          ":method": "POST",
          ":path": "/streamgate.v1.StreamService/SendData",
          "content-type": "application/grpc",
          te: "trailers",
        };
        if (index % 2 === 1) headers["x-api-key"] = `${TEST_API_KEY}-wrong`;
        const stream = session.request(headers);
        stream.on("error", () => undefined);
        let finished = false;
        // Never ended: the client is still sending when (and after) the answer comes.
        stream.write(body, () => (finished = true));
        return new Promise<{ status: string | undefined; message: string | undefined; whileSending: boolean }>(
          (resolve) => {
            stream.on("trailers", (trailers) =>
              resolve({
                status: trailers["grpc-status"] as string | undefined,
                message: trailers["grpc-message"] as string | undefined,
                whileSending: !finished,
              }),
            );
            stream.resume();
          },
        );
      }),
    );
    // What the client could hand to its socket: the server reads no body, so flow control stops it early.
    const bytesSent = session.socket.bytesWritten;

    // The connection is not wedged by the unread bodies: a valid call with a 200 KB record is read and served on it.
    await streamClient(server).startStream({ streamId: "same-connection" });
    const record = toBinary(
      SendDataRequestSchema,
      create(SendDataRequestSchema, {
        streamId: "same-connection",
        payload: { case: "raw", value: new Uint8Array(200 * 1024) },
      }),
    );
    const envelope = Buffer.alloc(5 + record.length);
    envelope.writeUInt32BE(record.length, 1);
    envelope.set(record, 5);
    const valid = session.request({
      ":method": "POST",
      ":path": "/streamgate.v1.StreamService/SendData",
      "content-type": "application/grpc",
      te: "trailers",
      "x-api-key": TEST_API_KEY,
    });
    valid.end(envelope);
    valid.resume();
    const validTrailers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      valid.on("trailers", resolve);
      valid.on("error", reject);
    });
    expect(validTrailers["grpc-status"]).toBe("0");
    session.destroy();

    for (const [index, answer] of statuses.entries()) {
      expect(answer.status).toBe(String(Code.Unauthenticated));
      expect(decodeURIComponent(answer.message ?? "")).toMatch(
        index % 2 === 1 ? /^invalid credential$/ : /^missing credential/,
      );
      expect(answer.whileSending).toBe(true);
    }
    // 60 × 990 KB (58 MB) offered; without reading, the server lets in at most its flow-control windows.
    expect(bytesSent).toBeLessThan(8 * 1024 * 1024);
    expect(await metric(server, 'streamgate_refusals_total{reason="unauthenticated"}')).toBeGreaterThanOrEqual(streams);
    expect(
      await metric(
        server,
        'grpc_server_handled_total{grpc_service="streamgate.v1.StreamService",grpc_method="SendData",grpc_type="unary",grpc_code="Unauthenticated"}',
      ),
    ).toBeGreaterThanOrEqual(streams);
    // No refused call reached connect: the one message received is the valid call's.
    expect(await received()).toBe(receivedBefore + 1);

    await validClientIsServed(server, "after-h2-flood");
  });

  it("a valid key without the admin role calling an admin service is refused PERMISSION_DENIED from its headers, its body unread", async () => {
    const refusedBefore = await metric(server, 'streamgate_refusals_total{reason="permission_denied"}');
    const session = http2.connect(server.baseUrl);
    session.on("error", () => undefined);
    // A gRPC envelope announcing a 1 MB UpdateLimits request, then 990 KB of it: never whole.
    const body = Buffer.alloc(SENT_BYTES);
    body.writeUInt32BE(MESSAGE_BYTES, 1);
    const stream = session.request({
      ":method": "POST",
      ":path": "/streamgate.v1.AdminService/UpdateLimits",
      "content-type": "application/grpc",
      te: "trailers",
      "x-api-key": TEST_API_KEY,
    });
    stream.on("error", () => undefined);
    let finished = false;
    stream.write(body, () => (finished = true));
    stream.resume();
    const trailers = await new Promise<http2.IncomingHttpHeaders>((resolve) => stream.on("trailers", resolve));
    const whileSending = !finished;
    session.destroy();

    expect(trailers["grpc-status"]).toBe(String(Code.PermissionDenied));
    expect(decodeURIComponent(String(trailers["grpc-message"]))).toMatch(/needs the admin role/);
    expect(whileSending).toBe(true);
    expect(await metric(server, 'streamgate_refusals_total{reason="permission_denied"}')).toBe(refusedBefore + 1);
    expect(
      await metric(
        server,
        'grpc_server_msg_received_total{grpc_service="streamgate.v1.AdminService",grpc_method="UpdateLimits",grpc_type="unary"}',
      ),
    ).toBe(0);
    await validClientIsServed(server, "after-admin-refusal");
  });

  it("HTTP/1.1: a Connect call with a wrong key and a 1 MB body in progress is answered 401 with connection: close", async () => {
    const request = http.request(`${server.baseUrl}/streamgate.v1.StreamService/SendData`, {
      method: "POST",
      headers: { "content-type": "application/proto", "content-length": String(MESSAGE_BYTES), "x-api-key": "wrong" },
    });
    request.on("error", () => undefined);
    request.write(Buffer.alloc(SENT_BYTES));
    const response = await new Promise<http.IncomingMessage>((resolve) => request.once("response", resolve));
    const whileSending = !request.writableFinished;
    let text = "";
    response.setEncoding("utf8");
    response.on("data", (chunk: string) => (text += chunk));
    await new Promise((resolve) => response.once("end", resolve));
    // The server closes the connection: the rest of the body is never parsed as a request.
    await new Promise((resolve) =>
      request.socket?.destroyed ? resolve(undefined) : request.socket?.once("close", resolve),
    );
    request.destroy();

    expect(whileSending).toBe(true);
    expect(response.statusCode).toBe(401);
    expect(response.headers.connection).toBe("close");
    expect(JSON.parse(text)).toEqual({ code: "unauthenticated", message: "invalid credential" });
    await validClientIsServed(server, "after-h1-refusal");
  });
});

describe("failed authentication is limited per peer address, and its log lines are rate-limited", () => {
  const BURST = 20;
  const LOGS_PER_SECOND = 5;
  let server: TestServer;
  let logs: ReturnType<typeof capturingLogger>;
  beforeAll(async () => {
    logs = capturingLogger();
    server = await startTestServer(
      {
        PEER_RATE_LIMIT_RPS: "1",
        PEER_RATE_LIMIT_BURST: String(BURST),
        REFUSAL_LOGS_PER_SECOND: String(LOGS_PER_SECOND),
      },
      "memory",
      logs.logger,
    );
  });
  afterAll(() => server?.close());

  it("2,000 calls with a bad key: RESOURCE_EXHAUSTED with RetryInfo once the peer's bucket is empty; few log lines; a valid client is served", async () => {
    const bad = streamClient(server, "grpc", `${TEST_API_KEY}-wrong`);
    const started = performance.now();
    const codes: (Code | "ok")[] = [];
    let retryInfo: unknown;
    let validDuring: Promise<void> | undefined;
    for (let batch = 0; batch < 20; batch++) {
      // Halfway through, a client with a valid key (same address, its own connection).
      if (batch === 10) validDuring = validClientIsServed(server, "during-bad-key-flood");
      codes.push(
        ...(await Promise.all(
          Array.from({ length: 100 }, async () => {
            try {
              await bad.getStream({ streamId: "s" });
              return "ok" as const;
            } catch (error) {
              const connect = ConnectError.from(error);
              if (connect.code === Code.ResourceExhausted) retryInfo ??= connect.findDetails(RetryInfoSchema)[0];
              return connect.code;
            }
          }),
        )),
      );
    }
    const seconds = (performance.now() - started) / 1000;
    await validDuring;

    const unauthenticated = codes.filter((code) => code === Code.Unauthenticated).length;
    const exhausted = codes.filter((code) => code === Code.ResourceExhausted).length;
    expect(unauthenticated + exhausted).toBe(2000);
    // The burst, and what 1 token a second refilled meanwhile.
    expect(unauthenticated).toBeGreaterThanOrEqual(BURST);
    expect(unauthenticated).toBeLessThanOrEqual(BURST + Math.ceil(seconds) + 1);
    expect(retryInfo).toMatchObject({ retryDelay: { seconds: expect.any(BigInt) } });

    // At most LOGS_PER_SECOND refusal lines a second, and no per-call info line for a refused call.
    const refusalLines = () =>
      logs
        .lines()
        .filter(
          (line) =>
            line.msg === "call refused at the edge" || String(line.msg).startsWith("call refused at the edge ("),
        );
    expect(refusalLines().length).toBeLessThanOrEqual(LOGS_PER_SECOND * (Math.ceil(seconds) + 1));
    expect(logs.lines().filter((line) => line.msg === "rpc" && line.code !== "ok")).toEqual([]);
    for (const line of refusalLines()) {
      expect(line).toMatchObject({ level: 40, peer: "127.0.0.1", procedure: "streamgate.v1.StreamService/GetStream" });
      expect(JSON.stringify(line)).not.toContain(TEST_API_KEY);
    }

    // The next line written says how many were suppressed since the one before it:
    // a refused call now and then until one is written (the one-second window has passed).
    let extra = 0;
    const linesAfterFlood = refusalLines().length;
    const deadline = Date.now() + 5000;
    while (refusalLines().length === linesAfterFlood && Date.now() < deadline) {
      await outcomeOf(bad.getStream({ streamId: "s" }));
      extra++;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // Every refusal is either a line or counted in the suppressed count of a later one.
    const lines = refusalLines();
    const suppressed = lines.reduce(
      (sum, line) => sum + (typeof line.suppressed === "number" ? line.suppressed : 0),
      0,
    );
    expect(suppressed).toBeGreaterThan(0);
    const refused =
      (await metric(server, 'streamgate_refusals_total{reason="unauthenticated"}')) +
      (await metric(server, 'streamgate_refusals_total{reason="peer_rate_limit"}'));
    expect(refused).toBe(2000 + extra);
    expect(lines.length + suppressed).toBe(refused);
    // Counted as calls of the procedure, with the code the client saw.
    const handled = (code: string) =>
      metric(
        server,
        `grpc_server_handled_total{grpc_service="streamgate.v1.StreamService",grpc_method="GetStream",grpc_type="unary",grpc_code="${code}"}`,
      );
    expect(await handled("ResourceExhausted")).toBe(
      await metric(server, 'streamgate_refusals_total{reason="peer_rate_limit"}'),
    );
    expect(await handled("Unauthenticated")).toBe(
      await metric(server, 'streamgate_refusals_total{reason="unauthenticated"}'),
    );

    await validClientIsServed(server, "after-bad-key-flood");
  });
});

describe("health and reflection are limited per peer address", () => {
  const BURST = 20;
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ PEER_RATE_LIMIT_RPS: "1", PEER_RATE_LIMIT_BURST: String(BURST) });
  });
  afterAll(() => server?.close());

  it("a flood of health checks and reflection calls from one address is refused once its bucket is empty; a valid client is served", async () => {
    const health = createClient(Health, TRANSPORTS.grpc!(server.baseUrl));
    const reflection = createClient(ServerReflection, TRANSPORTS.grpc!(server.baseUrl));
    const started = performance.now();
    const checks = await Promise.all(Array.from({ length: 300 }, () => outcomeOf(health.check({ service: "" }))));
    const reflections = await Promise.all(
      Array.from({ length: 100 }, () =>
        outcomeOf(
          collect(
            reflection.serverReflectionInfo(
              (async function* () {
                yield { messageRequest: { case: "listServices" as const, value: "" } };
              })(),
            ),
          ),
        ),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    const served = [...checks, ...reflections].filter((code) => code === "ok").length;
    const refused = [...checks, ...reflections].filter((code) => code === Code.ResourceExhausted).length;
    expect(served + refused).toBe(400);
    expect(served).toBeGreaterThanOrEqual(BURST);
    expect(served).toBeLessThanOrEqual(BURST + Math.ceil(seconds) + 1);
    expect(reflections.filter((code) => code === Code.ResourceExhausted).length).toBeGreaterThan(0);
    expect(await metric(server, 'streamgate_refusals_total{reason="peer_rate_limit"}')).toBe(refused);

    // Calls with a valid key spend their own buckets, not the address's.
    await validClientIsServed(server, "after-open-flood");
  });

  it.each(Object.keys(TRANSPORTS))("%s: the refusal is RESOURCE_EXHAUSTED with RetryInfo", async (transport) => {
    const health = createClient(Health, TRANSPORTS[transport]!(server.baseUrl));
    // Empty the bucket (it refills at 1 a second).
    let error: ConnectError | undefined;
    for (let i = 0; i < BURST + 5 && !error; i++) {
      try {
        await health.check({ service: "" });
      } catch (thrown) {
        error = ConnectError.from(thrown);
      }
    }
    expect(error?.code).toBe(Code.ResourceExhausted);
    expect(error?.rawMessage).toContain("PEER_RATE_LIMIT_RPS");
    expect(error?.findDetails(RetryInfoSchema)).toHaveLength(1);
    expect(Number(error?.metadata.get("retry-after"))).toBeGreaterThanOrEqual(1);
  });
});

describe("one reflection stream cannot ask without limit", () => {
  const BURST = 20;
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ PEER_RATE_LIMIT_RPS: "1", PEER_RATE_LIMIT_BURST: String(BURST) });
  });
  afterAll(() => server?.close());

  it("each message of an open-service stream takes a token from the address's bucket", async () => {
    const reflection = createClient(ServerReflection, TRANSPORTS.grpc!(server.baseUrl));
    const started = performance.now();
    let answers = 0;
    let error: ConnectError | undefined;
    try {
      for await (const _ of reflection.serverReflectionInfo(
        (async function* () {
          for (let i = 0; i < 500; i++) yield { messageRequest: { case: "listServices" as const, value: "" } };
        })(),
      )) {
        answers++;
      }
    } catch (thrown) {
      error = ConnectError.from(thrown);
    }
    const seconds = (performance.now() - started) / 1000;
    expect(error?.code).toBe(Code.ResourceExhausted);
    expect(error?.findDetails(RetryInfoSchema)).toHaveLength(1);
    // The call's token and the burst's others, and what refilled meanwhile: far from 500.
    expect(answers).toBeGreaterThanOrEqual(BURST - 1);
    expect(answers).toBeLessThanOrEqual(BURST + Math.ceil(seconds) + 1);
    await validClientIsServed(server, "after-reflection-stream");
  });
});
