/**
 * The edge's connection bounds: connections that hold the server without
 * doing anything. Each test makes the attack against a real server with short
 * bounds and checks that it is cut off, counted in
 * streamgate_refusals_total{reason}, and that another client's calls still work.
 */

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { StreamService } from "../gen/streamgate/v1/stream_service_pb.js";
import { PREFACE } from "./support/h2-frames.js";
import { freePort } from "./support/ports.js";
import { selfSignedCert } from "./support/self-signed-cert.js";
import { apiKeyHeader, startTestServer, streamClient, TEST_API_KEY, type TestServer, take } from "./support/server.js";

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** Starts a server with `env` and a metrics port of its own (scrapes must not take a connection under the caps). */
async function start(
  env: Record<string, string>,
): Promise<{ server: TestServer; refusals: (reason: string) => Promise<number> }> {
  const metricsPort = await freePort();
  server = await startTestServer({ METRICS_PORT: String(metricsPort), ...env });
  const refusals = async (reason: string) => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(`streamgate_refusals_total{reason="${reason}"}`));
    return line === undefined ? 0 : Number(line.split(" ").pop());
  };
  return { server, refusals };
}

/** A raw TCP connection from `localAddress` (any 127.x address reaches the loopback listener on Linux). */
async function rawSocket(port: number, localAddress = "127.0.0.1"): Promise<net.Socket> {
  const socket = net.connect({ port, host: "127.0.0.1", localAddress });
  socket.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return socket;
}

const closed = (emitter: net.Socket | http2.ClientHttp2Session) =>
  new Promise<void>((resolve) =>
    emitter.closed || emitter.destroyed ? resolve() : emitter.once("close", () => resolve()),
  );

/** A normal client's SendData from `localAddress`; resolves with its cursor. */
async function sendOne(target: TestServer, streamId: string, localAddress = "127.0.0.1"): Promise<string> {
  const client = createClient(
    StreamService,
    createGrpcTransport({
      baseUrl: target.baseUrl,
      interceptors: [apiKeyHeader(TEST_API_KEY)],
      // From the given local address (http2.connect's own options do not take one).
      nodeOptions: { createConnection: () => net.connect({ port: target.port, host: "127.0.0.1", localAddress }) },
    }),
  );
  await client.startStream({ streamId });
  return (await client.sendData({ streamId, payload: { case: "raw", value: new Uint8Array([1]) } })).cursor;
}

describe("first bytes", () => {
  it("closes a connection that sends nothing, or only part of the HTTP/2 preface, after FIRST_BYTES_TIMEOUT_MS", async () => {
    const { server, refusals } = await start({ FIRST_BYTES_TIMEOUT_MS: "300" });
    const silent = await rawSocket(server.port);
    const partial = await rawSocket(server.port);
    partial.write(PREFACE.subarray(0, 16));
    await Promise.all([closed(silent), closed(partial)]);
    expect(await refusals("first_bytes_timeout")).toBe(2);
    // Whoever sends a request in time is served.
    expect(await sendOne(server, "first-bytes")).toMatch(/\S/);
  });
});

describe("HTTP/2 idle sessions", () => {
  it("closes a session with no open stream after HTTP2_IDLE_TIMEOUT_MS, pings or not, and keeps one with an open watch", async () => {
    const { server, refusals } = await start({ HTTP2_IDLE_TIMEOUT_MS: "300" });
    // A watcher: its session holds an open stream the whole time.
    const watcher = streamClient(server, "grpc");
    await watcher.startStream({ streamId: "idle" });
    const watching = new AbortController();
    const firstResult = take(watcher.watchResults({ streamId: "idle" }, { signal: watching.signal }), 1);
    firstResult.catch(() => undefined); // awaited below; a failure before then is reported there

    // The HTTP/2 handshake and no request.
    const quiet = http2.connect(server.baseUrl);
    quiet.on("error", () => undefined);
    const quietGoaway = new Promise<number>((resolve) => quiet.once("goaway", (code: number) => resolve(code)));
    // The handshake and pings, still no request.
    const pinging = http2.connect(server.baseUrl);
    pinging.on("error", () => undefined);
    const pings = setInterval(() => {
      if (!pinging.closed && !pinging.destroyed) pinging.ping(() => undefined);
    }, 50);
    try {
      expect(await quietGoaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
      await Promise.all([closed(quiet), closed(pinging)]);
    } finally {
      clearInterval(pings);
    }
    expect(await refusals("http2_idle_timeout")).toBeGreaterThanOrEqual(2);

    // The watcher's session outlived both: a record sent on it now reaches the watch.
    await watcher.sendData({ streamId: "idle", payload: { case: "raw", value: new Uint8Array([7]) } });
    const [result] = await firstResult;
    expect(result?.result?.payload).toEqual({ case: "raw", value: new Uint8Array([7]) });
    watching.abort();
  });
});

describe("connection caps", () => {
  /** An HTTP/1.1 GET on a fresh connection from `localAddress`: status and body. */
  const get = (port: number, localAddress: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const request = http.get(
        { host: "127.0.0.1", port, path: "/metrics", localAddress, agent: false },
        (response) => {
          let body = "";
          response.setEncoding("utf8");
          response.on("data", (chunk: string) => (body += chunk));
          response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
        },
      );
      request.on("error", reject);
    });

  it("refuses connections over MAX_CONNECTIONS_PER_PEER and MAX_CONNECTIONS clearly, and admits again once some close", async () => {
    const { server, refusals } = await start({ MAX_CONNECTIONS: "4", MAX_CONNECTIONS_PER_PEER: "2" });
    // 127.0.0.1 takes its two connections.
    const held = [await rawSocket(server.port), await rawSocket(server.port)];

    // A third from 127.0.0.1: HTTP/1.1 is answered 503, HTTP/2 with GOAWAY(ENHANCE_YOUR_CALM).
    const overPeer = await get(server.port, "127.0.0.1");
    expect(overPeer.status).toBe(503);
    expect(overPeer.body).toContain("MAX_CONNECTIONS_PER_PEER");
    const h2 = http2.connect(server.baseUrl);
    h2.on("error", () => undefined);
    const [code, , debug] = await new Promise<[number, number, Buffer]>((resolve) =>
      h2.once("goaway", (...args: [number, number, Buffer]) => resolve(args)),
    );
    expect(code).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    expect(debug.toString()).toContain("MAX_CONNECTIONS_PER_PEER");
    h2.destroy();
    expect(await refusals("max_connections_per_peer")).toBe(2);

    // Another peer is served meanwhile (its session is the third connection) ...
    expect(await sendOne(server, "other-peer", "127.0.0.2")).toMatch(/\S/);
    // ... a fourth takes the last place, and a fifth, from anyone, is over MAX_CONNECTIONS.
    held.push(await rawSocket(server.port, "127.0.0.3"));
    const overAll = await get(server.port, "127.0.0.4");
    expect(overAll.status).toBe(503);
    expect(overAll.body).toContain("(MAX_CONNECTIONS)");
    expect(await refusals("max_connections")).toBe(1);

    // Closed connections are counted down: 127.0.0.1 is admitted again.
    for (const socket of held) socket.destroy();
    let cursor: string | undefined;
    for (let attempt = 0; cursor === undefined; attempt++) {
      try {
        cursor = await sendOne(server, "again");
      } catch (error) {
        // The server may not have seen the closes yet; bounded retries.
        if (attempt >= 50) throw error;
      }
    }
    expect(cursor).toMatch(/\S/);
  });
});

describe("with TLS", () => {
  it("closes a connection that does not finish its TLS handshake in time, and closes one over the per-peer cap at once", async () => {
    const dir = mkdtempSync(join(tmpdir(), "streamgate-edge-tls-"));
    try {
      selfSignedCert(dir);
      const ca = readFileSync(join(dir, "cert.pem"));
      const { server, refusals } = await start({
        TLS_CERT: join(dir, "cert.pem"),
        TLS_KEY: join(dir, "key.pem"),
        FIRST_BYTES_TIMEOUT_MS: "300",
        MAX_CONNECTIONS_PER_PEER: "2",
      });
      // Two TCP connections that never start TLS: the second fills 127.0.0.1's allowance.
      const silent = [await rawSocket(server.port), await rawSocket(server.port)];
      const over = await rawSocket(server.port);
      await closed(over);
      expect(await refusals("max_connections_per_peer")).toBe(1);
      await Promise.all(silent.map(closed));
      expect(await refusals("first_bytes_timeout")).toBe(2);
      // With the silent ones gone, a TLS client from the same address is served.
      const client = createClient(
        StreamService,
        createGrpcTransport({
          baseUrl: `https://127.0.0.1:${server.port}`,
          nodeOptions: { ca },
          interceptors: [apiKeyHeader(TEST_API_KEY)],
        }),
      );
      const started = await client.startStream({ streamId: "tls-edge" });
      expect(started.stream?.streamId).toBe("tls-edge");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
