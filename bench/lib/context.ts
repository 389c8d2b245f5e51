/**
 * What every scenario gets: the run's mode and durations, the brokers to run
 * on, how to start a streamgate server, and the results so far (baselines run
 * first, so scenarios can compute their ratios).
 */

import type { StreamgateServer } from "./processes.js";
import type { BenchResult } from "./result.js";

/** The brokers a scenario runs on. */
export type BrokerKind = "memory" | "kafka";

/** The run's context. */
export interface BenchContext {
  /** Smoke mode (the test command's): every scenario, tiny and fast; figures mean nothing. */
  quick: boolean;
  /** Seconds each load phase lasts. */
  durationSec: number;
  /** Seconds of unmeasured load before each measured ghz phase (0 in smoke mode). */
  warmupSec: number;
  /** The Kafka bootstrap address (the bench's own broker, or KAFKA_BROKERS). */
  kafkaBrokers: string;
  brokers: BrokerKind[];
  /** Starts streamgate (the real entry point, a child process) on `broker` with `env` added. */
  startServer(broker: BrokerKind, env?: Record<string, string>): Promise<StreamgateServer>;
  /** Results so far, by scenario and broker ("scenario@broker"). */
  results: Map<string, BenchResult>;
  /** Prints a progress line. */
  log(message: string): void;
}

/** A row a scenario declares it produces: the scenario name, broker and payload size of a {@link BenchResult}. */
export interface RowKey {
  scenario: string;
  /** A broker, or "-" for a baseline with no broker. */
  broker: BrokerKind | "-";
  payloadBytes: number;
}

/** A scenario: a name to select it by, and what it measures. */
export interface Scenario {
  name: string;
  description: string;
  /**
   * Every row {@link run} returns when run on `brokers`, and no other: run.ts fails a scenario
   * whose rows differ from it, and the bench smoke test (test/bench-smoke.test.ts) requires each
   * declared row in the quick run's results.json, so the list of rows cannot drift from the code.
   * Built from the same names and sizes `run` uses for its rows.
   */
  rows(brokers: readonly BrokerKind[]): RowKey[];
  /** Runs and returns its rows (one per broker, payload...). */
  run(context: BenchContext): Promise<BenchResult[]>;
}

/** The key results are stored under in {@link BenchContext.results}. */
export function resultKey(scenario: string, broker: string, payloadBytes = 0): string {
  return `${scenario}@${broker}${payloadBytes ? `/${payloadBytes}` : ""}`;
}

/** The {@link resultKey} of a row, declared or measured. */
export function rowKey(row: { scenario: string; broker: string; payloadBytes: number }): string {
  return resultKey(row.scenario, row.broker, row.payloadBytes);
}

/** One row named `scenario` with `payloadBytes` per broker: the rows of a scenario that measures one figure on each. */
export function onEachBroker(brokers: readonly BrokerKind[], scenario: string, payloadBytes: number): RowKey[] {
  return brokers.map((broker) => ({ scenario, broker, payloadBytes }));
}

/**
 * How `results` differ from what `scenario` declares for `brokers` (as row keys): declared rows
 * missing from them, and rows in them that it does not declare (or gives twice).
 */
export function diffRows(
  scenario: Scenario,
  brokers: readonly BrokerKind[],
  results: readonly BenchResult[],
): { missing: string[]; undeclared: string[] } {
  const declared = scenario.rows(brokers).map(rowKey);
  const made = results.map(rowKey);
  const undeclared = made.filter((key, index) => !declared.includes(key) || made.indexOf(key) !== index);
  return { missing: declared.filter((key) => !made.includes(key)), undeclared };
}
