/**
 * Writes a run's results: RESULTS.md (tables a reader can scan) and
 * results.json beside it (the same rows, for tools), with the machine, date and
 * commit they were measured on. bench/ANALYSIS.md, written by hand (what the
 * profiles showed, which change bought what), is appended to RESULTS.md.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { ROOT } from "./processes.js";
import type { BenchResult } from "./result.js";

/** Where and when a run happened. */
export interface RunInfo {
  date: string;
  commit: string;
  machine: { cores: number; model: string; memoryGiB: number };
  /** The Node.js version (process.version) that ran the bench and the servers it started (the same executable). */
  node: string;
  quick: boolean;
  durationSec: number;
  scenarios: string[];
}

/** The run's facts. */
export function runInfo(quick: boolean, durationSec: number, scenarios: string[]): RunInfo {
  let commit = "unknown";
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT, encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "src", "bench", "proto"], {
      cwd: ROOT,
      encoding: "utf8",
    });
    if (dirty.trim() !== "") commit += " (with uncommitted changes)";
  } catch {
    // not a git checkout
  }
  return {
    date: new Date().toISOString(),
    commit,
    machine: {
      cores: cpus().length,
      model: cpus()[0]?.model ?? "unknown",
      memoryGiB: Math.round(totalmem() / 2 ** 30),
    },
    node: process.version,
    quick,
    durationSec,
    scenarios,
  };
}

const number = (value: number) =>
  value >= 100 ? Math.round(value).toLocaleString("en-US") : String(Math.round(value * 100) / 100);

function row(result: BenchResult): string {
  const latency = result.latencyMs
    ? `${number(result.latencyMs.p50)} / ${number(result.latencyMs.p95)} / ${number(result.latencyMs.p99)}${result.latencyMs.max === undefined ? "" : ` / ${number(result.latencyMs.max)}`}`
    : "";
  const extra = Object.entries(result.extra ?? {})
    .map(([key, value]) => `${key}: ${typeof value === "number" ? number(value) : value}`)
    .join("; ");
  return [
    result.scenario,
    result.broker,
    result.concurrency,
    result.payloadBytes || "",
    `${number(result.throughput)} ${result.unit}`,
    latency,
    result.errors,
    result.baseline ?? "",
    result.ratio === undefined ? "" : `${Math.round(result.ratio * 100) / 100}×`,
    result.target ? `${result.target.met ? "✅" : "❌"} ${result.target.goal}` : "",
    extra,
  ].join(" | ");
}

/** Writes RESULTS.md and results.json into `dir`. */
export function writeReport(dir: string, info: RunInfo, results: BenchResult[]): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "results.json"), `${JSON.stringify({ ...info, results }, null, 2)}\n`);
  const lines = [
    "# streamgate benchmark results",
    "",
    `Measured ${info.date} on commit ${info.commit}: ${info.machine.cores} cores (${info.machine.model}), ${info.machine.memoryGiB} GiB, Node.js ${info.node ?? "unknown"} (the bench and the servers it starts).`,
    `Load phases of ${info.durationSec} s${info.quick ? " (quick smoke mode: figures mean nothing)" : ""}; load generator, broker and server share the machine.`,
    "Written by `npm run bench`; the same rows are in results.json.",
    "",
    "| scenario | broker | concurrency | payload B | throughput | latency ms p50 / p95 / p99 / max | errors | baseline | ratio | target | notes |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
    ...results.map((result) => `| ${row(result)} |`),
    "",
  ];
  const targets = results.filter((result) => result.target);
  if (targets.length > 0) {
    lines.push("## Targets", "");
    for (const result of targets) {
      const { met, goal, measured } = result.target!;
      lines.push(
        `- ${met ? "met" : "**not met**"}: ${result.scenario} on ${result.broker}: ${goal}; measured ${measured}`,
      );
    }
    lines.push("");
  }
  const analysis = join(ROOT, "bench/ANALYSIS.md");
  if (existsSync(analysis)) lines.push(readFileSync(analysis, "utf8"));
  writeFileSync(join(dir, "RESULTS.md"), lines.join("\n"));
}
