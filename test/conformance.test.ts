/**
 * The Connect conformance suite against streamgate's RPC stack, in server mode:
 * the runner (connectconformance, installed by scripts/tools.sh at the version
 * test/conformance/proto is copied from) starts test/conformance/server.ts, a
 * streamgate (startApp: the one-port listener, the edge, the interceptor chain,
 * the patched connect adapter) serving the ConformanceService, once per HTTP
 * version, protocol and TLS, and drives its thousands of cases through it with
 * its reference clients (connect-go and grpc-go). What streamgate supports is
 * test/conformance/config.yaml; the cases it fails on purpose, each with its
 * reason, test/conformance/known-failing.txt (the runner fails should one pass).
 * The embedded broker only; no Kafka, no Redis.
 */
import { spawn } from "node:child_process";
import { accessSync, constants, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { PROJECT_DIR } from "./support/clients-cli.js";

const RUNNER = join(PROJECT_DIR, ".tools/bin/connectconformance");

/**
 * Two servers at a time, four RPCs at a time to each: about 30 s for the whole
 * suite on two cores (one server at a time: about 40 s). More servers at once
 * gain nothing there, and each must start within the runner's 10 s.
 */
const ARGS = [
  "--mode",
  "server",
  "--conf",
  "test/conformance/config.yaml",
  "--known-failing",
  "@test/conformance/known-failing.txt",
  "--max-servers",
  "2",
  "--parallel",
  "4",
  "--",
  process.execPath,
  "--import",
  "tsx",
  "test/conformance/server.ts",
];

/** The runner's whole output, kept for reading after the run (scripts/test.sh keeps test-artifacts/). */
const LOG_FILE = join(PROJECT_DIR, "test-artifacts/conformance.log");

/** The runner is stopped (SIGTERM, which stops its servers too) after this long. */
const RUNNER_TIMEOUT_MS = 240_000;

it("passes the Connect conformance suite, but for its known failures", {
  timeout: RUNNER_TIMEOUT_MS + 30_000,
}, async () => {
  try {
    accessSync(RUNNER, constants.X_OK);
  } catch {
    throw new Error(`connectconformance is not installed (looked for ${RUNNER}): run \`bash scripts/tools.sh\``);
  }
  const child = spawn(RUNNER, ARGS, {
    cwd: PROJECT_DIR,
    stdio: ["ignore", "pipe", "pipe"],
    timeout: RUNNER_TIMEOUT_MS,
  });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", resolve);
  });
  mkdirSync(join(PROJECT_DIR, "test-artifacts"), { recursive: true });
  writeFileSync(LOG_FILE, output);
  // Enough to read the failures by, not the whole log of thousands of cases (that is in LOG_FILE).
  const log = `${output.length > 20_000 ? `…${output.slice(-20_000)}` : output}\n(the whole output: ${LOG_FILE})`;

  const summary = /Total cases: (\d+)\n(\d+) passed, (\d+) failed/.exec(output);
  expect(summary, log).not.toBeNull();
  const [total, passed, failed] = summary!.slice(1).map(Number) as [number, number, number];
  expect(failed, log).toBe(0);
  expect(passed, log).toBeGreaterThan(0);
  expect(passed, log).toBeLessThanOrEqual(total);
  expect(code, log).toBe(0);
});
