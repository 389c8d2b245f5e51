/**
 * Authentication on every protocol: no credential or a wrong one is
 * UNAUTHENTICATED, an API key in x-api-key or authorization: Bearer is
 * accepted (plaintext or sha256 in a keys file), HS256 and RS256/ES256 JWTs are
 * verified (expiry, not-before, signature), health and reflection stay open,
 * a non-admin principal is refused admin services with PERMISSION_DENIED, a
 * server with no credential configured accepts only its generated key (printed
 * once on stderr, not logged), and no key or token reaches a log line or an
 * error message.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from "jose";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { StreamService } from "../gen/streamgate/v1/stream_service_pb.js";
import { ConfigError, loadConfig } from "../src/config/config.js";
import { ApiKeyStore, parseKeyList } from "../src/guard/auth/api-keys.js";
import { createJwtVerifier } from "../src/guard/auth/jwt.js";
import { ALL_SCOPES } from "../src/guard/auth/scopes.js";
import type { Logger } from "../src/observe/logger.js";
import { authorize } from "../src/rpc/interceptors/auth.js";
import { listeningPort, type StreamgateProcess, spawnStreamgate } from "./support/clients-process.js";
import {
  grpcJsApiKey,
  startTestServer,
  streamClient,
  TEST_API_KEY,
  type TestServer,
  TRANSPORTS,
} from "./support/server.js";

const HS256_SECRET = "an-hs256-secret-of-at-least-32-bytes!";
const OTHER_SECRET = "another-hs256-secret-of-32-bytes-or-more";
const ADMIN_KEY = "admin-key-0123456789";

/** The code and message of a call that must fail. */
async function refusal(call: Promise<unknown>): Promise<{ code: Code; message: string }> {
  try {
    await call;
  } catch (error) {
    const connect = ConnectError.from(error);
    return { code: connect.code, message: connect.rawMessage };
  }
  throw new Error("expected the call to fail");
}

const MISSING = {
  code: Code.Unauthenticated,
  message: "missing credential; send x-api-key, or authorization with a Bearer token",
};
const INVALID = { code: Code.Unauthenticated, message: "invalid credential" };

/** A logger whose output is kept, as text, for assertions. */
function capturingLogger(): { logger: Logger; text: () => string } {
  let text = "";
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString("utf8");
      done();
    },
  });
  return { logger: pino({ level: "info" }, destination), text: () => text };
}

/** The `rpc` log lines in `text`. */
function rpcLines(text: string): Record<string, unknown>[] {
  return text
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line.msg === "rpc");
}

/** An HS256 token for `claims`, signed with `secret`. */
function hs256(claims: JWTPayload, secret = HS256_SECRET, times: { exp?: number; nbf?: number } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const token = new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuedAt(now);
  token.setExpirationTime(times.exp ?? now + 300);
  if (times.nbf !== undefined) token.setNotBefore(times.nbf);
  return token.sign(new TextEncoder().encode(secret));
}

describe.each(Object.keys(TRANSPORTS))("API keys over %s", (transport) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server?.close());

  /** A client sending `headers` on every call (and no x-api-key of its own). */
  const clientWith = (headers: Record<string, string>) =>
    createClient(
      StreamService,
      TRANSPORTS[transport]!(server.baseUrl, [
        (next) => (request) => {
          for (const [name, value] of Object.entries(headers)) request.header.set(name, value);
          return next(request);
        },
      ]),
    );

  it("refuses a call without a credential, unary and streaming", async () => {
    const client = streamClient(server, transport, null);
    expect(await refusal(client.getStream({ streamId: "s" }))).toEqual(MISSING);
    expect(
      await refusal(
        (async () => {
          for await (const _ of client.watchResults({ streamId: "s" }));
        })(),
      ),
    ).toEqual(MISSING);
    if (transport === "grpc" || transport === "connect-binary") {
      // Client streaming needs HTTP/2.
      expect(await refusal(client.sendDataStream((async function* () {})()))).toEqual(MISSING);
    }
  });

  it("accepts the key in x-api-key", async () => {
    const started = await streamClient(server, transport).startStream({ streamId: `key-${transport}` });
    expect(started.stream?.streamId).toBe(`key-${transport}`);
  });

  it("accepts the key as authorization: Bearer", async () => {
    const started = await clientWith({ authorization: `Bearer ${TEST_API_KEY}` }).startStream({
      streamId: `bearer-${transport}`,
    });
    expect(started.created).toBe(true);
  });

  it("refuses the key in another header or scheme", async () => {
    const basic = Buffer.from(`test:${TEST_API_KEY}`).toString("base64");
    expect(await refusal(clientWith({ "x-api-token": TEST_API_KEY }).getStream({ streamId: "s" }))).toEqual(MISSING);
    expect(await refusal(clientWith({ authorization: `Basic ${basic}` }).getStream({ streamId: "s" }))).toEqual(
      MISSING,
    );
    expect(await refusal(clientWith({ authorization: TEST_API_KEY }).getStream({ streamId: "s" }))).toEqual(MISSING);
  });

  it("refuses a wrong key without echoing it", async () => {
    const wrong = `${TEST_API_KEY}x`;
    expect(await refusal(streamClient(server, transport, wrong).getStream({ streamId: "s" }))).toEqual(INVALID);
    expect(await refusal(clientWith({ authorization: `Bearer ${wrong}` }).getStream({ streamId: "s" }))).toEqual(
      INVALID,
    );
  });
});

describe("grpc-js", () => {
  let server: TestServer;
  let address: string;
  beforeAll(async () => {
    server = await startTestServer();
    address = `127.0.0.1:${server.port}`;
  });
  afterAll(() => server?.close());

  /** GetStream through a grpc-js generic client, resolving with the status code. */
  function getStreamCode(options: grpc.ClientOptions): Promise<{ code: number; details: string }> {
    const client = new grpc.Client(address, grpc.credentials.createInsecure(), options);
    return new Promise((resolve) => {
      client.makeUnaryRequest(
        "/streamgate.v1.StreamService/GetStream",
        (value: Buffer) => value,
        (value: Buffer) => value,
        Buffer.from([0x0a, 0x01, 0x73]), // GetStreamRequest { stream_id: "s" }
        (error) => {
          client.close();
          // connect-es percent-encodes grpc-message with encodeURIComponent and grpc-js
          // decodes it with decodeURI, which leaves reserved characters (",", ";", ":")
          // encoded; grpcurl and grpc-go decode them.
          const details = error ? decodeURIComponent(error.details) : "";
          resolve({ code: error ? error.code : grpc.status.OK, details });
        },
      );
    });
  }

  it("is refused without a key and served with one", async () => {
    expect(await getStreamCode({})).toEqual({ code: grpc.status.UNAUTHENTICATED, details: MISSING.message });
    // Authenticated: the call reaches the service, which knows no stream "s".
    expect(await getStreamCode({ interceptors: [grpcJsApiKey(TEST_API_KEY)] })).toMatchObject({
      code: grpc.status.NOT_FOUND,
    });
    expect(await getStreamCode({ interceptors: [grpcJsApiKey("nope")] })).toEqual({
      code: grpc.status.UNAUTHENTICATED,
      details: INVALID.message,
    });
  });
});

describe("a keys file with sha256 entries", () => {
  let server: TestServer;
  let dir: string;
  const hashed = "hashed-key-abcdefghijklmnop";
  const digest = createHash("sha256").update(hashed).digest("hex");
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "streamgate-keys-"));
    const file = join(dir, "keys");
    writeFileSync(file, `# clients\n\nhashed:sha256:${digest}\nplain:plain-key-0123456789\n`);
    server = await startTestServer({ API_KEYS_FILE: file });
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("accepts the key whose digest is listed, and plaintext entries", async () => {
    expect((await streamClient(server, "grpc", hashed).startStream({ streamId: "file-1" })).created).toBe(true);
    expect(
      (await streamClient(server, "grpc", "plain-key-0123456789").startStream({ streamId: "file-2" })).created,
    ).toBe(true);
  });

  it("refuses the digest itself, and the key the test servers accept by default", async () => {
    expect(await refusal(streamClient(server, "grpc", digest).getStream({ streamId: "s" }))).toEqual(INVALID);
    expect(await refusal(streamClient(server, "grpc", `sha256:${digest}`).getStream({ streamId: "s" }))).toEqual(
      INVALID,
    );
    expect(await refusal(streamClient(server, "grpc", TEST_API_KEY).getStream({ streamId: "s" }))).toEqual(INVALID);
  });
});

describe("JWT", () => {
  let server: TestServer;
  let logs: ReturnType<typeof capturingLogger>;
  let dir: string;
  let rsa: Awaited<ReturnType<typeof generateKeyPair>>;
  let ec: Awaited<ReturnType<typeof generateKeyPair>>;
  let stranger: Awaited<ReturnType<typeof generateKeyPair>>;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "streamgate-jwks-"));
    [rsa, ec, stranger] = await Promise.all([
      generateKeyPair("RS256"),
      generateKeyPair("ES256"),
      generateKeyPair("RS256"),
    ]);
    const keys = [
      { ...(await exportJWK(rsa.publicKey)), kid: "rsa-1", alg: "RS256", use: "sig" },
      { ...(await exportJWK(ec.publicKey)), kid: "ec-1", alg: "ES256", use: "sig" },
    ];
    writeFileSync(join(dir, "jwks.json"), JSON.stringify({ keys }));
    logs = capturingLogger();
    server = await startTestServer(
      { JWT_HS256_SECRET: HS256_SECRET, JWT_JWKS_FILE: join(dir, "jwks.json"), API_KEYS: `test:${TEST_API_KEY}` },
      "memory",
      logs.logger,
    );
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A StreamService client sending `authorization: Bearer <token>`. */
  const bearer = (token: string, transport = "grpc") =>
    createClient(
      StreamService,
      TRANSPORTS[transport]!(server.baseUrl, [
        (next) => (request) => {
          request.header.set("authorization", `Bearer ${token}`);
          return next(request);
        },
      ]),
    );

  it.each(Object.keys(TRANSPORTS))("accepts a valid HS256 token over %s, with sub as the client", async (transport) => {
    const streamId = `jwt-${transport}`;
    await bearer(await hs256({ sub: `device-${transport}` }), transport).startStream({ streamId });
    const lines = rpcLines(logs.text()).filter((entry) => entry.client === `device-${transport}`);
    expect(lines).toMatchObject([{ procedure: "streamgate.v1.StreamService/StartStream", code: "ok" }]);
  });

  it("still accepts API keys alongside tokens", async () => {
    expect((await streamClient(server, "grpc", TEST_API_KEY).startStream({ streamId: "jwt-and-key" })).created).toBe(
      true,
    );
  });

  it("refuses an expired token, beyond the 30 s tolerance", async () => {
    const now = Math.floor(Date.now() / 1000);
    const late = await hs256({ sub: "late" }, HS256_SECRET, { exp: now - 120 });
    expect(await refusal(bearer(late).getStream({ streamId: "s" }))).toEqual(INVALID);
  });

  it("refuses a token that is not valid yet (nbf in the future)", async () => {
    const now = Math.floor(Date.now() / 1000);
    const early = await hs256({ sub: "early" }, HS256_SECRET, { nbf: now + 120 });
    expect(await refusal(bearer(early).getStream({ streamId: "s" }))).toEqual(INVALID);
  });

  it("refuses a token signed with another secret, or without a sub", async () => {
    expect(await refusal(bearer(await hs256({ sub: "forged" }, OTHER_SECRET)).getStream({ streamId: "s" }))).toEqual(
      INVALID,
    );
    expect(await refusal(bearer(await hs256({})).getStream({ streamId: "s" }))).toEqual(INVALID);
  });

  it("accepts RS256 and ES256 tokens signed by a key of the JWKS file", async () => {
    const rs = await new SignJWT({ sub: "rsa-client" })
      .setProtectedHeader({ alg: "RS256", kid: "rsa-1" })
      .setExpirationTime("5m")
      .sign(rsa.privateKey);
    const es = await new SignJWT({ sub: "ec-client" })
      .setProtectedHeader({ alg: "ES256", kid: "ec-1" })
      .setExpirationTime("5m")
      .sign(ec.privateKey);
    await bearer(rs).startStream({ streamId: "jwt-rs256" });
    await bearer(es).startStream({ streamId: "jwt-es256" });
    const clients = rpcLines(logs.text()).map((line) => line.client);
    expect(clients).toEqual(expect.arrayContaining(["rsa-client", "ec-client"]));
  });

  it("refuses an RS256 token signed by a key not in the JWKS file", async () => {
    const forged = await new SignJWT({ sub: "stranger" })
      .setProtectedHeader({ alg: "RS256", kid: "rsa-1" })
      .setExpirationTime("5m")
      .sign(stranger.privateKey);
    expect(await refusal(bearer(forged).getStream({ streamId: "s" }))).toEqual(INVALID);
  });
});

describe("open services", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server?.close());

  it("serves health and reflection without a credential", async () => {
    const transport = createGrpcTransport({ baseUrl: server.baseUrl });
    const health = await createClient(Health, transport).check({ service: "" });
    expect(health.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const reflection = createClient(ServerReflection, transport).serverReflectionInfo(
      (async function* () {
        yield { messageRequest: { case: "listServices" as const, value: "" } };
      })(),
    );
    const names: string[] = [];
    for await (const response of reflection) {
      if (response.messageResponse.case === "listServicesResponse") {
        names.push(...response.messageResponse.value.service.map((service) => service.name));
      }
    }
    expect(names).toContain("streamgate.v1.StreamService");
  });

  it("closes a service left out of AUTH_OPEN_SERVICES", async () => {
    const closed = await startTestServer({ AUTH_OPEN_SERVICES: "grpc.reflection.v1.ServerReflection" });
    try {
      const health = createClient(Health, createGrpcTransport({ baseUrl: closed.baseUrl }));
      expect(await refusal(health.check({ service: "" }))).toEqual(MISSING);
    } finally {
      await closed.close();
    }
  });
});

describe("admin services", () => {
  const user = { client: "acc", tenant: "acc", role: "user" as const, scopes: ALL_SCOPES, configured: true };
  const admin = { client: "adm", tenant: "adm", role: "admin" as const, scopes: ALL_SCOPES, configured: true };
  const adminServices = new Set(["streamgate.v1.AdminService"]);

  it("refuses a non-admin principal with PERMISSION_DENIED, naming the client, not the key", () => {
    let error: unknown;
    try {
      authorize(user, "streamgate.v1.AdminService", "GetLimits", adminServices, undefined);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.PermissionDenied);
    expect((error as ConnectError).rawMessage).toBe(
      'client "acc" may not call streamgate.v1.AdminService: it needs the admin role',
    );
  });

  it("lets an admin call it, and anyone call other services", () => {
    expect(authorize(admin, "streamgate.v1.AdminService", "GetLimits", adminServices, undefined)).toBe("adm");
    expect(authorize(user, "streamgate.v1.StreamService", "GetStream", adminServices, undefined)).toBe("acc");
  });

  it("applies ADMIN_SERVICES end to end: a user key is refused, an ADMIN_API_KEYS key served", async () => {
    const server = await startTestServer({
      API_KEYS: `acc:${TEST_API_KEY}`,
      ADMIN_API_KEYS: `adm:${ADMIN_KEY}`,
      ADMIN_SERVICES: "streamgate.v1.StreamService",
    });
    try {
      expect(await refusal(streamClient(server, "grpc", TEST_API_KEY).getStream({ streamId: "s" }))).toMatchObject({
        code: Code.PermissionDenied,
      });
      expect((await streamClient(server, "grpc", ADMIN_KEY).startStream({ streamId: "admin-ok" })).created).toBe(true);
    } finally {
      await server.close();
    }
  });

  it("gives the admin role to a JWT whose configured claim has the configured value", async () => {
    const verify = createJwtVerifier({
      hs256Secret: new TextEncoder().encode(HS256_SECRET),
      jwks: undefined,
      issuer: undefined,
      audience: undefined,
      tenantClaim: "tenant",
      adminClaim: "groups",
      adminValue: "ops",
    });
    expect(await verify(await hs256({ sub: "a", groups: ["dev", "ops"] }))).toEqual({
      client: "a",
      tenant: "a",
      role: "admin",
      scopes: ALL_SCOPES,
      configured: false,
    });
    expect(await verify(await hs256({ sub: "b", groups: ["dev"] }))).toEqual({
      client: "b",
      tenant: "b",
      role: "user",
      scopes: ALL_SCOPES,
      configured: false,
    });
    expect(await verify(await hs256({ sub: "c", role: "admin" }))).toEqual({
      client: "c",
      tenant: "c",
      role: "user",
      scopes: ALL_SCOPES,
      configured: false,
    });
  });
});

describe("secure by default", () => {
  it("accepts only the generated key when no credential is configured", async () => {
    const server = await startTestServer({ API_KEYS: "" });
    try {
      const key = server.app.generatedApiKey!;
      expect(key).toMatch(/^[A-Za-z0-9_-]{43}$/); // 32 bytes, base64url
      expect(server.apiKey).toBe(key);
      expect((await streamClient(server, "grpc", key).startStream({ streamId: "generated" })).created).toBe(true);
      expect(await refusal(streamClient(server, "grpc", null).getStream({ streamId: "s" }))).toEqual(MISSING);
      expect(await refusal(streamClient(server, "grpc", TEST_API_KEY).getStream({ streamId: "s" }))).toEqual(INVALID);
    } finally {
      await server.close();
    }
  });

  it("generates no key when keys are configured", async () => {
    const server = await startTestServer();
    try {
      expect(server.app.generatedApiKey).toBeUndefined();
    } finally {
      await server.close();
    }
  });

  describe("the process", () => {
    let running: StreamgateProcess | undefined;
    afterAll(async () => {
      if (running && running.child.exitCode === null && running.child.signalCode === null)
        running.child.kill("SIGKILL");
      await running?.exited;
    });

    it("prints the generated key once on stderr, and never in its JSON log", async () => {
      running = spawnStreamgate({ PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "info", API_KEYS: "" });
      const port = await listeningPort(running);
      const announced = new RegExp(
        "streamgate: no credentials configured; generated API key for this run: ([A-Za-z0-9_-]{43}) " +
          "\\(set API_KEYS to choose your own\\)\n",
      );
      // stdout and stderr are separate pipes: wait for the stderr line itself.
      const child = running.child;
      const stderr = running.stderr;
      const key = await new Promise<string>((resolve) => {
        const check = () => {
          const match = announced.exec(stderr());
          if (!match) return false;
          child.stderr!.off("data", check);
          resolve(match[1]!);
          return true;
        };
        if (!check()) child.stderr!.on("data", check);
      });
      const client = createClient(StreamService, TRANSPORTS.grpc!(`http://127.0.0.1:${port}`, []));
      expect(await refusal(client.getStream({ streamId: "s" }))).toEqual(MISSING);
      const authed = streamClient({ baseUrl: `http://127.0.0.1:${port}`, apiKey: key } as TestServer);
      expect((await authed.startStream({ streamId: "spawned" })).created).toBe(true);

      running.child.kill("SIGTERM");
      expect((await running.exited).code).toBe(0);
      expect(running.stderr().split(key).length - 1).toBe(1);
      expect(running.logs.some((line) => line.msg === "rpc")).toBe(true);
      expect(JSON.stringify(running.logs)).not.toContain(key);
    });
  });
});

describe("secrets stay out of logs and error messages", () => {
  it("logs no key or token, valid or not, and echoes none in an error", async () => {
    const logs = capturingLogger();
    const server = await startTestServer(
      { API_KEYS: `test:${TEST_API_KEY}`, JWT_HS256_SECRET: HS256_SECRET },
      "memory",
      logs.logger,
    );
    try {
      const valid = await hs256({ sub: "secretive" });
      const forged = await hs256({ sub: "secretive" }, OTHER_SECRET);
      const secrets = [TEST_API_KEY, `${TEST_API_KEY}-wrong`, valid, forged, HS256_SECRET];
      const messages: string[] = [];
      await streamClient(server, "grpc", TEST_API_KEY).startStream({ streamId: "quiet" });
      const wrong = streamClient(server, "grpc", `${TEST_API_KEY}-wrong`);
      messages.push((await refusal(wrong.getStream({ streamId: "quiet" }))).message);
      for (const token of [valid, forged]) {
        const client = createClient(
          StreamService,
          TRANSPORTS["connect-json"]!(server.baseUrl, [
            (next) => (request) => {
              request.header.set("authorization", `Bearer ${token}`);
              return next(request);
            },
          ]),
        );
        messages.push((await refusal(client.getStream({ streamId: "no-such-stream" }))).message);
      }
      // Each call was logged (so the log was captured): served ones as rpc lines, the two
      // refused at the edge (before any handler) as refusal lines.
      expect(rpcLines(logs.text())).toHaveLength(2);
      const refusals = logs
        .text()
        .split("\n")
        .filter((line) => line.includes('"call refused at the edge"'));
      expect(refusals).toHaveLength(2);
      expect(messages).toEqual([INVALID.message, 'stream "no-such-stream" not found', INVALID.message]);
      for (const secret of secrets) {
        expect(logs.text()).not.toContain(secret);
        for (const message of messages) expect(message).not.toContain(secret);
      }
    } finally {
      await server.close();
    }
  });

  it("names a malformed configured key by position, never by its text", () => {
    const secret = "s3cr3t-value";
    let problems: string[] = [];
    try {
      loadConfig({
        API_KEYS: `${secret},bad name:${secret},ok:${secret} x,x:sha256:${secret},dup:k1,dup:k2,v:${secret}\u00e9`,
        ADMIN_API_KEYS: "other:k1",
      });
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      problems = (error as ConfigError).problems;
    }
    expect(problems).toEqual([
      "API_KEYS entry 1 is not name:key",
      "API_KEYS entry 2: the name must be 1 to 64 of A-Z a-z 0-9 . _ -",
      // A word after the key must be a scope; it may be part of a key, so it is not echoed either.
      'API_KEYS entry 3 ("ok"): after the key come only scopes (streams:read, streams:write, streams:manage), separated by spaces',
      'API_KEYS entry 4 ("x"): a sha256: key must be 64 hexadecimal digits',
      'API_KEYS entry 7 ("v"): the key must be 1 to 4096 visible ASCII characters',
      'API key name "dup" is used more than once',
      'API keys "dup" and "other" are the same key',
    ]);
    for (const problem of problems) expect(problem).not.toContain(secret);
  });
});

describe("ApiKeyStore", () => {
  it("finds each key's name and role, and nothing for other keys", () => {
    const problems: string[] = [];
    const store = new ApiKeyStore([
      ...parseKeyList("a:key-a, b:key-b", "API_KEYS", "user", problems),
      ...parseKeyList("c:key-c", "ADMIN_API_KEYS", "admin", problems),
    ]);
    expect(problems).toEqual([]);
    expect(store.lookup("key-a")).toEqual({
      client: "a",
      tenant: "a",
      role: "user",
      scopes: ALL_SCOPES,
      configured: true,
    });
    expect(store.lookup("key-b")).toEqual({
      client: "b",
      tenant: "b",
      role: "user",
      scopes: ALL_SCOPES,
      configured: true,
    });
    expect(store.lookup("key-c")).toEqual({
      client: "c",
      tenant: "c",
      role: "admin",
      scopes: ALL_SCOPES,
      configured: true,
    });
    expect(store.lookup("key-")).toBeUndefined();
    expect(store.lookup("")).toBeUndefined();
  });
});

describe("auth configuration", () => {
  it("reports a short secret and unreadable files precisely", () => {
    const problemsOf = (env: Record<string, string>) => {
      try {
        loadConfig(env);
        return [];
      } catch (error) {
        return (error as ConfigError).problems;
      }
    };
    expect(problemsOf({ JWT_HS256_SECRET: "short" })).toEqual([
      "JWT_HS256_SECRET: the secret is 5 bytes; HS256 needs at least 32",
    ]);
    expect(problemsOf({ API_KEYS_FILE: "/no/such/keys" })).toEqual([
      'API_KEYS_FILE="/no/such/keys" cannot be read (ENOENT)',
    ]);
    expect(problemsOf({ JWT_JWKS_FILE: "/no/such/jwks" })).toEqual([
      'JWT_JWKS_FILE="/no/such/jwks" cannot be read (ENOENT)',
    ]);
  });
});
