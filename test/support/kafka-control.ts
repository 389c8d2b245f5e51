/**
 * Stops and restarts, from a test, the Kafka broker that
 * test/support/kafka-global-setup.ts started for the run (same ports, same
 * data dir: topics and records survive a restart).
 *
 * The broker is shared by every test file of the run: a test that stops it
 * must start it again before it ends (try/finally), and such tests belong in a
 * file that does not run alongside other Kafka tests.
 */
import { pino } from "pino";
import { inject } from "vitest";
import type { Broker } from "../../src/broker/broker.js";
import { createKafkaBroker } from "../../src/broker/kafka.js";
import { type KafkaEnv, runKafkaScript } from "./kafka-global-setup.js";

/** Bootstrap address of the test broker ("127.0.0.1:PORT"). */
export function kafkaBrokers(): string {
  return inject("kafkaBrokers");
}

/** streamgate's Kafka broker client on the test broker, as a test's own producer or consumer (plaintext, silent). */
export function testKafkaClient(clientId: string): Promise<Broker> {
  return createKafkaBroker({
    brokers: kafkaBrokers().split(","),
    clientId,
    replication: 1,
    tls: false,
    ca: undefined,
    sasl: undefined,
    lingerMs: 0,
    maxBatchRecords: 100,
    produceTimeoutMs: 30_000,
    logger: pino({ level: "silent" }),
  });
}

/**
 * Why a test that stops and restarts the broker cannot run when the user gave
 * one with KAFKA_BROKERS; undefined when this run started its own broker (as
 * `npm test` and CI do without KAFKA_BROKERS), so the test must run. Such a
 * test skips itself with this as the note of its context's `skip(condition,
 * note)`: see test/kafka-outage.test.ts.
 */
export function brokerNotStartedByRun(): string | undefined {
  return inject("kafkaEnv")
    ? undefined
    : `the Kafka broker was given by KAFKA_BROKERS (${kafkaBrokers()}): this test stops and restarts the broker, ` +
        "which it may do only to one this test run started; run without KAFKA_BROKERS to include it";
}

function startedEnv(): KafkaEnv {
  const env = inject("kafkaEnv");
  if (!env) {
    throw new Error(
      "the Kafka broker was given by KAFKA_BROKERS: this test run did not start it and cannot stop or restart it",
    );
  }
  return env;
}

/** Stops the test broker (SIGTERM, then SIGKILL after a bound); its data dir is kept. */
export async function stopKafka(): Promise<void> {
  await runKafkaScript("stop", startedEnv());
}

/** Starts the test broker again on the same ports and data; resolves once it is ready. */
export async function startKafka(): Promise<void> {
  await runKafkaScript("start", startedEnv());
}

/** Whether the test broker is running and ready. */
export async function kafkaRunning(): Promise<boolean> {
  return runKafkaScript("status", startedEnv()).then(
    () => true,
    () => false,
  );
}
