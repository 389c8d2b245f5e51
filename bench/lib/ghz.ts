/**
 * ghz, the gRPC load generator: installed by the bench itself (`go install` of
 * a pinned version into .tools/bin, reused when present), run against a
 * server with the project's protos, its JSON report read back.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { ROOT, type StreamgateServer } from "./processes.js";
import { type BenchResult, type Latency, ms } from "./result.js";
import { cpuMeter } from "./watch.js";

const GHZ_VERSION = "v0.120.0";
const TOOLS_BIN = join(ROOT, ".tools/bin");
const GHZ = join(TOOLS_BIN, "ghz");
const VERSION_FILE = join(ROOT, ".tools/ghz.version");

function exec(file: string, args: string[], env: Record<string, string> = {}, timeoutMs = 600_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024, timeout: timeoutMs },
      (error, stdout, stderr) =>
        error
          ? reject(new Error(`${file} ${args.join(" ")} failed: ${error.message}\n${stdout}${stderr}`))
          : resolve(stdout),
    );
  });
}

/** Installs ghz unless the pinned version is already there. */
export async function ensureGhz(): Promise<string> {
  if (existsSync(GHZ) && existsSync(VERSION_FILE) && readFileSync(VERSION_FILE, "utf8").trim() === GHZ_VERSION)
    return GHZ;
  try {
    await exec("go", ["version"]);
  } catch {
    throw new Error("bench: Go is needed to install ghz (go install); none found on PATH");
  }
  process.stderr.write(`bench: installing ghz ${GHZ_VERSION} (go install)\n`);
  await exec("go", ["install", `github.com/bojand/ghz/cmd/ghz@${GHZ_VERSION}`], {
    GOBIN: TOOLS_BIN,
    GOFLAGS: "-mod=mod",
  });
  writeFileSync(VERSION_FILE, `${GHZ_VERSION}\n`);
  return GHZ;
}

/** What one ghz run measured. */
export interface GhzReport {
  /** Calls per second. */
  rps: number;
  count: number;
  /** Seconds the run took. */
  seconds: number;
  latencyMs: Latency;
  /** Calls that did not end OK. */
  errors: number;
  /** Error messages and their counts, as ghz reports them. */
  errorDistribution: Record<string, number>;
}

/** A ghz run: which call, with what, how hard. */
export interface GhzRun {
  port: number;
  /** "streamgate.v1.StreamService.SendData", or a baseline's method. */
  call: string;
  /** The request (JSON), or for a client stream an array of messages. */
  data: unknown;
  concurrency: number;
  /** Seconds to run (ghz -z). */
  durationSec: number;
  /** Connections to spread the workers over (ghz --connections). */
  connections?: number;
  /** Proto file (under proto/) declaring the call. */
  proto?: string;
  metadata?: Record<string, string>;
}

/** Runs ghz and reads its JSON report. */
export async function runGhz(run: GhzRun): Promise<GhzReport> {
  const ghz = await ensureGhz();
  const dataFile = join(await mkdtemp(join(tmpdir(), "streamgate-ghz-")), "data.json");
  writeFileSync(dataFile, JSON.stringify(run.data));
  const args = [
    "--insecure",
    "--proto",
    join(ROOT, "proto", run.proto ?? "streamgate/v1/stream_service.proto"),
    "--import-paths",
    join(ROOT, "proto"),
    "--call",
    run.call,
    // A file, not an argument: a client stream's messages can exceed the argument size limit.
    "--data-file",
    dataFile,
    "--concurrency",
    String(run.concurrency),
    "--connections",
    String(run.connections ?? Math.max(1, Math.min(run.concurrency, 4))),
    "--duration",
    `${run.durationSec}s`,
    // Every call started counts; none is cut short at the end and counted as an error.
    "--duration-stop",
    "wait",
    "--total",
    "100000000",
    "--format",
    "json",
    ...(run.metadata ? ["--metadata", JSON.stringify(run.metadata)] : []),
    `127.0.0.1:${run.port}`,
  ];
  let output: string;
  try {
    output = await exec(ghz, args);
  } finally {
    rmSync(dirname(dataFile), { recursive: true, force: true });
  }
  const report = JSON.parse(output) as {
    count: number;
    total: number;
    rps: number;
    slowest: number;
    statusCodeDistribution?: Record<string, number>;
    errorDistribution?: Record<string, number>;
    latencyDistribution?: Array<{ percentage: number; latency: number }> | null;
  };
  const at = (percentage: number) =>
    ms(report.latencyDistribution?.find((entry) => entry.percentage === percentage)?.latency ?? 0);
  const ok = report.statusCodeDistribution?.OK ?? 0;
  return {
    rps: report.rps,
    count: report.count,
    seconds: report.total / 1e9,
    latencyMs: { p50: at(50), p95: at(95), p99: at(99), max: ms(report.slowest) },
    errors: report.count - ok,
    errorDistribution: report.errorDistribution ?? {},
  };
}

/**
 * Runs `run` against `server` for `seconds`, measuring nothing. Before each
 * measured phase: a fresh server runs its first seconds in the interpreter,
 * before the JIT has compiled its hot paths, and a new call or payload warms
 * paths of its own.
 */
export async function warmUp(
  server: StreamgateServer,
  run: Omit<GhzRun, "port" | "durationSec">,
  seconds: number,
): Promise<void> {
  if (seconds > 0) await runGhz({ ...run, durationSec: seconds, port: server.port });
}

/** A ghz report with the server's CPU time over the run. */
export type MeasuredReport = GhzReport & { serverCpuSeconds: number };

/** {@link runGhz} against `server`, after `warmupSec` of {@link warmUp}, with the server's CPU time over the measured run. */
export async function runGhzOn(
  server: StreamgateServer,
  run: Omit<GhzRun, "port">,
  warmupSec = 0,
): Promise<MeasuredReport> {
  await warmUp(server, run, warmupSec);
  const cpu = await cpuMeter(server);
  const report = await runGhz({ ...run, port: server.port });
  return { ...report, serverCpuSeconds: (await cpu.read()).server };
}

/** The row of a unary ghz run: its rate, latency, errors and the server's CPU time per call. */
export function unaryRow(
  scenario: string,
  broker: string,
  concurrency: number,
  payloadBytes: number,
  report: MeasuredReport,
): BenchResult {
  return {
    scenario,
    broker,
    concurrency,
    payloadBytes,
    throughput: report.rps,
    unit: "req/s",
    latencyMs: report.latencyMs,
    errors: report.errors,
    extra: { "server CPU µs/call": Math.round((report.serverCpuSeconds / report.count) * 1e6) },
  };
}
