/**
 * README's JWT settings, on a real server called by a real client with tokens
 * jose signs:
 * - JWT_HS256_SECRET_FILE: a secret read from a file (its trailing newline
 *   dropped) verifies the tokens signed with it, and no other; the secret given
 *   both inline and in a file, a file that cannot be read, or a short secret in
 *   a file stop the start with a precise problem that never echoes the secret.
 * - JWT_ISSUER / JWT_AUDIENCE: when set, a token's `iss` / `aud` must match
 *   (a wrong or a missing one is UNAUTHENTICATED); when unset, any is accepted.
 * - The 30 s clock tolerance: `exp` 10 s past and `nbf` 10 s ahead are
 *   accepted, 60 s past / ahead refused.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, createClient } from "@connectrpc/connect";
import { type JWTPayload, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StreamService } from "../gen/streamgate/v1/stream_service_pb.js";
import { ConfigError } from "../src/config/config.js";
import { failureOf } from "./support/refusal.js";
import { startTestServer, streamClient, TEST_API_KEY, type TestServer, TRANSPORTS } from "./support/server.js";

const SECRET = "a-jwt-secret-read-from-a-file-0123456789";
const OTHER_SECRET = "another-secret-of-at-least-32-bytes-abcdef";
const ISSUER = "https://issuer.example.test";
const AUDIENCE = "streamgate-tests";
const INVALID = { code: Code.Unauthenticated, message: "invalid credential" };

let dir: string;
let secretFile: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "streamgate-jwt-settings-"));
  secretFile = join(dir, "hs256.secret");
  // As `echo "$SECRET" > file` writes it: with a trailing newline.
  writeFileSync(secretFile, `${SECRET}\n`);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The code and message of a call that must fail. */
async function refusal(call: Promise<unknown>): Promise<{ code: Code; message: string }> {
  const error = await failureOf(call);
  return { code: error.code, message: error.rawMessage };
}

/**
 * An HS256 token for `claims` signed with `secret`; `exp` and `nbf` are
 * seconds from now (exp 5 min ahead unless given; no nbf unless given).
 */
function token(claims: JWTPayload, secret = SECRET, times: { expIn?: number; nbfIn?: number } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const exp = now + (times.expIn ?? 300);
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256" })
    .setIssuedAt(Math.min(now, exp - 60))
    .setExpirationTime(exp);
  if (times.nbfIn !== undefined) jwt.setNotBefore(now + times.nbfIn);
  return jwt.sign(new TextEncoder().encode(secret));
}

/** A StreamService client on `server` sending `authorization: Bearer <bearer>`. */
function bearer(server: TestServer, value: string) {
  return createClient(
    StreamService,
    TRANSPORTS.grpc!(server.baseUrl, [
      (next) => (request) => {
        request.header.set("authorization", `Bearer ${value}`);
        return next(request);
      },
    ]),
  );
}

/** Starts a stream with `value` as the credential: the stream's id once served. */
async function startWith(server: TestServer, value: string, streamId: string): Promise<string | undefined> {
  const started = await bearer(server, value).startStream({ streamId });
  return started.stream?.streamId;
}

describe("JWT_HS256_SECRET_FILE", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ JWT_HS256_SECRET_FILE: secretFile });
  });
  afterAll(() => server?.close());

  it("verifies a token signed with the file's secret (its trailing newline not part of it)", async () => {
    expect(await startWith(server, await token({ sub: "file-client" }), "from-file")).toBe("from-file");
  });

  it("refuses a token signed with another secret, or with the file's text newline included", async () => {
    const forged = await token({ sub: "file-client" }, OTHER_SECRET);
    expect(await refusal(bearer(server, forged).getStream({ streamId: "s" }))).toEqual(INVALID);
    const withNewline = await token({ sub: "file-client" }, `${SECRET}\n`);
    expect(await refusal(bearer(server, withNewline).getStream({ streamId: "s" }))).toEqual(INVALID);
  });

  it("counts as a configured credential: no API key is generated, and none is accepted", async () => {
    expect(server.app.generatedApiKey).toBeUndefined();
    const client = streamClient(server, "grpc", TEST_API_KEY);
    expect(await refusal(client.getStream({ streamId: "s" }))).toEqual(INVALID);
  });
});

describe("JWT_HS256_SECRET_FILE configuration errors", () => {
  /** The problems a start with `env` is refused with (none: it started, and is closed again). */
  async function startProblems(env: Record<string, string>): Promise<string[]> {
    try {
      const server = await startTestServer(env);
      await server.close();
      return [];
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as ConfigError).problems;
    }
  }

  it("refuses the secret given both inline and in a file, echoing neither", async () => {
    const problems = await startProblems({ JWT_HS256_SECRET: OTHER_SECRET, JWT_HS256_SECRET_FILE: secretFile });
    expect(problems).toEqual(["JWT_HS256_SECRET and JWT_HS256_SECRET_FILE are both set: use one"]);
    expect(problems.join("\n")).not.toContain(SECRET);
    expect(problems.join("\n")).not.toContain(OTHER_SECRET);
  });

  it("refuses a file that cannot be read, naming it and why", async () => {
    const missing = join(dir, "no-such.secret");
    expect(await startProblems({ JWT_HS256_SECRET_FILE: missing })).toEqual([
      `JWT_HS256_SECRET_FILE=${JSON.stringify(missing)} cannot be read (ENOENT)`,
    ]);
  });

  it("refuses a secret in a file shorter than 32 bytes, by its length only", async () => {
    const short = join(dir, "short.secret");
    const shortSecret = "only-twenty-bytes-xx"; // 20 bytes; the newline is dropped
    writeFileSync(short, `${shortSecret}\n`);
    const problems = await startProblems({ JWT_HS256_SECRET_FILE: short });
    expect(problems).toEqual(["JWT_HS256_SECRET_FILE: the secret is 20 bytes; HS256 needs at least 32"]);
    expect(problems.join("\n")).not.toContain(shortSecret);
  });
});

describe("JWT_ISSUER and JWT_AUDIENCE", () => {
  let server: TestServer;
  let open: TestServer;
  beforeAll(async () => {
    [server, open] = await Promise.all([
      startTestServer({ JWT_HS256_SECRET_FILE: secretFile, JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE }),
      startTestServer({ JWT_HS256_SECRET_FILE: secretFile }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([server?.close(), open?.close()]);
  });

  it("accepts a token with the configured iss and aud (aud alone or among others)", async () => {
    const right = await token({ sub: "right", iss: ISSUER, aud: AUDIENCE });
    expect(await startWith(server, right, "iss-aud-ok")).toBe("iss-aud-ok");
    const among = await token({ sub: "among", iss: ISSUER, aud: ["another-api", AUDIENCE] });
    expect(await startWith(server, among, "aud-among")).toBe("aud-among");
  });

  it("refuses a token from another issuer", async () => {
    const wrong = await token({ sub: "wrong-iss", iss: `${ISSUER}/other`, aud: AUDIENCE });
    expect(await refusal(bearer(server, wrong).getStream({ streamId: "s" }))).toEqual(INVALID);
  });

  it("refuses a token for another audience", async () => {
    const wrong = await token({ sub: "wrong-aud", iss: ISSUER, aud: "another-api" });
    expect(await refusal(bearer(server, wrong).getStream({ streamId: "s" }))).toEqual(INVALID);
  });

  it("refuses a token without iss, or without aud, when they are required", async () => {
    const noIssuer = await token({ sub: "no-iss", aud: AUDIENCE });
    expect(await refusal(bearer(server, noIssuer).getStream({ streamId: "s" }))).toEqual(INVALID);
    const noAudience = await token({ sub: "no-aud", iss: ISSUER });
    expect(await refusal(bearer(server, noAudience).getStream({ streamId: "s" }))).toEqual(INVALID);
  });

  it("checks neither when unset: any iss and aud, or none, are accepted", async () => {
    const other = await token({ sub: "any", iss: "https://elsewhere.test", aud: "another-api" });
    expect(await startWith(open, other, "any-iss-aud")).toBe("any-iss-aud");
    expect(await startWith(open, await token({ sub: "none" }), "no-iss-aud")).toBe("no-iss-aud");
  });
});

describe("the 30 s clock tolerance", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ JWT_HS256_SECRET_FILE: secretFile });
  });
  afterAll(() => server?.close());

  it("accepts a token that expired 10 s ago", async () => {
    const late = await token({ sub: "late-10" }, SECRET, { expIn: -10 });
    expect(await startWith(server, late, "exp-10")).toBe("exp-10");
  });

  it("refuses a token that expired 60 s ago", async () => {
    const late = await token({ sub: "late-60" }, SECRET, { expIn: -60 });
    expect(await refusal(bearer(server, late).getStream({ streamId: "s" }))).toEqual(INVALID);
  });

  it("accepts a token valid from 10 s ahead (nbf)", async () => {
    const early = await token({ sub: "early-10" }, SECRET, { nbfIn: 10 });
    expect(await startWith(server, early, "nbf-10")).toBe("nbf-10");
  });

  it("refuses a token valid only from 60 s ahead (nbf)", async () => {
    const early = await token({ sub: "early-60" }, SECRET, { nbfIn: 60 });
    expect(await refusal(bearer(server, early).getStream({ streamId: "s" }))).toEqual(INVALID);
  });
});
