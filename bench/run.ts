/**
 * `npm run bench [-- [--quick] [--broker memory|kafka] [--duration S] [--out DIR] [scenario...]]`
 * `npm run bench -- --report`: rewrites RESULTS.md from results.json (after editing ANALYSIS.md), measuring nothing.
 *
 * Runs the chosen scenarios (all by default), baselines first, on the embedded
 * broker and on Kafka (the bench's own broker from scripts/kafka.sh, or
 * KAFKA_BROKERS), and writes RESULTS.md and results.json into bench/ (or
 * --out). --quick is the smoke mode the test command runs: every scenario,
 * tiny and fast, so the bench cannot rot; its figures mean nothing.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import type { BenchContext, BrokerKind, Scenario } from "./lib/context.js";
import { diffRows, resultKey } from "./lib/context.js";
import { buildServers, type KafkaBroker, ROOT, startKafka, startStreamgate } from "./lib/processes.js";
import { type RunInfo, runInfo, writeReport } from "./lib/report.js";
import type { BenchResult } from "./lib/result.js";
import { SCENARIOS } from "./scenarios/index.js";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    quick: { type: "boolean", default: false },
    broker: { type: "string", multiple: true },
    duration: { type: "string" },
    out: { type: "string" },
    report: { type: "boolean", default: false },
  },
});

if (values.report) {
  const dir = resolve(values.out ?? resolve(ROOT, "bench"));
  const { results: saved, ...info } = JSON.parse(readFileSync(resolve(dir, "results.json"), "utf8")) as RunInfo & {
    results: BenchResult[];
  };
  writeReport(dir, info, saved);
  process.exit(0);
}

const chosen: Scenario[] =
  positionals.length === 0
    ? SCENARIOS
    : positionals.map((name) => {
        const scenario = SCENARIOS.find((candidate) => candidate.name === name);
        if (!scenario) {
          console.error(
            `bench: no scenario ${JSON.stringify(name)}; scenarios: ${SCENARIOS.map((s) => s.name).join(", ")}`,
          );
          process.exit(2);
        }
        return scenario;
      });
const brokers = (values.broker ?? ["memory", "kafka"]) as BrokerKind[];
for (const broker of brokers) {
  if (broker !== "memory" && broker !== "kafka") {
    console.error(`bench: --broker must be memory or kafka, not ${JSON.stringify(broker)}`);
    process.exit(2);
  }
}
const quick = values.quick ?? false;
const durationSec = Number(values.duration ?? (quick ? 1 : 8));
/** Unmeasured load before each measured ghz phase. */
const WARMUP_SEC = 2;
const outDir = resolve(values.out ?? resolve(ROOT, "bench"));

const started = Date.now();
const log = (message: string) =>
  process.stderr.write(`bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s  ${message}\n`);

let kafka: KafkaBroker | undefined;
const kafkaBrokers = async (): Promise<string> => {
  if (process.env.KAFKA_BROKERS) return process.env.KAFKA_BROKERS;
  if (!kafka) {
    log("starting Kafka (scripts/kafka.sh)");
    kafka = await startKafka();
  }
  return kafka.brokers;
};

log("building the servers (tsc -p tsconfig.bench.json)");
await buildServers();

const results = new Map<string, BenchResult>();
const context: BenchContext = {
  quick,
  durationSec,
  warmupSec: quick ? 0 : WARMUP_SEC,
  kafkaBrokers: brokers.includes("kafka") ? await kafkaBrokers() : "",
  brokers,
  results,
  log,
  startServer: (broker, env = {}) =>
    startStreamgate({
      ...(broker === "kafka"
        ? // Topics of their own per server, so no run reads another's records.
          {
            KAFKA_BROKERS: context.kafkaBrokers,
            KAFKA_TOPIC_PREFIX: `bench-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.`,
          }
        : // The embedded broker, even when the bench's own environment has KAFKA_BROKERS (empty is unset).
          { KAFKA_BROKERS: "" }),
      ...env,
    }),
};

const rows: BenchResult[] = [];
let failed = false;
try {
  for (const scenario of chosen) {
    log(`${scenario.name}: ${scenario.description}`);
    try {
      const made = await scenario.run(context);
      for (const result of made) {
        results.set(resultKey(result.scenario, result.broker, result.payloadBytes), result);
        rows.push(result);
        log(
          `  ${result.scenario} ${result.broker}: ${Math.round(result.throughput)} ${result.unit}${result.ratio === undefined ? "" : ` (${result.ratio.toFixed(2)}× ${result.baseline})`}`,
        );
      }
      // Its rows are what it declares (Scenario.rows), which the smoke test checks results.json against.
      const { missing, undeclared } = diffRows(scenario, brokers, made);
      if (missing.length > 0 || undeclared.length > 0) {
        failed = true;
        log(
          `  ${scenario.name} FAILED: its rows differ from its declared rows (Scenario.rows): ` +
            `missing ${missing.join(", ") || "none"}; not declared ${undeclared.join(", ") || "none"}`,
        );
      }
    } catch (error) {
      failed = true;
      log(`  ${scenario.name} FAILED: ${(error as Error).stack ?? String(error)}`);
    }
  }
} finally {
  await kafka?.stop();
}
writeReport(
  outDir,
  runInfo(
    quick,
    durationSec,
    chosen.map((scenario) => scenario.name),
  ),
  rows,
);
log(`wrote ${resolve(outDir, "RESULTS.md")}`);
process.exit(failed ? 1 : 0);
