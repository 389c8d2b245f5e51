/**
 * The README's "Use it" examples, run exactly as written (only the port is
 * changed to the test server's) with curl, grpcurl and buf curl, with the
 * server's API key in STREAMGATE_API_KEY and its admin key in
 * STREAMGATE_ADMIN_KEY as the README tells the reader to export them; the
 * Tenants examples likewise; and the Traffic simulator example (shortened to
 * 2 s) on a server started with the example's environment, whose admin key,
 * the one the README says to give the dashboard, is then accepted by the
 * dashboard's AdminService calls: a README example that does not work is a bug.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { adminClient, startTestServer, type TestServer, take } from "./support/server.js";

/** The key the README's reader would have exported as STREAMGATE_API_KEY. */
const README_KEY = "readme-key-0123456789abcdef";
/** The admin key of the AdminService examples, STREAMGATE_ADMIN_KEY. */
const README_ADMIN_KEY = "readme-admin-key-0123456789abcdef";

const root = resolve(import.meta.dirname, "..");
const toolsBin = resolve(root, ".tools/bin");

let server: TestServer;
beforeAll(async () => {
  if (!existsSync(resolve(toolsBin, "grpcurl"))) {
    throw new Error("grpcurl is missing: run `npm run tools` (npm test installs it too)");
  }
  server = await startTestServer({ API_KEYS: `reader:${README_KEY}`, ADMIN_API_KEYS: `operator:${README_ADMIN_KEY}` });
});
afterAll(() => server?.close());

/** The README's text from `from` up to `to`. */
function readmeSection(from: string, to: string): string {
  const readme = readFileSync(resolve(root, "README.md"), "utf8");
  const start = readme.indexOf(from);
  expect(start, from).toBeGreaterThanOrEqual(0);
  return readme.slice(start, readme.indexOf(to, start));
}

/**
 * The commands that set the reader's shell up, which the test does itself
 * (each command runs in its own shell, with the keys set and .tools/bin on
 * PATH): `export STREAMGATE_...=<key>`, `npm run tools` (npm test has
 * installed the tools) and `export PATH=...`.
 */
const SETUP = /^(export STREAMGATE_[A-Z_]*=|export PATH=|npm run tools\b)/;

/** The shell commands of a README section, continuation lines joined, the {@link SETUP} lines left out. */
function readmeCommands(from = "## Use it", to = "### The API"): string[] {
  const section = readmeSection(from, to);
  const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1]!);
  const commands: string[] = [];
  for (const block of blocks) {
    let current = "";
    for (const line of block.split("\n")) {
      if (current === "" && (line.trim() === "" || line.trimStart().startsWith("#"))) continue;
      current += `${line}\n`;
      if (!/[\\|]\s*$/.test(line)) {
        commands.push(current.trim());
        current = "";
      }
    }
  }
  return commands.filter((command) => !SETUP.test(command));
}

/**
 * Runs one command in bash from the project root, with .tools/bin on PATH;
 * `until` ends it (SIGTERM) once its output so far satisfies it.
 */
function run(
  command: string,
  until?: (stdout: string) => boolean,
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn("bash", ["-c", `exec ${command}`], {
      cwd: root,
      env: {
        ...process.env,
        PATH: `${toolsBin}:${process.env.PATH}`,
        STREAMGATE_API_KEY: README_KEY,
        STREAMGATE_ADMIN_KEY: README_ADMIN_KEY,
        ...env,
      },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
      if (until?.(stdout)) child.kill("SIGTERM");
    });
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("close", (code) => done({ code, stdout, stderr }));
  });
}

it("runs every example of the README against a live server", { timeout: 120_000 }, async () => {
  const commands = readmeCommands().map((command) => command.replaceAll(":8080", `:${server.port}`));
  expect(commands.length).toBeGreaterThanOrEqual(10);
  const outputs: string[] = [];
  // The watch runs until the stream is closed by a later example, as a reader would see it.
  let watch: ReturnType<typeof run> | undefined;
  for (const command of commands) {
    if (command.includes("WatchResults")) {
      watch = run(command);
      continue;
    }
    const result = await run(command);
    expect(result, `${command}\n${result.stderr}`).toMatchObject({ code: 0 });
    outputs.push(result.stdout);
  }
  const all = outputs.join("\n");
  expect(all).toContain('"cursor"');
  expect(all).toContain("streamgate.v1.StreamService");
  expect(all).toContain('"accepted": "2"');
  expect(all).toContain("STREAM_STATE_CLOSED");

  expect(watch).toBeDefined();
  const watched = await watch!;
  expect(watched.code, watched.stderr).toBe(0);
  // Every record the examples sent, in order.
  const temps = [...watched.stdout.matchAll(/"temp": ([\d.]+)/g)].map((match) => Number(match[1]));
  expect(temps).toEqual([21.5, 22, 23, 24.5, 25]);
});

it("runs the AdminService examples of the README", async () => {
  const commands = readmeCommands("`streamgate.v1.AdminService`", "Also served:").map((command) =>
    command.replaceAll(":8080", `:${server.port}`),
  );
  expect(commands).toHaveLength(2);
  const [update, watch] = commands as [string, string];
  const updated = await run(update);
  expect(updated, `${update}\n${updated.stderr}`).toMatchObject({ code: 0 });
  expect(JSON.parse(updated.stdout)).toEqual({ limits: { global: { ratePerSecond: 100, burst: 200 } } });

  // The stats stream runs until stopped: stopped once it has shown the limits just set.
  const watched = await run(watch, (stdout) => stdout.includes('"burst": 200'));
  expect(watched.stdout, watched.stderr).toContain('"globalBurst": 200');
});

it("runs the Tenants examples of the README: a watch-only key reads and is refused a send", async () => {
  const watchKey = "readme-watch-key-0123456789abcdef";
  // The keys as the section configures them.
  const tenants = await startTestServer({
    API_KEYS: `ingest@acme:${README_KEY}, dashboard@acme:${watchKey} streams:read`,
  });
  try {
    const commands = readmeCommands("## Tenants", "**The admin role**").map((command) =>
      command.replaceAll(":8080", `:${tenants.port}`),
    );
    expect(commands).toHaveLength(4);
    const outputs: string[] = [];
    for (const command of commands) {
      const result = await run(command, undefined, { STREAMGATE_WATCH_KEY: watchKey });
      expect(result, `${command}\n${result.stderr}`).toMatchObject({ code: 0 });
      outputs.push(result.stdout);
    }
    const [started, listed, got, refused] = outputs as [string, string, string, string];
    expect(JSON.parse(started)).toMatchObject({ created: true, stream: { streamId: "line-4" } });
    expect(JSON.parse(listed)).toMatchObject({ streams: [{ streamId: "line-4", labels: { site: "north" } }] });
    expect(JSON.parse(got)).toMatchObject({ stream: { streamId: "line-4", state: "STREAM_STATE_OPEN" } });
    expect(JSON.parse(refused)).toEqual({
      code: "permission_denied",
      message: 'client "dashboard" may not call SendData: it needs the scope streams:write',
    });
  } finally {
    await tenants.close();
  }
});

it("runs the Traffic simulator example, and the dashboard's admin calls answer its admin key", {
  timeout: 90_000,
}, async () => {
  const commands = readmeCommands("## Traffic simulator", "| option |");
  expect(commands).toHaveLength(2);
  const [start, simulate] = commands as [string, string];
  // The server as the example starts it: its variable assignments, then `npm start`.
  const words = start.replace(/\s+#.*$/, "").split(/\s+/);
  expect(words.slice(-2)).toEqual(["npm", "start"]);
  const env = Object.fromEntries(
    words.slice(0, -2).map((word) => {
      expect(word).toMatch(/^[A-Z_]+=\S+$/);
      return [word.slice(0, word.indexOf("=")), word.slice(word.indexOf("=") + 1)];
    }),
  );
  // The key the README says to give the dashboard is the example's admin key.
  const adminKey = /give it the admin key, `([^`]+)`/.exec(readmeSection("## Traffic simulator", "| option |"))?.[1];
  expect(adminKey).toBeDefined();
  expect(env.ADMIN_API_KEYS?.split(",").map((entry) => entry.slice(entry.indexOf(":") + 1).split(" ")[0])).toContain(
    adminKey,
  );

  const simulated = await startTestServer(env);
  try {
    // The example's load for 2 s instead of 30, to the test server (the simulator's default URL is port 8080's).
    const short = simulate.replace("--duration 30", "--duration 2");
    expect(short).not.toBe(simulate);
    const result = await run(short, undefined, { STREAMGATE_URL: simulated.baseUrl });
    expect(result, `${short}\n${result.stderr}`).toMatchObject({ code: 0 });
    expect(Number(/ blocked (\d+) /.exec(result.stdout)?.[1])).toBeGreaterThan(0);

    // The page is served, and its calls (gRPC-Web, the key as x-api-key) answer OK with the admin key.
    expect((await fetch(`${simulated.baseUrl}/dashboard/`)).status).toBe(200);
    const admin = adminClient(simulated, "grpc-web", adminKey!);
    const { limits } = await admin.getLimits({});
    expect(limits?.perClient?.ratePerSecond).toBe(Number(env.CLIENT_RATE_LIMIT_RPS));
    const [snapshot] = await take(admin.watchStats({ intervalMs: 100 }), 1);
    expect(snapshot!.stats?.topClients.map((client) => client.client).sort()).toEqual(["alice", "bob", "carol"]);
  } finally {
    await simulated.close();
  }
});
