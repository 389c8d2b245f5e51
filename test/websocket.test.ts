/**
 * Results over WebSocket (`/v1/streams/{id}/results`, the path of the
 * Server-Sent Events endpoint, src/push/websocket.ts), against a real server
 * with a `ws` client: results arrive as they are sent; `after` resumes with no
 * gap and no duplicate; `from=latest` and a filter behave as in WatchResults;
 * a closed stream ends with the end frame and close 1000; records sent on the
 * socket are stored as SendData stores them (acks in order, then results and
 * counts), a bad one is answered with an error frame on a socket that stays
 * open; refusals are plain HTTP errors before the handshake completes; scopes
 * and tickets decide who may send; the client's watcher cap counts WebSocket
 * watchers; a client that stops reading is ended with its resume cursor once
 * it reads again, and resuming from it gets the rest; a client that answers no
 * ping is cut off; and upgrades other than WebSocket are still plain requests.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { StreamService } from "../gen/streamgate/v1/stream_service_pb.js";
import { CLOSE_CODES, closeCodeOf, maxFrameBytes } from "../src/push/websocket.js";
import { selfSignedCert } from "./support/self-signed-cert.js";
import {
  apiKeyHeader,
  BROKERS,
  startTestServer,
  streamClient,
  TEST_API_KEY,
  type TestServer,
  takeResuming,
} from "./support/server.js";

const json = (value: JsonValue) => ({ case: "data" as const, value: fromJson(ValueSchema, value) });
const KEY = { "x-api-key": TEST_API_KEY };

/** A frame the server sends (the fields of every type together, for the tests' reading). */
interface Frame {
  type: "result" | "end" | "error" | "ack";
  cursor?: string;
  result?: { cursor: string; data?: JsonValue; eventId?: string };
  code?: string;
  message?: string;
  id?: JsonValue;
  duplicate?: boolean;
}

/** An open WebSocket watch: its frames in order, and how it closed. */
interface Watch {
  ws: WebSocket;
  /** The next frame, waiting for it if none has come yet. */
  next(): Promise<Frame>;
  /** The next `count` frames. */
  take(count: number): Promise<Frame[]>;
  /** Sends a record frame. */
  send(frame: unknown): void;
  /** Resolves with the close code once the socket has closed. */
  closed: Promise<number>;
}

/** The WebSocket URL of `streamId`'s results with `query`. */
function wsUrl(server: TestServer, streamId: string, query = ""): string {
  return `ws://127.0.0.1:${server.port}/v1/streams/${streamId}/results${query}`;
}

/** Opens a watch; rejects with the HTTP status and body when the upgrade is refused. */
function connect(url: string, headers: Record<string, string> = KEY, options: WebSocket.ClientOptions = {}) {
  const ws = new WebSocket(url, { headers, ...options });
  const frames: Frame[] = [];
  const waiting: ((frame: Frame) => void)[] = [];
  ws.on("message", (data) => {
    const frame = JSON.parse(String(data)) as Frame;
    const waiter = waiting.shift();
    if (waiter) waiter(frame);
    else frames.push(frame);
  });
  const closed = new Promise<number>((resolve) => ws.once("close", (code) => resolve(code)));
  const watch: Watch = {
    ws,
    next: () => {
      const frame = frames.shift();
      return frame ? Promise.resolve(frame) : new Promise((resolve) => waiting.push(resolve));
    },
    take: async (count) => {
      const taken: Frame[] = [];
      while (taken.length < count) taken.push(await watch.next());
      return taken;
    },
    send: (frame) => ws.send(typeof frame === "string" ? frame : JSON.stringify(frame)),
    closed,
  };
  return new Promise<Watch>((resolve, reject) => {
    ws.once("open", () => resolve(watch));
    ws.once("unexpected-response", (_request, response) => {
      let body = "";
      response.on("data", (chunk: Buffer) => (body += chunk));
      response.on("end", () => reject(Object.assign(new Error("refused"), { status: response.statusCode, body })));
    });
    ws.once("error", reject);
  });
}

/** The HTTP status and error code an upgrade is refused with. */
async function refusal(
  url: string,
  headers: Record<string, string> = KEY,
  options: WebSocket.ClientOptions = {},
): Promise<[number, string]> {
  const error = (await connect(url, headers, options).then(
    (watch) => {
      watch.ws.close();
      throw new Error("the upgrade was accepted");
    },
    (refused: { status: number; body: string }) => refused,
  )) as { status: number; body: string };
  return [error.status, (JSON.parse(error.body) as { code: string }).code];
}

/** Reads one HTTP/1.1 response with a content-length from `socket`, as text. */
function responseOn(socket: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const onData = (chunk: Buffer) => {
      text += chunk;
      const end = text.indexOf("\r\n\r\n");
      const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? Number.NaN);
      if (end !== -1 && Buffer.byteLength(text) >= end + 4 + length) {
        socket.off("data", onData);
        resolve(text);
      }
    };
    socket.on("data", onData);
    socket.once("error", reject);
  });
}

/** The data of result frames. */
const dataOf = (frames: Frame[]) => frames.map((frame) => frame.result?.data);

let streams = 0;
/** A stream id no other test uses. */
const uniqueStream = (name: string) => `${name}-${++streams}`;

describe.each(BROKERS)("WebSocket on the %s broker", (kind) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({}, kind);
  });
  afterAll(async () => {
    await server?.close();
  });

  it("sends results as they are sent, then ends a closed stream with an end frame and close 1000", async () => {
    const client = streamClient(server);
    const streamId = uniqueStream("live");
    await client.startStream({ streamId });
    await client.sendData({ streamId, payload: json({ n: 0 }) });
    const watch = await connect(wsUrl(server, streamId));
    const first = await watch.next();
    expect(first).toMatchObject({ type: "result", result: { data: { n: 0 } } });
    expect(first.cursor).toBe(first.result!.cursor);
    // Each result arrives before the next is sent: pushed, not collected at the end.
    for (let n = 1; n <= 3; n++) {
      await client.sendData({ streamId, payload: json({ n }) });
      expect(dataOf([await watch.next()])).toEqual([{ n }]);
    }
    await client.closeStream({ streamId });
    expect(await watch.next()).toEqual({ type: "end" });
    expect(await watch.closed).toBe(1000);
  });

  it("resumes after a result's cursor: no gap, no duplicate", async () => {
    const client = streamClient(server);
    const streamId = uniqueStream("resume");
    await client.startStream({ streamId });
    for (let n = 0; n < 3; n++) await client.sendData({ streamId, payload: json({ n }) });
    const first = await connect(wsUrl(server, streamId));
    const seen = await first.take(3);
    first.ws.close();
    // Sent while no one watches.
    for (let n = 3; n < 6; n++) await client.sendData({ streamId, payload: json({ n }) });
    const again = await connect(wsUrl(server, streamId, `?after=${seen[2]!.cursor}`));
    seen.push(...(await again.take(3)));
    again.ws.close();
    expect(dataOf(seen)).toEqual([0, 1, 2, 3, 4, 5].map((n) => ({ n })));
    expect(new Set(seen.map((frame) => frame.cursor)).size).toBe(6);
  });

  it("takes from=latest and a filter as WatchResults does", async () => {
    const client = streamClient(server);
    const streamId = uniqueStream("query");
    await client.startStream({ streamId });
    await client.sendData({ streamId, payload: json({ n: 0 }) });
    const filter = encodeURIComponent("data.n > 2.0");
    // The watch has begun once the handshake has: everything sent from here on is later.
    const watch = await connect(wsUrl(server, streamId, `?from=latest&filter=${filter}`));
    for (let n = 1; n <= 4; n++) await client.sendData({ streamId, payload: json({ n }) });
    expect(dataOf(await watch.take(2))).toEqual([{ n: 3 }, { n: 4 }]);
    watch.ws.close();
  });

  it("stores records sent on the socket, acks them in order, and answers a bad one without closing", async () => {
    const client = streamClient(server);
    const streamId = uniqueStream("records");
    await client.startStream({ streamId });
    const watch = await connect(wsUrl(server, streamId));
    watch.send({ id: 1, data: { n: 1 }, eventId: "first" });
    watch.send("not json");
    watch.send({ id: "two", raw: Buffer.from("bytes").toString("base64"), headers: { source: "ws" } });
    watch.send({ id: 3, data: null });
    watch.send({ id: 4, data: { n: 4 }, streamId: "elsewhere" });
    watch.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    watch.send({ id: 5, data: { n: 1 }, eventId: "first" });
    watch.send({ id: 6, data: { n: 6 } });
    const answers = await watch.take(8);
    expect(answers.map((answer) => [answer.type, answer.id ?? null, answer.code ?? answer.duplicate])).toEqual([
      ["ack", 1, false],
      ["error", null, "invalid_argument"],
      ["ack", "two", false],
      ["error", 3, "invalid_argument"],
      ["error", 4, "invalid_argument"],
      ["error", null, "invalid_argument"],
      ["ack", 5, true],
      ["ack", 6, false],
    ]);
    const cursors = answers.filter((answer) => answer.type === "ack").map((answer) => answer.cursor!);
    expect(cursors.every((cursor) => cursor.startsWith("i-"))).toBe(true);
    // The duplicate is acknowledged with the first record's cursor.
    expect(cursors[2]).toBe(cursors[0]);
    expect(answers[3]!.message).toContain("data is empty");
    // Then their results, on the same socket, which stayed open.
    const results = await watch.take(3);
    expect(results.map((frame) => frame.type)).toEqual(["result", "result", "result"]);
    expect(results[0]!.result).toMatchObject({ data: { n: 1 }, eventId: "first" });
    expect(results[1]!.result).toMatchObject({
      raw: Buffer.from("bytes").toString("base64"),
      headers: { source: "ws" },
    });
    expect(results[2]!.result).toMatchObject({ data: { n: 6 } });
    const { counts } = await client.getStream({ streamId });
    expect([counts?.accepted, counts?.duplicates, counts?.rejected]).toEqual([3n, 1n, 1n]);
    watch.ws.close();
  });

  it("acks a burst of records in the order sent, past the records one socket may have unanswered", async () => {
    const streamId = uniqueStream("burst");
    await streamClient(server).startStream({ streamId });
    const watch = await connect(wsUrl(server, streamId));
    const count = 600;
    for (let n = 0; n < count; n++) watch.send({ id: n, data: { n } });
    // Results of the first records come in between: the acks are in order among themselves.
    const acks: Frame[] = [];
    while (acks.length < count) {
      const frame = await watch.next();
      if (frame.type !== "result") acks.push(frame);
    }
    expect(acks.map((ack) => [ack.type, ack.id])).toEqual(Array.from({ length: count }, (_, n) => ["ack", n]));
    const offsets = acks.map((ack) => Number(ack.cursor!.split("-").pop()));
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    expect(new Set(offsets).size).toBe(count);
    watch.ws.close();
  });

  it("refuses upgrades with plain HTTP errors before the handshake completes", async () => {
    const streamId = uniqueStream("refusals");
    await streamClient(server).startStream({ streamId });
    expect(await refusal(wsUrl(server, streamId), {})).toEqual([401, "unauthenticated"]);
    expect(await refusal(wsUrl(server, streamId), { "x-api-key": "wrong-key-0123456789" })).toEqual([
      401,
      "unauthenticated",
    ]);
    expect(await refusal(wsUrl(server, "nobody"))).toEqual([404, "not_found"]);
    expect(await refusal(wsUrl(server, streamId, "?after=yesterday"))).toEqual([400, "invalid_argument"]);
    expect(await refusal(wsUrl(server, streamId, "?filter=data.n%20%3E"))).toEqual([400, "invalid_argument"]);
    expect(await refusal(wsUrl(server, streamId, "?from=middle"))).toEqual([400, "invalid_argument"]);
    expect(await refusal(`ws://127.0.0.1:${server.port}/v1/streams`)).toEqual([404, "not_found"]);
  });
});

describe("WebSocket scopes and tickets", () => {
  const OWNER = "owner-key-0123456789";
  const READER = "reader-key-0123456789";
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ API_KEYS: `owner:${OWNER}, reader@owner:${READER} streams:read` });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("lets a streams:read key watch, and refuses its records permission_denied on a socket that stays open", async () => {
    const owner = streamClient(server, "grpc", OWNER);
    await owner.startStream({ streamId: "scoped" });
    const watch = await connect(wsUrl(server, "scoped"), { "x-api-key": READER });
    watch.send({ id: "denied", data: { n: 0 } });
    expect(await watch.next()).toMatchObject({ type: "error", id: "denied", code: "permission_denied" });
    await owner.sendData({ streamId: "scoped", payload: json({ n: 1 }) });
    expect(dataOf([await watch.next()])).toEqual([{ n: 1 }]);
    watch.ws.close();
  });

  it("takes a ticket in place of a key, and lets it send only when it allows sending", async () => {
    const owner = streamClient(server, "grpc", OWNER);
    await owner.startStream({ streamId: "ticketed" });
    const watchOnly = (await owner.createWatchTicket({ streamId: "ticketed" })).ticket;
    const sending = (await owner.createWatchTicket({ streamId: "ticketed", allowSend: true })).ticket;
    const watcher = await connect(wsUrl(server, "ticketed", `?ticket=${watchOnly}`), {});
    watcher.send({ id: 1, data: { n: 0 } });
    expect(await watcher.next()).toMatchObject({ type: "error", id: 1, code: "permission_denied" });
    const sender = await connect(wsUrl(server, "ticketed", `?ticket=${sending}`), {});
    sender.send({ id: 2, data: { n: 2 } });
    expect(await sender.next()).toMatchObject({ type: "ack", id: 2, duplicate: false });
    expect(dataOf([await watcher.next()])).toEqual([{ n: 2 }]);
    watcher.ws.close();
    sender.ws.close();
  });
});

describe("WebSocket limits", () => {
  it("counts WebSocket watchers against CLIENT_MAX_WATCHERS and frees the slot when the socket closes", async () => {
    const server = await startTestServer({ CLIENT_MAX_WATCHERS: "1" });
    try {
      await streamClient(server).startStream({ streamId: "capped" });
      const first = await connect(wsUrl(server, "capped"));
      expect(await refusal(wsUrl(server, "capped"))).toEqual([429, "resource_exhausted"]);
      first.ws.close();
      await first.closed;
      await expect
        .poll(async () => (await fetch(`${server.baseUrl}/metrics`)).text())
        .toMatch(/streamgate_http_watches_total\{transport="websocket",code="canceled"\} 1/);
      // The slot is free again.
      const third = await connect(wsUrl(server, "capped"));
      third.ws.close();
    } finally {
      await server.close();
    }
  });

  it("ends a client that stopped reading with resource_exhausted and its cursor; resuming from it gets the rest", async () => {
    const server = await startTestServer({ WATCH_BUFFER: "8" });
    try {
      const client = streamClient(server);
      await client.startStream({ streamId: "stalled" });
      // Live from the start, so the watcher is fed by the fanout, not read back from the log as it is pulled.
      const stalled = await connect(wsUrl(server, "stalled", "?from=latest"));
      (stalled.ws as unknown as { _socket: net.Socket })._socket.pause();
      // Far more than the socket buffers, the server's 1 MiB bound and the watcher's buffer (8) hold.
      const count = 100;
      const pad = "x".repeat(200_000);
      for (let n = 0; n < count; n++) await client.sendData({ streamId: "stalled", payload: json({ n, pad }) });
      // Once another watcher has every result, the fanout has offered each to the stalled one too.
      expect(await takeResuming(client, "stalled", "", count)).toHaveLength(count);
      (stalled.ws as unknown as { _socket: net.Socket })._socket.resume();
      const delivered: Frame[] = [];
      let frame = await stalled.next();
      while (frame.type === "result") {
        delivered.push(frame);
        frame = await stalled.next();
      }
      expect(frame).toMatchObject({ type: "error", code: "resource_exhausted" });
      expect(delivered.length).toBeLessThan(count);
      expect(frame.cursor).toBe(delivered.at(-1)?.cursor ?? "");
      expect(await stalled.closed).toBe(1013);
      // Resuming from that cursor gets every later result: nothing skipped, nothing twice.
      const resumed = await connect(wsUrl(server, "stalled", frame.cursor ? `?after=${frame.cursor}` : ""));
      const rest = await resumed.take(count - delivered.length);
      resumed.ws.close();
      const numbers = [...delivered, ...rest].map((result) => (result.result!.data as { n: number }).n);
      expect(numbers).toEqual(Array.from({ length: count }, (_, n) => n));
    } finally {
      await server.close();
    }
  });

  it("answers a record over MAX_PAYLOAD_BYTES with an error frame, and closes 1009 on a frame past its room", async () => {
    const server = await startTestServer({ MAX_PAYLOAD_BYTES: "1024" });
    try {
      await streamClient(server).startStream({ streamId: "sized" });
      const watch = await connect(wsUrl(server, "sized"));
      watch.send({ id: "big", data: "x".repeat(2000) });
      expect(await watch.next()).toMatchObject({ type: "error", id: "big", code: "invalid_argument" });
      watch.send({ id: "small", data: "x" });
      expect(await watch.next()).toMatchObject({ type: "ack", id: "small" });
      // A frame may carry MAX_PAYLOAD_BYTES as base64 and 64 KiB of other fields; ws refuses a longer one.
      watch.send({ data: "x".repeat(maxFrameBytes(1024)) });
      expect(await watch.closed).toBe(1009);
    } finally {
      await server.close();
    }
  });

  it("takes a raw record of MAX_PAYLOAD_BYTES, whose base64 is a third longer than the payload", async () => {
    // Large enough that a third of it is more than the 64 KiB left for other fields.
    const max = 256 * 1024;
    const server = await startTestServer({ MAX_PAYLOAD_BYTES: String(max) });
    try {
      await streamClient(server).startStream({ streamId: "raw-max" });
      const watch = await connect(wsUrl(server, "raw-max"));
      // The answer to record `id`, past the results the watch delivers meanwhile.
      const answerTo = async (id: string) => {
        for (;;) {
          const frame = await watch.next();
          if ((frame as { id?: unknown }).id === id) return frame;
        }
      };
      watch.send({ id: "max", raw: Buffer.alloc(max, 7).toString("base64") });
      expect(await answerTo("max")).toMatchObject({ type: "ack", id: "max" });
      watch.send({ id: "over", raw: Buffer.alloc(max + 1, 7).toString("base64") });
      expect(await answerTo("over")).toMatchObject({ type: "error", id: "over", code: "invalid_argument" });
      watch.ws.close();
    } finally {
      await server.close();
    }
  });

  it("ends open sockets with unavailable, its cursor and close 1013 when the server shuts down", async () => {
    const server = await startTestServer();
    const client = streamClient(server);
    await client.startStream({ streamId: "draining" });
    await client.sendData({ streamId: "draining", payload: json({ n: 0 }) });
    const watch = await connect(wsUrl(server, "draining"));
    const [result] = await watch.take(1);
    const closing = server.close();
    expect(await watch.next()).toMatchObject({ type: "error", code: "unavailable", cursor: result!.cursor });
    expect(await watch.closed).toBe(1013);
    await closing;
  });

  it("terminates a socket that answers no ping", async () => {
    const server = await startTestServer({ SSE_HEARTBEAT_MS: "100" });
    try {
      await streamClient(server).startStream({ streamId: "silent" });
      const silent = await connect(wsUrl(server, "silent"), KEY, { autoPong: false });
      let pings = 0;
      silent.ws.on("ping", () => pings++);
      // Cut off without a close frame: 1006 on the client's side.
      expect(await silent.closed).toBe(1006);
      expect(pings).toBeGreaterThanOrEqual(2);
    } finally {
      await server.close();
    }
  });
});

describe("WebSocket close codes", () => {
  it("closes 1000 after the end frame; 1013 to try again, 1011 for a bug, 1008 for the rest after an error frame", () => {
    expect(CLOSE_CODES.ended).toBe(1000);
    expect(closeCodeOf(Code.ResourceExhausted)).toBe(1013);
    expect(closeCodeOf(Code.Unavailable)).toBe(1013);
    expect(closeCodeOf(Code.Internal)).toBe(1011);
    expect(closeCodeOf(Code.NotFound)).toBe(1008);
    expect(closeCodeOf(Code.PermissionDenied)).toBe(1008);
  });
});

describe("WebSocket on the listener", () => {
  it("keeps an open socket past REQUEST_BODY_TIMEOUT_MS: the HTTP/1.1 request is over once upgraded", async () => {
    const server = await startTestServer({ REQUEST_BODY_TIMEOUT_MS: "200", SSE_HEARTBEAT_MS: "100" });
    try {
      await streamClient(server).startStream({ streamId: "long" });
      const watch = await connect(wsUrl(server, "long"));
      // Ten beats of 100 ms: five times the request timeout, which Node checks every 50 ms.
      await new Promise<void>((resolve) => {
        let pings = 0;
        watch.ws.on("ping", () => ++pings === 10 && resolve());
      });
      watch.send({ id: "alive", data: { n: 0 } });
      expect(await watch.next()).toMatchObject({ type: "ack", id: "alive" });
      watch.ws.close();
      expect(await watch.closed).toBe(1005);
    } finally {
      await server.close();
    }
  });

  it("serves wss:// over TLS, where ALPN gives the socket to HTTP/1.1", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sg-wss-"));
    const { certFile, keyFile } = selfSignedCert(dir);
    const server = await startTestServer({ TLS_CERT: certFile, TLS_KEY: keyFile });
    try {
      const ca = readFileSync(certFile);
      const transport = createConnectTransport({
        baseUrl: `https://127.0.0.1:${server.port}`,
        httpVersion: "2",
        nodeOptions: { ca },
        interceptors: [apiKeyHeader(TEST_API_KEY)],
      });
      await createClient(StreamService, transport).startStream({ streamId: "secure" });
      const url = `wss://127.0.0.1:${server.port}/v1/streams/secure/results`;
      expect(await refusal(url, {}, { ca })).toEqual([401, "unauthenticated"]);
      const watch = await connect(url, KEY, { ca });
      watch.send({ id: "tls", data: { n: 0 } });
      expect(await watch.take(2)).toMatchObject([
        { type: "ack", id: "tls" },
        { type: "result", result: { data: { n: 0 } } },
      ]);
      watch.ws.close();
    } finally {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("serves a request asking for h2c (curl --http2) as the plain request it also is", async () => {
    const server = await startTestServer();
    const body = JSON.stringify({ streamId: "plain" });
    const socket = net.connect(server.port, "127.0.0.1");
    socket.write(
      [
        "POST /streamgate.v1.StreamService/StartStream HTTP/1.1",
        "host: 127.0.0.1",
        "connection: Upgrade, HTTP2-Settings",
        "upgrade: h2c",
        "http2-settings: AAMAAABkAARAAAAAAAIAAAAA",
        "content-type: application/json",
        `x-api-key: ${TEST_API_KEY}`,
        `content-length: ${body.length}`,
        "",
        body,
      ].join("\r\n"),
    );
    const answer = await responseOn(socket).finally(() => socket.destroy());
    await server.close();
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(answer).toContain('"streamId":"plain"');
  });
});
