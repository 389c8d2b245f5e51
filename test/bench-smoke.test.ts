/**
 * The bench's smoke run (`npm run bench -- --quick`): every scenario and
 * baseline runs end to end, on the embedded broker and on the run's Kafka, and
 * writes RESULTS.md and results.json with every row the scenarios declare
 * (Scenario.rows in bench/lib/context.ts, built from the names the scenarios
 * make their rows with; bench/run.ts also fails a scenario whose rows differ
 * from its declaration), so the bench cannot rot and this list cannot drift.
 * Figures are not asserted: speed is measured by `npm run bench`, never in the
 * tests.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, inject, it } from "vitest";
import { type BrokerKind, rowKey } from "../bench/lib/context.js";
import { SCENARIOS } from "../bench/scenarios/index.js";
import { PROJECT_DIR } from "./support/clients-cli.js";

/** The brokers the smoke run measures on: all of them (bench/run.ts's default). */
const BROKERS: BrokerKind[] = ["memory", "kafka"];

interface Row {
  scenario: string;
  broker: string;
  payloadBytes: number;
  throughput: number;
  errors: number;
  baseline?: string;
  ratio?: number;
  target?: { goal: string; met: boolean; measured: string };
  extra?: Record<string, number | string>;
}

it("runs every scenario in quick mode and reports a row for each", { timeout: 240_000 }, async () => {
  const out = await mkdtemp(join(tmpdir(), "streamgate-bench-smoke-"));
  try {
    const child = spawn(process.execPath, ["--import", "tsx", "bench/run.ts", "--quick", "--out", out], {
      cwd: PROJECT_DIR,
      env: { ...process.env, KAFKA_BROKERS: inject("kafkaBrokers") },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let log = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (log += chunk));
    const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
    expect(code, log).toBe(0);

    const report = JSON.parse(await readFile(join(out, "results.json"), "utf8")) as {
      results: Row[];
      scenarios: string[];
      node: string;
    };
    // Every scenario ran, and every row each declares is in the results, once; and nothing else is.
    expect(report.scenarios).toEqual(SCENARIOS.map((scenario) => scenario.name));
    const declared = SCENARIOS.flatMap((scenario) => scenario.rows(BROKERS)).map(rowKey);
    // Each scenario measures something on these brokers: an empty declaration is a mistake, not a pass.
    for (const scenario of SCENARIOS) expect(scenario.rows(BROKERS), scenario.name).not.toEqual([]);
    expect(new Set(declared).size, "rows declared twice").toBe(declared.length);
    const made = report.results.map(rowKey);
    expect(
      declared.filter((key) => !made.includes(key)),
      `declared rows missing from results.json\n${log}`,
    ).toEqual([]);
    expect(
      made.filter((key) => !declared.includes(key)),
      "rows in results.json that no scenario declares",
    ).toEqual([]);
    expect(new Set(made).size, "rows given twice").toBe(made.length);
    for (const row of report.results) {
      expect(row.throughput, `${row.scenario}@${row.broker}`).toBeGreaterThan(0);
      expect(row.errors, `${row.scenario}@${row.broker}`).toBe(0);
    }
    // The SendData rows, on either broker, are measured in rounds beside the bare server, their ratio taken
    // within them, with the server's CPU per call beside the bare server's.
    const sendData = report.results.filter((row) => row.scenario === "senddata");
    expect(sendData.map((row) => `${row.broker}/${row.payloadBytes}`).sort(), log).toEqual([
      "kafka/128",
      "kafka/4096",
      "memory/128",
      "memory/4096",
    ]);
    for (const row of sendData) {
      const what = `senddata@${row.broker}/${row.payloadBytes}`;
      expect(row.baseline, what).toBe("baseline-connect-node");
      expect(row.extra?.["rounds (ratio each)"], what).toBe(`${row.ratio!.toFixed(2)}×`);
      expect(row.extra?.["baseline in the same rounds req/s"], what).toBeGreaterThan(0);
      expect(row.extra?.["server CPU µs/call"], what).toBeGreaterThan(0);
      expect(row.extra?.["baseline server CPU µs/call"], what).toBeGreaterThan(0);
      expect(row.extra?.["server CPU per call vs baseline"], what).toMatch(/^\d+\.\d\d×$/);
      expect(row.target?.goal, what).toBe(
        row.broker === "memory"
          ? "≥ 0.85 × baseline-connect-node, server CPU per call ≤ 1.20 × its"
          : "≥ 0.70 × baseline-connect-node",
      );
    }
    const markdown = await readFile(join(out, "RESULTS.md"), "utf8");
    expect(markdown).toContain("| senddata | memory |");
    expect(markdown).toContain("quick smoke mode");
    expect(markdown).toContain(`Node.js ${report.node}`);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
