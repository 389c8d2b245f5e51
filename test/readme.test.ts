/**
 * The README's "Use it" examples, run exactly as written (only the port is
 * changed to the test server's) with curl, grpcurl and buf curl, with the
 * server's API key in STREAMGATE_API_KEY as the README tells the reader to
 * export it: a README example that does not work is a bug.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startTestServer, type TestServer } from "./support/server.js";

/** The key the README's reader would have exported as STREAMGATE_API_KEY. */
const README_KEY = "readme-key-0123456789abcdef";
/** The admin key of the AdminService examples, STREAMGATE_ADMIN_KEY. */
const README_ADMIN_KEY = "readme-admin-key-0123456789abcdef";

const root = resolve(import.meta.dirname, "..");
const toolsBin = resolve(root, ".tools/bin");

let server: TestServer;
beforeAll(async () => {
  if (!existsSync(resolve(toolsBin, "grpcurl"))) {
    throw new Error("grpcurl is missing: run `bash scripts/tools.sh` (npm test does)");
  }
  server = await startTestServer({ API_KEYS: `reader:${README_KEY}`, ADMIN_API_KEYS: `operator:${README_ADMIN_KEY}` });
});
afterAll(() => server?.close());

/**
 * The shell commands of the README's "Use it" section, continuation lines
 * joined; the `export STREAMGATE_API_KEY=...` line is left out, as the test
 * sets the variable itself (each command runs in its own shell).
 */
function readmeCommands(from = "## Use it", to = "### The API"): string[] {
  const readme = readFileSync(resolve(root, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf(from), readme.indexOf(to));
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
  return commands.filter((command) => !command.startsWith("export STREAMGATE_API_KEY="));
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
  const tenants = await startTestServer({ API_KEYS: `ingest@acme:${README_KEY}, dashboard@acme:${watchKey} streams:read` });
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
