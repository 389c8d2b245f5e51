/**
 * loadConfig: README's documented defaults from an empty environment (and, for
 * the Kafka settings, which apply only when KAFKA_BROKERS is set, from one that
 * sets only it), every variable loadConfig reads documented in README and no
 * other, typed values from a set environment, and a ConfigError that lists
 * every invalid variable at once (with its value and what was expected)
 * instead of stopping at the first.
 */

import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type Config, ConfigError, type KafkaConfig, loadConfig } from "../src/config/config.js";

/** Where each documented variable lands in the Config (variables unset by default are checked apart). */
const SETTING: Record<string, (config: Config) => unknown> = {
  PORT: (config) => config.port,
  HOST: (config) => config.host,
  WORKERS: (config) => config.workers,
  CORS_ORIGINS: (config) => config.corsOrigins.join(","),
  MAX_PAYLOAD_BYTES: (config) => config.maxPayloadBytes,
  KAFKA_TOPIC_PREFIX: (config) => config.topics.prefix,
  KAFKA_PARTITIONS: (config) => config.topics.partitions,
  MEMORY_RETENTION_RECORDS: (config) => config.memory.retentionRecords,
  MEMORY_RETENTION_MS: (config) => config.memory.retentionMs,
  FANOUT_WINDOW: (config) => config.fanoutWindow,
  FANOUT_CACHE_RESULTS: (config) => config.fanoutCacheResults,
  WATCH_BUFFER: (config) => config.watchBuffer,
  SSE_HEARTBEAT_MS: (config) => config.push.heartbeatMs,
  WATCH_TICKET_TTL_MS: (config) => config.push.ticketTtlMs,
  DEDUP_WINDOW: (config) => config.dedupWindow,
  TENANT_MAX_STREAMS: (config) => config.tenantMaxStreams,
  TENANT_MAX_WATCHERS: (config) => config.tenantMaxWatchers,
  CLOSED_STREAM_RETENTION_MS: (config) => config.closedStreamRetentionMs,
  PROCESSOR_MAX_IN_FLIGHT: (config) => config.processorMaxInFlight,
  HEALTH_PROBE_INTERVAL_MS: (config) => config.healthProbeIntervalMs,
  SHUTDOWN_TIMEOUT_MS: (config) => config.shutdownTimeoutMs,
  CALL_TURN_BUDGET_MS: (config) => config.callTurnBudgetMs,
  LOG_LEVEL: (config) => config.logLevel,
  JWT_TENANT_CLAIM: () => loadConfig({ JWT_HS256_SECRET: "s".repeat(32) }).auth.jwt!.tenantClaim,
  JWT_ADMIN_CLAIM: () => loadConfig({ JWT_HS256_SECRET: "s".repeat(32) }).auth.jwt!.adminClaim,
  JWT_ADMIN_VALUE: () => loadConfig({ JWT_HS256_SECRET: "s".repeat(32) }).auth.jwt!.adminValue,
  AUTH_OPEN_SERVICES: (config) => config.auth.openServices.join(","),
  ADMIN_SERVICES: (config) => config.auth.adminServices.join(","),
  REDIS_KEY_PREFIX: () => loadConfig({ REDIS_URL: "redis://127.0.0.1:6379" }).redis!.keyPrefix,
  MAX_CONNECTIONS: (config) => config.edge.maxConnections,
  MAX_CONNECTIONS_PER_PEER: (config) => config.edge.maxConnectionsPerPeer,
  FIRST_BYTES_TIMEOUT_MS: (config) => config.edge.firstBytesTimeoutMs,
  HTTP2_IDLE_TIMEOUT_MS: (config) => config.edge.http2IdleTimeoutMs,
  HTTP2_MAX_CONCURRENT_STREAMS: (config) => config.edge.http2MaxConcurrentStreams,
  REQUEST_BODY_TIMEOUT_MS: (config) => config.edge.requestBodyTimeoutMs,
  CONNECTION_MAX_BUFFERED_BYTES: (config) => config.edge.connectionMaxBufferedBytes,
  PEER_RATE_LIMIT_RPS: (config) => config.edge.peerLimit.rps,
  PEER_RATE_LIMIT_BURST: (config) => config.edge.peerLimit.burst,
  REFUSAL_LOGS_PER_SECOND: (config) => config.edge.refusalLogsPerSecond,
  CEL_MAX_EXPRESSION_LENGTH: (config) => config.cel.maxExpressionLength,
  CEL_MAX_COST: (config) => config.cel.maxCost,
};

/** Where each documented Kafka variable lands in config.kafka, which exists only when KAFKA_BROKERS is set. */
const KAFKA_SETTING: Record<string, (kafka: KafkaConfig) => unknown> = {
  KAFKA_CLIENT_ID: (kafka) => kafka.clientId,
  KAFKA_REPLICATION: (kafka) => kafka.replication,
  KAFKA_TLS: (kafka) => kafka.tls,
  KAFKA_LINGER_MS: (kafka) => kafka.lingerMs,
  KAFKA_BATCH_MAX_RECORDS: (kafka) => kafka.batchMaxRecords,
  KAFKA_PRODUCE_TIMEOUT_MS: (kafka) => kafka.produceTimeoutMs,
};

const BROKER = { KAFKA_BROKERS: "localhost:9092" };

/** Files the configuration names; loadConfig reads each (TLS material, the Kafka CA) when it loads. */
const certs = mkdtempSync(join(tmpdir(), "streamgate-config-"));
const CERT = { path: join(certs, "tls.crt"), text: "-----BEGIN CERTIFICATE-----\ncert\n" };
const KEY = { path: join(certs, "tls.key"), text: "-----BEGIN PRIVATE KEY-----\nkey\n" };
const CA = { path: join(certs, "ca.pem"), text: "-----BEGIN CERTIFICATE-----\nca\n" };
for (const file of [CERT, KEY, CA]) writeFileSync(file.path, file.text);

/** README's configuration table rows, as [variables named in the first cell, default cell]. */
function configurationTable(): [string[], string][] {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const start = readme.indexOf("## Configuration");
  // That section only: others have tables of variables not loadConfig's (Traces: the OTEL_* ones).
  const section = readme.slice(start, readme.indexOf("\n## ", start));
  return [...section.matchAll(/^\| ((?:`[A-Z0-9_]+`(?:, )?)+) \| ([^|]*) \|/gm)].map((match) => [
    [...match[1]!.matchAll(/`([A-Z0-9_]+)`/g)].map((name) => name[1]!),
    match[2]!.trim(),
  ]);
}

/** README's documented defaults: variable → default, for rows with one variable and a `code` default. */
function documentedDefaults(): Record<string, string> {
  const defaults: Record<string, string> = {};
  for (const [names, value] of configurationTable()) {
    const code = /^`([^`]*)`$/.exec(value);
    if (names.length === 1 && code) defaults[names[0]!] = code[1]!;
  }
  return defaults;
}

/** The variables loadConfig looks up when given `env`. */
function variablesRead(env: Record<string, string>): string[] {
  const read = new Set<string>();
  loadConfig(
    new Proxy(env, {
      get(target, name) {
        if (typeof name === "string") read.add(name);
        return target[name as string];
      },
    }),
  );
  return [...read].sort();
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
    expect(Object.keys(documented).sort()).toEqual([...Object.keys(SETTING), ...Object.keys(KAFKA_SETTING)].sort());
    for (const [name, read] of Object.entries(SETTING)) {
      expect(String(read(config)), name).toBe(documented[name]);
    }
    expect(config.tls).toBeUndefined();
    // No KAFKA_BROKERS: the embedded broker, and no Kafka settings at all.
    expect(config.kafka).toBeUndefined();
  });

  it("uses README's documented Kafka defaults when only KAFKA_BROKERS is set", () => {
    const kafka = loadConfig(BROKER).kafka!;
    const documented = documentedDefaults();
    for (const [name, read] of Object.entries(KAFKA_SETTING)) {
      expect(String(read(kafka)), name).toBe(documented[name]);
    }
    expect(kafka).toMatchObject({ brokers: ["localhost:9092"], tlsCaFile: undefined, sasl: undefined });
  });

  it("documents in README every variable it reads, and only those", () => {
    const documented = configurationTable()
      .flatMap(([names]) => names)
      .sort();
    // The Kafka variables are read only with KAFKA_BROKERS set, the SASL credentials only with a mechanism.
    const everything = { ...BROKER, KAFKA_SASL_MECHANISM: "plain", KAFKA_SASL_USERNAME: "u", KAFKA_SASL_PASSWORD: "p" };
    expect(variablesRead(everything)).toEqual(documented);
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
      TLS_CERT: CERT.path,
      TLS_KEY: KEY.path,
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
      tls: { certFile: CERT.path, keyFile: KEY.path, cert: CERT.text, key: KEY.text },
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

  it("reads the Kafka settings, trimmed and typed", () => {
    const config = loadConfig({
      KAFKA_BROKERS: " kafka-0.example:9092, kafka-1.example:9093 ,,",
      KAFKA_CLIENT_ID: "gateway-eu",
      KAFKA_REPLICATION: "3",
      KAFKA_TLS_CA_FILE: CA.path,
      KAFKA_SASL_MECHANISM: "SCRAM-SHA-512",
      KAFKA_SASL_USERNAME: "gateway",
      KAFKA_SASL_PASSWORD: "secret",
      KAFKA_LINGER_MS: "0",
      KAFKA_BATCH_MAX_RECORDS: "500",
      KAFKA_PRODUCE_TIMEOUT_MS: "30000",
    });
    expect(config.kafka).toEqual({
      brokers: ["kafka-0.example:9092", "kafka-1.example:9093"],
      clientId: "gateway-eu",
      replication: 3,
      tls: true, // a CA file turns TLS on
      tlsCaFile: CA.path,
      tlsCa: CA.text,
      sasl: { mechanism: "scram-sha-512", username: "gateway", password: "secret" },
      lingerMs: 0,
      batchMaxRecords: 500,
      produceTimeoutMs: 30_000,
    });
  });

  it("reads the TLS and Kafka CA files when it loads, and names each one it cannot read", () => {
    const missing = join(certs, "missing.pem");
    expect(() => loadConfig({ TLS_CERT: missing, TLS_KEY: KEY.path })).toThrow(
      `TLS_CERT=${JSON.stringify(missing)} cannot be read (ENOENT)`,
    );
    expect(() => loadConfig({ ...BROKER, KAFKA_TLS_CA_FILE: missing })).toThrow(
      `KAFKA_TLS_CA_FILE=${JSON.stringify(missing)} cannot be read (ENOENT)`,
    );
  });

  it("ignores the other KAFKA_* settings without KAFKA_BROKERS, even invalid ones", () => {
    const config = loadConfig({ KAFKA_SASL_MECHANISM: "kerberos", KAFKA_TLS: "maybe", KAFKA_LINGER_MS: "soon" });
    expect(config.kafka).toBeUndefined();
  });

  it("refuses a KAFKA_BROKERS entry that is not host:port, naming each one", () => {
    expect(problemsOf({ KAFKA_BROKERS: "good:9092, nohost, bad:port, :9092, http://x:9092, big:99999" })).toEqual([
      'KAFKA_BROKERS entry "nohost" must be host:port',
      'KAFKA_BROKERS entry "bad:port" must be host:port',
      'KAFKA_BROKERS entry ":9092" must be host:port',
      'KAFKA_BROKERS entry "http://x:9092" must be host:port',
      'KAFKA_BROKERS entry "big:99999" must be host:port',
    ]);
  });

  it("refuses a replication factor of 0", () => {
    expect(problemsOf({ ...BROKER, KAFKA_REPLICATION: "0" })).toEqual([
      "KAFKA_REPLICATION=0 is not a replication factor: use -1 (the cluster's default) or 1 to 32",
    ]);
  });

  it("needs both SASL credentials with a mechanism", () => {
    const needs = "KAFKA_SASL_MECHANISM needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD";
    expect(problemsOf({ ...BROKER, KAFKA_SASL_MECHANISM: "plain" })).toEqual([needs]);
    expect(problemsOf({ ...BROKER, KAFKA_SASL_MECHANISM: "plain", KAFKA_SASL_USERNAME: "u" })).toEqual([needs]);
    expect(problemsOf({ ...BROKER, KAFKA_SASL_MECHANISM: "plain", KAFKA_SASL_PASSWORD: "p" })).toEqual([needs]);
    const sasl = { KAFKA_SASL_MECHANISM: "plain", KAFKA_SASL_USERNAME: "u", KAFKA_SASL_PASSWORD: "p" };
    expect(loadConfig({ ...BROKER, ...sasl }).kafka?.sasl).toEqual({
      mechanism: "plain",
      username: "u",
      password: "p",
    });
    // Credentials without a mechanism authenticate nothing.
    expect(loadConfig({ ...BROKER, KAFKA_SASL_USERNAME: "u", KAFKA_SASL_PASSWORD: "p" }).kafka?.sasl).toBeUndefined();
  });

  it("refuses a SASL mechanism it does not support, listing those it does", () => {
    expect(
      problemsOf({ ...BROKER, KAFKA_SASL_MECHANISM: "gssapi", KAFKA_SASL_USERNAME: "u", KAFKA_SASL_PASSWORD: "p" }),
    ).toEqual(['KAFKA_SASL_MECHANISM="gssapi" is not one of plain, scram-sha-256, scram-sha-512']);
  });

  it.each([
    ["true", true],
    [" TRUE ", true],
    ["1", true],
    ["yes", true],
    ["on", true],
    ["false", false],
    ["0", false],
    ["No", false],
    ["off", false],
    ["", false],
  ])("reads KAFKA_TLS=%j as %s", (value, tls) => {
    expect(loadConfig({ ...BROKER, KAFKA_TLS: value }).kafka?.tls).toBe(tls);
  });

  it("refuses a KAFKA_TLS that is not a boolean", () => {
    expect(problemsOf({ ...BROKER, KAFKA_TLS: "maybe" })).toEqual(['KAFKA_TLS="maybe" must be true or false']);
  });

  it("lists Kafka problems alongside the others", () => {
    const problems = problemsOf({
      KAFKA_BROKERS: "localhost",
      KAFKA_REPLICATION: "-2",
      KAFKA_LINGER_MS: "5000",
      KAFKA_PRODUCE_TIMEOUT_MS: "10",
      PORT: "70000",
    });
    expect(problems).toHaveLength(5);
    expect(problems).toEqual(
      expect.arrayContaining([
        'KAFKA_BROKERS entry "localhost" must be host:port',
        expect.stringMatching(/^KAFKA_REPLICATION="-2" must be a whole number from -1 to \d+$/),
        expect.stringMatching(/^KAFKA_LINGER_MS="5000" must be a whole number from 0 to \d+$/),
        expect.stringMatching(/^KAFKA_PRODUCE_TIMEOUT_MS="10" must be a whole number from \d+ to \d+$/),
        expect.stringMatching(/^PORT="70000" must be a whole number/),
      ]),
    );
  });

  it("reads WORKERS as a number or auto, and refuses more than one on the embedded broker, saying why", () => {
    expect(loadConfig({ ...BROKER, WORKERS: "3" }).workers).toBe(3);
    expect(loadConfig({ ...BROKER, WORKERS: "auto" }).workers).toBe(availableParallelism());
    expect(loadConfig({ WORKERS: "1" }).workers).toBe(1);
    expect(problemsOf({ ...BROKER, WORKERS: "0" })).toEqual([
      'WORKERS="0" must be "auto" or a whole number from 1 to 256',
    ]);
    expect(problemsOf({ ...BROKER, WORKERS: "two" })).toEqual([
      'WORKERS="two" must be "auto" or a whole number from 1 to 256',
    ]);
    expect(problemsOf({ WORKERS: "2" })).toEqual([
      "WORKERS=2 (2 processes) needs KAFKA_BROKERS: the embedded broker lives inside one process, so each worker would " +
        "have a log of its own and none would see another's streams; run one worker, or set KAFKA_BROKERS",
    ]);
  });
});
