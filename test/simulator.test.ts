/**
 * The traffic simulator (`npm run simulate`) as a user runs it, against a real
 * server with a low per-client rate limit: with three API keys, every call
 * sent ends allowed, blocked or in error, some are blocked, progress lines
 * come on stderr, and the server saw each key as its own client with exactly
 * the counts the simulator reports (its limiter metrics); with JWTs minted per
 * client, the server's live stats show each `sub` likewise. Ctrl-C still
 * prints the summary; bad options exit 2, a refused key and an unreachable
 * server exit 1, each with a message saying so. And the option rules, as pure
 * parsing.
 */
import { createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseOptions, UsageError } from "../simulator/options.js";
import type { Summary } from "../simulator/summary.js";
import { finished, run, spawnTool } from "./support/clients-cli.js";
import { adminClient, startTestServer, type TestServer, take } from "./support/server.js";

const KEYS = {
  "sim-a": "sim-key-a-0123456789abcdef",
  "sim-b": "sim-key-b-0123456789abcdef",
  "sim-c": "sim-key-c-0123456789abcdef",
};
const ADMIN_KEY = "sim-admin-key-0123456789abcdef";
const JWT_SECRET = "sim-test-hs256-secret-0123456789abcdef";

/** The simulator's command, run with node and tsx as `npm run simulate` does. */
const SIMULATOR = [process.execPath, ["--import", "tsx", "simulator/main.ts"]] as const;

/** A progress line as the simulator prints one on stderr (not a terminal): one per second. */
const PROGRESS =
  /^\s*\d+\.\d\/[\d.]+ s {2}offered [\d.]+\/s {2}allowed [\d.]+\/s {2}blocked [\d.]+\/s {2}errors \d+ {2}p50 .+ {2}p99 .+ {2}in flight \d+$/gm;

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    API_KEYS: Object.entries(KEYS)
      .map(([name, key]) => `${name}:${key}`)
      .join(","),
    ADMIN_API_KEYS: `ops:${ADMIN_KEY}`,
    JWT_HS256_SECRET: JWT_SECRET,
    CLIENT_RATE_LIMIT_RPS: "5",
    CLIENT_RATE_LIMIT_BURST: "5",
  });
});
afterAll(() => server?.close());

/** Runs the simulator against the server with `args` to its end. */
function simulate(...args: string[]) {
  return run(SIMULATOR[0], [...SIMULATOR[1], "--url", server.baseUrl, ...args], { timeoutMs: 60_000 });
}

/** The server's value of the limiter counter for `client`'s `result` ("allowed" or "denied"); each key here is a tenant of its own, named by it. */
async function limiterCount(client: string, result: string): Promise<number> {
  const text = await (await fetch(`${server.baseUrl}/metrics`)).text();
  const line = text
    .split("\n")
    .find((l) =>
      l.startsWith(
        `streamgate_limiter_requests_total{result="${result}",limit="client",client="${client}",tenant="${client}"}`,
      ),
    );
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** Every call sent ended allowed, blocked or in error, in the totals and for each client. */
function expectEveryCallCounted(summary: Summary): void {
  expect(summary.sent).toBe(summary.allowed + summary.blocked + summary.errorCount);
  expect(summary.sent + summary.notSent).toBe(summary.offered);
  for (const client of summary.perClient) expect(client.sent).toBe(client.allowed + client.blocked + client.errorCount);
}

describe("a run with three API keys", () => {
  it("reports every call, blocks some, shows progress, and each key reached the server as its own client", {
    timeout: 90_000,
  }, async () => {
    const result = await simulate(
      "--rps",
      "60",
      "--duration",
      "2.5",
      "--clients",
      "3",
      "--keys",
      Object.values(KEYS).join(","),
      "--json",
    );
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout) as Summary;
    expectEveryCallCounted(summary);
    expect(summary.sent).toBeGreaterThan(0);
    expect(summary.blocked).toBeGreaterThan(0);
    expect(summary.errors).toEqual({});
    expect(summary.perClient.map((c) => [c.client, c.identity, c.streamId])).toEqual([
      [1, "key 1", "sim-1"],
      [2, "key 2", "sim-2"],
      [3, "key 3", "sim-3"],
    ]);
    expect(result.stderr.match(PROGRESS)?.length ?? 0).toBeGreaterThanOrEqual(1);

    // The server's own count per key name: its refusals are exactly the client's blocked calls, and
    // it let through the client's allowed calls and the StartStream that opened its stream.
    const names = Object.keys(KEYS);
    for (const [i, client] of summary.perClient.entries()) {
      expect(await limiterCount(names[i]!, "denied"), names[i]).toBe(client.blocked);
      expect(await limiterCount(names[i]!, "allowed"), names[i]).toBe(client.allowed + 1);
    }
  });
});

describe("a run with JWTs", () => {
  it("mints one token per client, and the server knows each by its sub", { timeout: 90_000 }, async () => {
    const result = await simulate(
      "--rps",
      "45",
      "--duration",
      "2",
      "--clients",
      "3",
      "--jwt-secret",
      JWT_SECRET,
      "--json",
    );
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout) as Summary;
    expectEveryCallCounted(summary);
    expect(summary.perClient.map((c) => c.identity)).toEqual(["sub sim-1", "sub sim-2", "sub sim-3"]);

    // The live stats' busiest clients of the last minute: each sub, with the simulator's counts (plus its StartStream).
    const [snapshot] = await take(adminClient(server, "grpc", ADMIN_KEY).watchStats({ intervalMs: 100 }), 1);
    const top = new Map(
      snapshot!.stats!.topClients.map((c) => [c.client, { allowed: Number(c.allowed), blocked: Number(c.blocked) }]),
    );
    for (const client of summary.perClient) {
      expect(top.get(`sim-${client.client}`), `sim-${client.client}`).toEqual({
        allowed: client.allowed + 1,
        blocked: client.blocked,
      });
    }
  });
});

describe("stopping and failing", () => {
  it("prints the summary when stopped with Ctrl-C", { timeout: 90_000 }, async () => {
    const child = spawnTool(SIMULATOR[0], [
      ...SIMULATOR[1],
      "--url",
      server.baseUrl,
      "--duration",
      "600",
      "--rps",
      "20",
      "--keys",
      KEYS["sim-a"],
      "--clients",
      "1",
      "--json",
    ]);
    const ended = finished(child, 60_000);
    // Once the first progress line is out, the run is under way.
    let stderr = "";
    await new Promise<void>((resolve) => {
      child.stderr!.on("data", (chunk: string) => {
        stderr += chunk;
        if (/offered .* in flight \d+\n/.test(stderr)) resolve();
      });
      child.once("close", () => resolve());
    });
    child.kill("SIGINT");
    const result = await ended;
    expect(result.code, stderr + result.stderr).toBe(130);
    const summary = JSON.parse(result.stdout) as Summary;
    expect(summary.stopped).toBe(true);
    expect(summary.sent).toBeGreaterThan(0);
    expectEveryCallCounted(summary);
  });

  it("exits 2 naming the option on a bad value", async () => {
    const result = await simulate("--rps", "lots", "--keys", KEYS["sim-a"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--rps="lots" must be a number greater than 0');
    expect(result.stdout).toBe("");
  });

  it("exits 1 saying the server refused a wrong key", async () => {
    const result = await simulate("--keys", "not-a-key-of-this-server", "--clients", "1", "--duration", "1");
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("the server refused the key: unauthenticated");
    expect(result.stdout).toBe("");
  });

  it("exits 1 saying the server could not be reached", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as { port: number };
    await new Promise((resolve) => closed.close(resolve));
    const result = await run(
      SIMULATOR[0],
      [...SIMULATOR[1], "--url", `http://127.0.0.1:${port}`, "--keys", KEYS["sim-a"], "--duration", "1"],
      {
        timeoutMs: 60_000,
      },
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`could not reach the server at http://127.0.0.1:${port}: unavailable`);
  });
});

describe("options", () => {
  const problemsOf = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
    try {
      parseOptions(argv, env);
    } catch (error) {
      if (error instanceof UsageError) return error.problems;
      throw error;
    }
    return [];
  };

  it("has defaults, and takes the URL and keys from the environment", () => {
    const parsed = parseOptions([], { STREAMGATE_URL: "http://gateway:9090/", STREAMGATE_API_KEYS: "k1, k2,k3" });
    expect(parsed).toEqual({
      help: false,
      warnings: [],
      options: {
        url: "http://gateway:9090",
        pattern: "steady",
        rps: 20,
        duration: 30,
        clients: 3,
        period: undefined,
        method: "send",
        credentials: { kind: "keys", keys: ["k1", "k2", "k3"] },
        maxInFlight: 2000,
        json: false,
      },
    });
  });

  it("warns once when clients outnumber keys, as they then share identities", () => {
    const parsed = parseOptions(["--keys", "k1,k2", "--clients", "5"], {});
    expect(parsed.help === false && parsed.warnings).toEqual([
      "2 keys for 5 clients: client i uses key i mod 2, so the server sees 2 identities (give one key per client for 5)",
    ]);
  });

  it("names each bad option", () => {
    expect(problemsOf(["--pattern", "zigzag", "--clients", "2.5", "--keys", "k"])).toEqual([
      '--pattern="zigzag" is not one of steady, burst, wave',
      '--clients="2.5" must be a whole number from 1 to 1000',
    ]);
    expect(problemsOf(["--url", "ftp://x", "--keys", "k"])).toEqual([
      '--url="ftp://x" must be an http:// or https:// URL, e.g. http://127.0.0.1:8080',
    ]);
    expect(problemsOf(["--pattern", "steady", "--period", "3", "--keys", "k"])).toEqual([
      "--period applies to the burst and wave patterns, not steady",
    ]);
    expect(problemsOf(["--pattern", "burst", "--period", "1", "--keys", "k"])).toEqual([
      '--period="1" must be longer than the burst (1 s)',
    ]);
    expect(problemsOf(["--keys", "k", "--jwt-secret", JWT_SECRET])).toEqual([
      "--keys and --jwt-secret are exclusive: give one",
    ]);
    expect(problemsOf(["--jwt-secret", "short"])).toEqual([
      "--jwt-secret: the secret is 5 bytes; HS256 needs at least 32 (as the server)",
    ]);
    expect(problemsOf([])).toEqual([
      "no credential: give --keys (or set STREAMGATE_API_KEYS) or --jwt-secret (or set JWT_HS256_SECRET)",
    ]);
    expect(problemsOf(["--speed", "9"])).toEqual(["unknown option --speed"]);
  });

  it("mints JWTs from JWT_HS256_SECRET with the issuer and audience the server may require", () => {
    const parsed = parseOptions([], { JWT_HS256_SECRET: JWT_SECRET, JWT_ISSUER: "me", JWT_AUDIENCE: "gw" });
    expect(parsed.help === false && parsed.options.credentials).toEqual({
      kind: "jwt",
      secret: JWT_SECRET,
      issuer: "me",
      audience: "gw",
    });
    // Read as the server reads them: trimmed, and blank is unset.
    const padded = parseOptions([], { JWT_HS256_SECRET: JWT_SECRET, JWT_ISSUER: " me ", JWT_AUDIENCE: "  " });
    expect(padded.help === false && padded.options.credentials).toEqual({
      kind: "jwt",
      secret: JWT_SECRET,
      issuer: "me",
      audience: undefined,
    });
  });
});
