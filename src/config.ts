/**
 * Configuration, loaded once from the environment, typed and validated.
 *
 * Every variable is documented in README.md's configuration table; a wrong value
 * stops the process at start with a message naming the variable, the value and
 * what was expected, rather than failing later in a request.
 */

/** TLS material for serving gRPC, gRPC-Web and Connect over TLS with ALPN. */
export interface TlsConfig {
  /** Path of the PEM certificate chain. */
  certFile: string;
  /** Path of the PEM private key. */
  keyFile: string;
}

/** Broker topics and partitioning. */
export interface TopicConfig {
  /** Prefix of every topic name, e.g. "streamgate." gives "streamgate.ingest". */
  prefix: string;
  /** Partitions of the ingest and results topics. */
  partitions: number;
}

/** The embedded in-memory broker's retention. */
export interface MemoryBrokerConfig {
  /** Records kept per partition before the oldest are dropped. */
  retentionRecords: number;
  /** Age after which records are dropped (0: no age limit). */
  retentionMs: number;
}

/** The whole service configuration. */
export interface Config {
  /** TCP port of the one listener (0 picks a free port). */
  port: number;
  /** Address to bind. */
  host: string;
  /** TLS, when both TLS_CERT and TLS_KEY are set. */
  tls: TlsConfig | undefined;
  /** Origins allowed by CORS ("*" allows any). */
  corsOrigins: string[];
  /** Largest accepted record payload, in bytes. */
  maxPayloadBytes: number;
  /** Kafka bootstrap brokers; empty selects the embedded memory broker. */
  kafkaBrokers: string[];
  /** Topic naming and partitioning. */
  topics: TopicConfig;
  /** Embedded broker retention. */
  memory: MemoryBrokerConfig;
  /** Results kept per stream in each instance's fanout window. */
  fanoutWindow: number;
  /** Results kept in all fanout windows together before idle streams' windows are dropped. */
  fanoutCacheResults: number;
  /** Results buffered per watcher before a slow watcher is ended with its resume cursor. */
  watchBuffer: number;
  /** Event ids remembered for deduplication (across all streams). */
  dedupWindow: number;
  /** Records a processor partition may hold in flight before it stops reading. */
  processorMaxInFlight: number;
  /** How long SIGTERM waits for in-flight calls before closing connections. */
  shutdownTimeoutMs: number;
  /** pino log level. */
  logLevel: string;
}

/** Thrown by {@link loadConfig} with every problem found, one per line. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
  }
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/**
 * Reads and validates the configuration from `env` (process.env by default).
 * Throws a {@link ConfigError} listing every invalid variable.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  const read = new EnvReader(env, problems);

  const tlsCert = read.string("TLS_CERT", "");
  const tlsKey = read.string("TLS_KEY", "");
  if ((tlsCert === "") !== (tlsKey === "")) {
    problems.push("TLS_CERT and TLS_KEY must be set together (or neither)");
  }
  const logLevel = read.string("LOG_LEVEL", "info");
  if (!LOG_LEVELS.includes(logLevel)) {
    problems.push(`LOG_LEVEL=${JSON.stringify(logLevel)} is not one of ${LOG_LEVELS.join(", ")}`);
  }
  const prefix = read.string("KAFKA_TOPIC_PREFIX", "streamgate.");
  if (!/^[A-Za-z0-9._-]*$/.test(prefix)) {
    problems.push(`KAFKA_TOPIC_PREFIX=${JSON.stringify(prefix)} may only contain letters, digits, ".", "_" and "-"`);
  }

  const config: Config = {
    port: read.int("PORT", 8080, 0, 65535),
    host: read.string("HOST", "0.0.0.0"),
    tls: tlsCert && tlsKey ? { certFile: tlsCert, keyFile: tlsKey } : undefined,
    corsOrigins: read.list("CORS_ORIGINS", ["*"]),
    maxPayloadBytes: read.int("MAX_PAYLOAD_BYTES", 1024 * 1024, 1, 64 * 1024 * 1024),
    kafkaBrokers: read.list("KAFKA_BROKERS", []),
    topics: {
      prefix,
      partitions: read.int("KAFKA_PARTITIONS", 6, 1, 10_000),
    },
    memory: {
      retentionRecords: read.int("MEMORY_RETENTION_RECORDS", 100_000, 1, Number.MAX_SAFE_INTEGER),
      retentionMs: read.int("MEMORY_RETENTION_MS", 0, 0, Number.MAX_SAFE_INTEGER),
    },
    fanoutWindow: read.int("FANOUT_WINDOW", 256, 1, 1_000_000),
    fanoutCacheResults: read.int("FANOUT_CACHE_RESULTS", 200_000, 1, 100_000_000),
    watchBuffer: read.int("WATCH_BUFFER", 1024, 1, 1_000_000),
    dedupWindow: read.int("DEDUP_WINDOW", 100_000, 1, 100_000_000),
    processorMaxInFlight: read.int("PROCESSOR_MAX_IN_FLIGHT", 10_000, 1, 10_000_000),
    shutdownTimeoutMs: read.int("SHUTDOWN_TIMEOUT_MS", 10_000, 0, 3_600_000),
    logLevel,
  };
  if (config.kafkaBrokers.length > 0) {
    problems.push("KAFKA_BROKERS is set, but this version runs only on the embedded broker; unset it");
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** Reads typed values from the environment, collecting problems instead of throwing. */
class EnvReader {
  constructor(
    private readonly env: NodeJS.ProcessEnv,
    private readonly problems: string[],
  ) {}

  string(name: string, fallback: string): string {
    const value = this.env[name];
    return value === undefined || value === "" ? fallback : value.trim();
  }

  list(name: string, fallback: string[]): string[] {
    const value = this.env[name];
    if (value === undefined || value.trim() === "") return fallback;
    return value
      .split(",")
      .map((item) => item.trim())
      .filter((item) => item !== "");
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const raw = this.env[name];
    if (raw === undefined || raw.trim() === "") return fallback;
    const value = Number(raw.trim());
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      this.problems.push(`${name}=${JSON.stringify(raw)} must be a whole number from ${min} to ${max}`);
      return fallback;
    }
    return value;
  }
}
