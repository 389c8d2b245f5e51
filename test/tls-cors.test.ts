/**
 * TLS with ALPN on the one port (gRPC over h2, Connect and gRPC-Web over
 * HTTP/1.1 and h2), and CORS for browsers: allowed origins get the headers
 * Connect needs, preflights are answered, other origins are refused.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StreamService } from "../gen/streamgate/v1/stream_service_pb.js";
import { selfSignedCert } from "./support/self-signed-cert.js";
import { apiKeyHeader, authHeaders, startTestServer, TEST_API_KEY, type TestServer } from "./support/server.js";

describe("TLS", () => {
  let server: TestServer;
  let dir: string;
  let ca: Buffer;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "streamgate-tls-"));
    selfSignedCert(dir);
    ca = readFileSync(join(dir, "cert.pem"));
    server = await startTestServer({ TLS_CERT: join(dir, "cert.pem"), TLS_KEY: join(dir, "key.pem") });
  });
  afterAll(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const interceptors = [apiKeyHeader(TEST_API_KEY)];
  const transports = {
    "grpc over h2": (baseUrl: string) => createGrpcTransport({ baseUrl, nodeOptions: { ca }, interceptors }),
    "connect over HTTP/1.1": (baseUrl: string) =>
      createConnectTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { ca }, interceptors }),
    "connect over h2": (baseUrl: string) =>
      createConnectTransport({ baseUrl, httpVersion: "2", nodeOptions: { ca }, interceptors }),
    "grpc-web over HTTP/1.1": (baseUrl: string) =>
      createGrpcWebTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { ca }, interceptors }),
  };
  it.each(Object.keys(transports))("serves %s", async (name) => {
    const transport = transports[name as keyof typeof transports](`https://127.0.0.1:${server.port}`);
    const client = createClient(StreamService, transport);
    const streamId = `tls-${name.replace(/[^a-z0-9]+/g, "-")}`;
    const started = await client.startStream({ streamId });
    expect(started.stream?.streamId).toBe(streamId);
  });

  it("refuses cleartext on the TLS port", async () => {
    const client = createClient(
      StreamService,
      createConnectTransport({ baseUrl: `http://127.0.0.1:${server.port}`, httpVersion: "1.1" }),
    );
    await expect(client.getStream({ streamId: "x" })).rejects.toThrow();
  });
});

describe("CORS", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ CORS_ORIGINS: "https://app.example" });
  });
  afterAll(() => server.close());

  const path = "/streamgate.v1.StreamService/StartStream";

  it("answers an allowed origin's preflight with Connect's methods and headers", async () => {
    const response = await fetch(`${server.baseUrl}${path}`, {
      method: "OPTIONS",
      headers: {
        origin: "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,connect-protocol-version,x-grpc-web",
      },
    });
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(response.headers.get("access-control-allow-methods")).toContain("POST");
    const allowed = response.headers.get("access-control-allow-headers")!.toLowerCase().split(/,\s*/);
    // The credential headers too, so a browser can authenticate (and an admin name a tenant).
    expect(allowed).toEqual(
      expect.arrayContaining([
        "content-type",
        "connect-protocol-version",
        "x-grpc-web",
        "x-api-key",
        "authorization",
        "streamgate-tenant",
      ]),
    );
  });

  it("exposes the gRPC-Web status headers on an allowed origin's call", async () => {
    const response = await fetch(`${server.baseUrl}${path}`, {
      method: "POST",
      headers: { origin: "https://app.example", "content-type": "application/json", ...authHeaders(server) },
      body: JSON.stringify({ streamId: "cors-ok" }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(response.headers.get("access-control-expose-headers")).toMatch(/grpc-status/i);
  });

  it("refuses another origin's preflight", async () => {
    const response = await fetch(`${server.baseUrl}${path}`, {
      method: "OPTIONS",
      headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
    });
    expect(response.status).toBe(403);
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
  });
});
