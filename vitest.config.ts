import { defineConfig } from "vitest/config";

/**
 * Test files that stop the shared Kafka broker (test/support/kafka-control.ts):
 * they run alone, after every other file, so that no other file's Kafka
 * servers see the broker go away. With KAFKA_BROKERS given (a broker this run
 * did not start and must not stop), their tests skip themselves, saying why.
 */
const STOPS_THE_BROKER = ["test/kafka-outage.test.ts"];

const common = {
  testTimeout: 30_000,
  hookTimeout: 60_000,
};

export default defineConfig({
  test: {
    // One real Kafka broker (KRaft, scripts/kafka.sh) for the whole run, or KAFKA_BROKERS as given:
    // test files reach it with inject("kafkaBrokers"). Only here, on the root project, so every
    // project below shares that one broker (the projects do not extend this config).
    // Likewise one real redis-server (Debian's, scripts/tools.sh), or REDIS_URL as given:
    // inject("redisUrl"), see test/support/redis.ts.
    globalSetup: ["test/support/kafka-global-setup.ts", "test/support/redis-global-setup.ts"],
    projects: [
      {
        test: {
          ...common,
          name: "main",
          include: ["test/**/*.test.ts"],
          exclude: STOPS_THE_BROKER,
          // Tests start real servers and child processes; two cores cannot run many at once.
          maxWorkers: 2,
        },
      },
      {
        test: {
          ...common,
          name: "broker-stopped",
          include: STOPS_THE_BROKER,
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
