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

/** A scenario: a name to select it by, and what it measures. */
export interface Scenario {
  name: string;
  description: string;
  /** Runs and returns its rows (one per broker, payload...). */
  run(context: BenchContext): Promise<BenchResult[]>;
}

/** The key results are stored under in {@link BenchContext.results}. */
export function resultKey(scenario: string, broker: string, payloadBytes = 0): string {
  return `${scenario}@${broker}${payloadBytes ? `/${payloadBytes}` : ""}`;
}
