/**
 * vitest globalSetup: a real Apache Kafka broker for the test run.
 *
 * With KAFKA_BROKERS set, that broker is used as is (and cannot be stopped by
 * tests). Otherwise `scripts/kafka.sh start` runs a single-node KRaft broker on
 * free loopback ports with a fresh temporary data dir; teardown stops it and
 * removes the dir. A broker that cannot start fails the run with its log tail.
 *
 * Tests read the bootstrap address with `inject("kafkaBrokers")` (also in
 * process.env.STREAMGATE_TEST_KAFKA_BROKERS) and stop/restart the broker with
 * test/support/kafka-control.ts.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";
import { freePorts } from "./ports.js";

/** The environment `scripts/kafka.sh` was started with, to stop and restart the same broker. */
export interface KafkaEnv {
  KAFKA_PORT: string;
  KAFKA_CONTROLLER_PORT: string;
  KAFKA_DATA_DIR: string;
  /** The vitest main process: if it goes away without a teardown, the broker is stopped and its data dir removed. */
  KAFKA_WATCH_PID: string;
  KAFKA_WATCH_REMOVE_DATA: "1";
}

declare module "vitest" {
  export interface ProvidedContext {
    /** Bootstrap address of the test broker, "127.0.0.1:PORT" (or KAFKA_BROKERS as given). */
    kafkaBrokers: string;
    /** How the test broker was started; null for an external broker (KAFKA_BROKERS). */
    kafkaEnv: KafkaEnv | null;
  }
}

export const KAFKA_SCRIPT = fileURLToPath(new URL("../../scripts/kafka.sh", import.meta.url));

/** Bounds a script call: the first start may fetch the jars with Maven (about 30 s) before the 60 s start bound. */
const SCRIPT_TIMEOUT_MS = 240_000;

/** Runs `bash scripts/kafka.sh <command>` with `env` added; rejects with its whole output (the log tail on a failed start). */
export function runKafkaScript(command: "start" | "stop" | "status", env: Partial<KafkaEnv>): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      "bash",
      [KAFKA_SCRIPT, command],
      { env: { ...process.env, ...env }, timeout: SCRIPT_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          const how = error.killed ? `killed after ${SCRIPT_TIMEOUT_MS} ms` : `exit code ${String(error.code)}`;
          reject(new Error(`bash scripts/kafka.sh ${command} failed (${how}):\n${stdout}${stderr}`));
        } else {
          resolve(stdout + stderr);
        }
      },
    );
  });
}

export default async function setup({ provide }: TestProject): Promise<() => Promise<void>> {
  const external = process.env.KAFKA_BROKERS;
  if (external) {
    provide("kafkaBrokers", external);
    provide("kafkaEnv", null);
    process.env.STREAMGATE_TEST_KAFKA_BROKERS = external;
    return async () => {};
  }

  let env: KafkaEnv | undefined;
  // A port taken between choosing it and the broker binding it is the only failure worth another try.
  for (let attempt = 1; env === undefined; attempt++) {
    const [port, controllerPort] = await freePorts(2);
    const candidate: KafkaEnv = {
      KAFKA_PORT: String(port),
      KAFKA_CONTROLLER_PORT: String(controllerPort),
      KAFKA_DATA_DIR: await mkdtemp(join(tmpdir(), "streamgate-kafka-")),
      KAFKA_WATCH_PID: String(process.pid),
      KAFKA_WATCH_REMOVE_DATA: "1",
    };
    try {
      await runKafkaScript("start", candidate);
      env = candidate;
    } catch (error) {
      await runKafkaScript("stop", candidate).catch(() => {});
      await rm(candidate.KAFKA_DATA_DIR, { recursive: true, force: true });
      if (!/already in use|BindException/.test(String(error)) || attempt >= 3) throw error;
    }
  }

  const brokers = `127.0.0.1:${env.KAFKA_PORT}`;
  provide("kafkaBrokers", brokers);
  provide("kafkaEnv", env);
  process.env.STREAMGATE_TEST_KAFKA_BROKERS = brokers;

  const started = env;
  return async () => {
    try {
      await runKafkaScript("stop", started);
    } finally {
      await rm(started.KAFKA_DATA_DIR, { recursive: true, force: true });
    }
  };
}
