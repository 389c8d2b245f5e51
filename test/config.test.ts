/**
 * loadConfig: documented defaults from an empty environment, typed values from
 * a set one, and a ConfigError that lists every invalid variable at once (with
 * its value and what was expected) instead of stopping at the first.
 */
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.js";

/** The problems loadConfig reports for `env`. */
function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig", () => {
  it("uses the defaults when nothing is set", () => {
    expect(loadConfig({})).toEqual({
      port: 8080,
      host: "0.0.0.0",
      tls: undefined,
      corsOrigins: ["*"],
      maxPayloadBytes: 1024 * 1024,
      kafkaBrokers: [],
      topics: { prefix: "streamgate.", partitions: 6 },
      memory: { retentionRecords: 1_000_000, retentionMs: 0 },
      fanoutWindow: 256,
      fanoutCacheResults: 200_000,
      watchBuffer: 1024,
      dedupWindow: 100_000,
      processorMaxInFlight: 10_000,
      shutdownTimeoutMs: 10_000,
      logLevel: "info",
    });
  });

  it("treats empty variables as unset", () => {
    expect(loadConfig({ PORT: "", LOG_LEVEL: "", CORS_ORIGINS: " ", KAFKA_PARTITIONS: "  " })).toMatchObject({
      port: 8080,
      logLevel: "info",
      corsOrigins: ["*"],
      topics: { partitions: 6 },
    });
  });

  it("reads set values, trimmed and typed", () => {
    const config = loadConfig({
      PORT: " 0 ",
      HOST: "127.0.0.1",
      TLS_CERT: "/certs/tls.crt",
      TLS_KEY: "/certs/tls.key",
      CORS_ORIGINS: "https://a.example, https://b.example,,",
      MAX_PAYLOAD_BYTES: "2048",
      KAFKA_TOPIC_PREFIX: "dev-1.",
      KAFKA_PARTITIONS: "12",
      MEMORY_RETENTION_MS: "60000",
      FANOUT_WINDOW: "8",
      WATCH_BUFFER: "16",
      LOG_LEVEL: "debug",
    });
    expect(config).toMatchObject({
      port: 0,
      host: "127.0.0.1",
      tls: { certFile: "/certs/tls.crt", keyFile: "/certs/tls.key" },
      corsOrigins: ["https://a.example", "https://b.example"],
      maxPayloadBytes: 2048,
      topics: { prefix: "dev-1.", partitions: 12 },
      memory: { retentionMs: 60_000 },
      fanoutWindow: 8,
      watchBuffer: 16,
      logLevel: "debug",
    });
  });

  it("reports every invalid variable at once, each with its value and the rule", () => {
    const problems = problemsOf({
      PORT: "http",
      KAFKA_PARTITIONS: "0",
      WATCH_BUFFER: "1.5",
      MAX_PAYLOAD_BYTES: "1e12",
      LOG_LEVEL: "loud",
      KAFKA_TOPIC_PREFIX: "my topics/",
    });
    expect(problems).toHaveLength(6);
    expect(problems).toEqual(
      expect.arrayContaining([
        'PORT="http" must be a whole number from 0 to 65535',
        'KAFKA_PARTITIONS="0" must be a whole number from 1 to 10000',
        'WATCH_BUFFER="1.5" must be a whole number from 1 to 1000000',
        'MAX_PAYLOAD_BYTES="1e12" must be a whole number from 1 to 67108864',
        expect.stringMatching(/^LOG_LEVEL="loud" is not one of fatal, error, warn, info, debug, trace, silent$/),
        expect.stringMatching(/^KAFKA_TOPIC_PREFIX="my topics\/" may only contain/),
      ]),
    );
  });

  it("puts every problem in the error message, one per line", () => {
    try {
      loadConfig({ PORT: "-1", FANOUT_WINDOW: "many" });
      expect.unreachable("loadConfig accepted an invalid environment");
    } catch (error) {
      const message = (error as Error).message;
      expect(message).toMatch(/^invalid configuration:\n/);
      expect(message).toContain('\n  - PORT="-1"');
      expect(message).toContain('\n  - FANOUT_WINDOW="many"');
    }
  });

  it("refuses TLS_CERT without TLS_KEY, and TLS_KEY without TLS_CERT", () => {
    const both = "TLS_CERT and TLS_KEY must be set together (or neither)";
    expect(problemsOf({ TLS_CERT: "/certs/tls.crt" })).toEqual([both]);
    expect(problemsOf({ TLS_KEY: "/certs/tls.key" })).toEqual([both]);
  });

  it("refuses KAFKA_BROKERS with a message saying what to do", () => {
    expect(problemsOf({ KAFKA_BROKERS: "localhost:9092" })).toEqual([
      "KAFKA_BROKERS is set, but this version runs only on the embedded broker; unset it",
    ]);
    // Alongside other problems, it is one of the list rather than hiding them.
    expect(problemsOf({ KAFKA_BROKERS: "a:9092,b:9092", PORT: "70000" })).toHaveLength(2);
  });
});
