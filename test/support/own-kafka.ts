/**
 * A Kafka broker of a test file's own, for settings the run's shared broker
 * does not have (SASL, TLS listeners): started by scripts/kafka.sh with
 * `extra` lines appended to its server.properties (later lines override the
 * script's, and its plain listener stays for readiness and the broker's own
 * traffic), removed with its data when stopped or when the test process dies.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type KafkaEnv, runKafkaScript } from "./kafka-global-setup.js";

/** A running broker of the test's own. */
export interface OwnKafka {
  env: KafkaEnv & { KAFKA_EXTRA_CONFIG: string };
  /** Stops the broker and removes its data. */
  stop(): Promise<void>;
}

/** Starts a broker on `port` (controller on `controllerPort`) with the `extra` server.properties lines. */
export async function startOwnKafka(
  name: string,
  ports: { port: number; controllerPort: number },
  extra: string[],
): Promise<OwnKafka> {
  const env: OwnKafka["env"] = {
    KAFKA_PORT: String(ports.port),
    KAFKA_CONTROLLER_PORT: String(ports.controllerPort),
    KAFKA_DATA_DIR: await mkdtemp(join(tmpdir(), `streamgate-kafka-${name}-`)),
    KAFKA_WATCH_PID: String(process.pid),
    KAFKA_WATCH_REMOVE_DATA: "1",
    KAFKA_EXTRA_CONFIG: extra.join("\n"),
  };
  await runKafkaScript("start", env);
  return {
    env,
    async stop() {
      try {
        await runKafkaScript("stop", env);
      } finally {
        await rm(env.KAFKA_DATA_DIR, { recursive: true, force: true });
      }
    },
  };
}
