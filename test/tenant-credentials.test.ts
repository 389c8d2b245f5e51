/**
 * Tenants and scopes as credentials carry them: the key-list syntax
 * (`name[@tenant]:key[ scope ...]`), its error messages (never echoing a key),
 * and the JWT tenant and scope claims.
 */

import { type JWTPayload, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config/config.js";
import { ApiKeyStore, parseKeyFile, parseKeyList } from "../src/guard/auth/api-keys.js";
import { createJwtVerifier } from "../src/guard/auth/jwt.js";
import { ALL_SCOPES } from "../src/guard/auth/scopes.js";

function parse(text: string): { store: ApiKeyStore; problems: string[] } {
  const problems: string[] = [];
  return { store: new ApiKeyStore(parseKeyList(text, "API_KEYS", "user", problems)), problems };
}

describe("API key entries", () => {
  it("read the tenant after @ and the scopes after the key; without them, the key's own tenant and every scope", () => {
    const { store, problems } = parse(
      "ingest@acme:key-1, dashboard@acme:key-2 streams:read, bob:key-3, ops@acme:key-4 streams:write  streams:manage",
    );
    expect(problems).toEqual([]);
    expect(store.lookup("key-1")).toEqual({
      client: "ingest",
      tenant: "acme",
      role: "user",
      scopes: ALL_SCOPES,
      configured: true,
    });
    expect(store.lookup("key-2")).toMatchObject({
      client: "dashboard",
      tenant: "acme",
      scopes: new Set(["streams:read"]),
    });
    expect(store.lookup("key-3")).toMatchObject({ client: "bob", tenant: "bob", scopes: ALL_SCOPES });
    expect(store.lookup("key-4")).toMatchObject({
      tenant: "acme",
      scopes: new Set(["streams:write", "streams:manage"]),
    });
  });

  it("read the same syntax from a keys file, with sha256 keys", () => {
    const problems: string[] = [];
    const digest = "a".repeat(64);
    const entries = parseKeyFile(
      `# readers\nviewer@acme:sha256:${digest} streams:read\n`,
      "API_KEYS_FILE",
      "user",
      problems,
    );
    expect(problems).toEqual([]);
    expect(entries).toMatchObject([{ name: "viewer", tenant: "acme", scopes: new Set(["streams:read"]) }]);
  });

  it("refuse a bad tenant or an unknown scope by position and name, never echoing the key", () => {
    const { problems } = parse("a@bad/tenant:secret-1, b@:secret-2, c:secret-3 streams:delete, d:secret-4 secret-part");
    expect(problems).toEqual([
      'API_KEYS entry 1 ("a"): the tenant after "@" must be 1 to 64 of A-Z a-z 0-9 . _ -',
      'API_KEYS entry 2 ("b"): the tenant after "@" must be 1 to 64 of A-Z a-z 0-9 . _ -',
      'API_KEYS entry 3 ("c"): after the key come only scopes (streams:read, streams:write, streams:manage), separated by spaces',
      'API_KEYS entry 4 ("d"): after the key come only scopes (streams:read, streams:write, streams:manage), separated by spaces',
    ]);
    expect(problems.join("\n")).not.toMatch(/secret/);
  });

  it("refuse scopes separated by commas rather than make a key of one", () => {
    expect(parse("reader@acme:key-1 streams:read,streams:write").problems).toEqual([
      "API_KEYS entry 2 is a scope: scopes follow their key separated by spaces, not commas",
    ]);
  });

  it("stop the start with the problem when the configuration has one", () => {
    expect(() => loadConfig({ API_KEYS: "x:key streams:everything" })).toThrow(
      /API_KEYS entry 1 \("x"\): after the key come only scopes/,
    );
  });
});

describe("JWT tenants and scopes", () => {
  const secret = "a-credentials-test-secret-of-32-bytes!!";
  const verify = createJwtVerifier({
    hs256Secret: new TextEncoder().encode(secret),
    jwks: undefined,
    issuer: undefined,
    audience: undefined,
    tenantClaim: "org",
    adminClaim: "role",
    adminValue: "admin",
  });
  const token = (claims: JWTPayload) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256" })
      .setIssuedAt()
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(secret));

  it("take the tenant from the configured claim, else sub", async () => {
    expect(await verify(await token({ sub: "u1", org: "acme" }))).toMatchObject({
      client: "u1",
      tenant: "acme",
      configured: false,
    });
    expect(await verify(await token({ sub: "u2" }))).toMatchObject({ client: "u2", tenant: "u2" });
  });

  it("refuse a tenant that cannot be one", async () => {
    for (const org of ["a/b", "", 42, "x".repeat(65)])
      expect(await verify(await token({ sub: "u", org }))).toBeUndefined();
  });

  it("take the streamgate scopes of the scope claim, a string or an array; absent, every scope", async () => {
    expect((await verify(await token({ sub: "u", scope: "openid streams:read" })))?.scopes).toEqual(
      new Set(["streams:read"]),
    );
    expect((await verify(await token({ sub: "u", scope: ["streams:write", "email"] })))?.scopes).toEqual(
      new Set(["streams:write"]),
    );
    // Present but naming none of streamgate's: no scope at all, not every scope.
    expect((await verify(await token({ sub: "u", scope: "openid" })))?.scopes).toEqual(new Set());
    expect((await verify(await token({ sub: "u" })))?.scopes).toBe(ALL_SCOPES);
    expect(await verify(await token({ sub: "u", scope: 7 }))).toBeUndefined();
  });
});
