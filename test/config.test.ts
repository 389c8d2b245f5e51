/**
 * loadConfig: README's documented defaults from an empty environment, typed values from
 * a set one, and a ConfigError that lists every invalid variable at once (with
 * its value and what was expected) instead of stopping at the first.
 */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { ConfigError, loadConfig, type Config } from "../src/config.js";

/** Where each documented variable lands in the Config (TLS_CERT/TLS_KEY, unset by default, are checked apart). */
const SETTING: Record<string, (config: Config) => unknown> = {
  PORT: (config) => config.port,
  HOST: (config) => config.host,
  CORS_ORIGINS: (config) => config.corsOrigins.join(","),
  MAX_PAYLOAD_BYTES: (config) => config.maxPayloadBytes,
  KAFKA_TOPIC_PREFIX: (config) => config.topics.prefix,
  KAFKA_PARTITIONS: (config) => config.topics.partitions,
  MEMORY_RETENTION_RECORDS: (config) => config.memory.retentionRecords,
  MEMORY_RETENTION_MS: (config) => config.memory.retentionMs,
  FANOUT_WINDOW: (config) => config.fanoutWindow,
  FANOUT_CACHE_RESULTS: (config) => config.fanoutCacheResults,
  WATCH_BUFFER: (config) => config.watchBuffer,
  DEDUP_WINDOW: (config) => config.dedupWindow,
  PROCESSOR_MAX_IN_FLIGHT: (config) => config.processorMaxInFlight,
  SHUTDOWN_TIMEOUT_MS: (config) => config.shutdownTimeoutMs,
  LOG_LEVEL: (config) => config.logLevel,
};

/** README's configuration table: variable → default, for rows with one variable and a `code` default. */
function documentedDefaults(): Record<string, string> {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const defaults: Record<string, string> = {};
  for (const match of readme.matchAll(/^\| `([A-Z_]+)` \| `([^`]*)` \|/gm)) defaults[match[1]!] = match[2]!;
  return defaults;
}

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
  it("uses README's documented default for every variable when nothing is set", () => {
    const config = loadConfig({});
    const documented = documentedDefaults();
    expect(Object.keys(documented).sort()).toEqual(Object.keys(SETTING).sort());
    for (const [name, value] of Object.entries(documented)) {
      expect(String(SETTING[name]!(config)), name).toBe(value);
    }
    expect(config.tls).toBeUndefined();
    expect(config.kafkaBrokers).toEqual([]);
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
        expect.stringMatching(/^KAFKA_PARTITIONS="0" must be a whole number from 1 to \d+$/),
        expect.stringMatching(/^WATCH_BUFFER="1\.5" must be a whole number from 1 to \d+$/),
        expect.stringMatching(/^MAX_PAYLOAD_BYTES="1e12" must be a whole number from 1 to \d+$/),
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
