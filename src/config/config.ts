/**
 * Configuration, loaded once from the environment, typed and validated.
 *
 * Every variable is documented in README.md's configuration table; a wrong value
 * stops the process at start with a message naming the variable, the value and
 * what was expected, rather than failing later in a request.
 */

import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { type ApiKeyEntry, checkUnique, parseKeyFile, parseKeyList } from "../guard/auth/api-keys.js";
import type { JwtConfig } from "../guard/auth/jwt.js";

/** TLS material for serving gRPC, gRPC-Web and Connect over TLS with ALPN, read when the configuration is loaded. */
export interface TlsConfig {
  /** Path of the PEM certificate chain. */
  certFile: string;
  /** Path of the PEM private key. */
  keyFile: string;
  /** The certificate chain (PEM). */
  cert: string;
  /** The private key (PEM). */
  key: string;
}

/** Watches over plain HTTP: Server-Sent Events, WebSocket, and the tickets browsers use for them. */
export interface PushConfig {
  /** SSE_HEARTBEAT_MS: a comment line (SSE) or a ping (WebSocket) this often on an idle watch. */
  heartbeatMs: number;
  /** WATCH_TICKET_SECRET: the HS256 secret of watch tickets, shared by the instances; undefined: a random one per process. */
  ticketSecret: Uint8Array | undefined;
  /** WATCH_TICKET_TTL_MS: how long a ticket may be used to connect. */
  ticketTtlMs: number;
}

/** Broker topics and partitioning. */
export interface TopicConfig {
  /** Prefix of every topic name, e.g. "streamgate." gives "streamgate.ingest". */
  prefix: string;
  /** Partitions of the ingest and results topics. */
  partitions: number;
}

/** How to reach and use a Kafka or Redpanda cluster (when KAFKA_BROKERS is set). */
export interface KafkaConfig {
  /** Bootstrap brokers, host:port. */
  brokers: string[];
  /** Client id, also the prefix of per-instance consumer groups. */
  clientId: string;
  /** Replication factor of topics streamgate creates (-1: the cluster's default). */
  replication: number;
  /** TLS to the brokers. */
  tls: boolean;
  /** A PEM CA file to trust instead of the system's. */
  tlsCaFile: string | undefined;
  /** That file's contents, read when the configuration is loaded. */
  tlsCa: string | undefined;
  /** SASL authentication, when a mechanism is set. */
  sasl: { mechanism: "plain" | "scram-sha-256" | "scram-sha-512"; username: string; password: string } | undefined;
  /** How long a produce waits for others to batch with. */
  lingerMs: number;
  /** Most records in one produce request. */
  batchMaxRecords: number;
  /** A record not acknowledged by the broker within this is refused with UNAVAILABLE. */
  produceTimeoutMs: number;
}

/** The embedded in-memory broker's retention. */
export interface MemoryBrokerConfig {
  /** Records kept per partition before the oldest are dropped. */
  retentionRecords: number;
  /** Age after which records are dropped (0: no age limit). */
  retentionMs: number;
}

/** Who may call what (see README "Authentication"). */
export interface AuthConfig {
  /** API keys from API_KEYS, API_KEYS_FILE and ADMIN_API_KEYS, as digests. */
  apiKeys: ApiKeyEntry[];
  /** JWT verification, when a secret or a JWKS file is configured. */
  jwt: JwtConfig | undefined;
  /** Services callable without a credential. */
  openServices: string[];
  /** Services only the admin role may call. */
  adminServices: string[];
}

/** A token bucket: `burst` tokens at most, refilled at `rps` tokens per second. */
export interface BucketConfig {
  rps: number;
  burst: number;
}

/** Request limits (see README "Rate limits"); undefined means no limit. */
export interface LimitsConfig {
  /** One bucket for the whole instance. */
  global: BucketConfig | undefined;
  /** One bucket per client (credential name, else peer address). */
  client: BucketConfig | undefined;
  /** Concurrent WatchResults calls per client. */
  clientMaxWatchers: number | undefined;
}

/**
 * Bounds of the edge: what a connection, with a credential or without, may
 * hold of the server before it is refused (see README "Limits and protections").
 */
export interface EdgeConfig {
  /** Open connections at once, over all peers; more are refused. */
  maxConnections: number;
  /** Open connections at once from one peer address; more are refused. */
  maxConnectionsPerPeer: number;
  /** A new connection must have sent enough to pick its protocol (TLS: finish its handshake) within this. */
  firstBytesTimeoutMs: number;
  /** An HTTP/2 connection with no open stream is closed (GOAWAY) after this long. */
  http2IdleTimeoutMs: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS advertised to HTTP/2 clients. */
  http2MaxConcurrentStreams: number;
  /** A request body (unary), or one message of a streaming request, must arrive whole within this once begun. */
  requestBodyTimeoutMs: number;
  /** Request bytes one connection may have received and not yet handed on as whole messages. */
  connectionMaxBufferedBytes: number;
  /** Calls per second (and burst) one peer address may make that fail authentication or call an open service. */
  peerLimit: BucketConfig;
  /** Log lines per second for refused calls and connections; the rest are counted and summarised. */
  refusalLogsPerSecond: number;
}

/** Bounds of CEL expressions (stream filter and transform, watcher filter). */
export interface CelConfig {
  /** Longest expression accepted, in characters. */
  maxExpressionLength: number;
  /** Cost budget of one evaluation (see README "Limits and protections" for the unit). */
  maxCost: number;
}

/** CEL_MAX_EXPRESSION_LENGTH and CEL_MAX_COST when unset (also for code given no settings: tests). */
export const CEL_DEFAULTS: CelConfig = { maxExpressionLength: 4096, maxCost: 30_000 };

/** The whole service configuration. */
export interface Config {
  /** TCP port of the one listener (0 picks a free port). */
  port: number;
  /** Address to bind. */
  host: string;
  /** A second port serving only GET /metrics and the probes, or undefined (0 or unset): on `port` only. */
  metricsPort: number | undefined;
  /** WORKERS: processes serving the port, each a whole instance (1: this process alone); see src/cluster/. */
  workers: number;
  /** TLS, when both TLS_CERT and TLS_KEY are set. */
  tls: TlsConfig | undefined;
  /** Origins allowed by CORS ("*" allows any). */
  corsOrigins: string[];
  /** Largest accepted record payload, in bytes; also the largest result a transform may produce. */
  maxPayloadBytes: number;
  /** Connection and request bounds at the edge. */
  edge: EdgeConfig;
  /** CEL bounds. */
  cel: CelConfig;
  /** Kafka, or undefined for the embedded memory broker. */
  kafka: KafkaConfig | undefined;
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
  /** Event ids remembered for deduplication, per tenant (each tenant's sends forget only its own). */
  dedupWindow: number;
  /** Streams a tenant may have, open or closed (0: no quota). */
  tenantMaxStreams: number;
  /** Open watchers a tenant may have on one instance (0: no quota). */
  tenantMaxWatchers: number;
  /** How long a closed stream stays before it is removed from memory (0: for ever). */
  closedStreamRetentionMs: number;
  /** Records a processor partition may hold in flight before it stops reading. */
  processorMaxInFlight: number;
  /** How often the broker's health is probed. */
  healthProbeIntervalMs: number;
  /** How long SIGTERM waits for in-flight calls before closing connections. */
  shutdownTimeoutMs: number;
  /** Time one turn of the event loop may spend starting new server-streaming and bidi calls (0: no limit); see call-admission.ts. */
  callTurnBudgetMs: number;
  /** pino log level. */
  logLevel: string;
  /** Watches over Server-Sent Events and WebSocket (src/push/). */
  push: PushConfig;
  /** Authentication: with no key and no JWT configured, startApp generates one key. */
  auth: AuthConfig;
  /** Rate limits and the watcher cap, as the environment sets them (UpdateLimits may change them later). */
  limits: LimitsConfig;
  /** Redis sharing the buckets and limits among instances, or undefined for local buckets. */
  redis: RedisConfig | undefined;
}

/** REDIS_URL and the prefix of streamgate's keys. */
export interface RedisConfig {
  url: string;
  keyPrefix: string;
}

/** The largest request limits, from the environment or AdminService.UpdateLimits alike. */
export const LIMIT_BOUNDS = { rps: 1_000_000, burst: 1_000_000_000, clientMaxWatchers: 1_000_000 } as const;

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
  // Read now, as every file the service needs: a missing certificate is a configuration error, not a failure after the broker started.
  const cert = tlsCert && tlsKey ? read.file("TLS_CERT") : undefined;
  const key = tlsCert && tlsKey ? read.file("TLS_KEY") : undefined;
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
    metricsPort: read.int("METRICS_PORT", 0, 0, 65535) || undefined,
    workers: readWorkers(read, problems, env.KAFKA_BROKERS),
    tls: cert !== undefined && key !== undefined ? { certFile: tlsCert, keyFile: tlsKey, cert, key } : undefined,
    corsOrigins: read.list("CORS_ORIGINS", ["*"]),
    maxPayloadBytes: read.int("MAX_PAYLOAD_BYTES", 1024 * 1024, 1, 64 * 1024 * 1024),
    edge: {
      maxConnections: read.int("MAX_CONNECTIONS", 10_000, 1, 10_000_000),
      maxConnectionsPerPeer: read.int("MAX_CONNECTIONS_PER_PEER", 256, 1, 10_000_000),
      firstBytesTimeoutMs: read.int("FIRST_BYTES_TIMEOUT_MS", 10_000, 100, 3_600_000),
      http2IdleTimeoutMs: read.int("HTTP2_IDLE_TIMEOUT_MS", 120_000, 100, 86_400_000),
      http2MaxConcurrentStreams: read.int("HTTP2_MAX_CONCURRENT_STREAMS", 100, 1, 1_000_000),
      requestBodyTimeoutMs: read.int("REQUEST_BODY_TIMEOUT_MS", 30_000, 100, 3_600_000),
      connectionMaxBufferedBytes: read.int("CONNECTION_MAX_BUFFERED_BYTES", 16 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
      // Always on: an address without a valid credential gets a bounded share of the server.
      peerLimit: {
        rps: read.int("PEER_RATE_LIMIT_RPS", 50, 1, LIMIT_BOUNDS.rps),
        burst: read.int("PEER_RATE_LIMIT_BURST", 200, 1, LIMIT_BOUNDS.burst),
      },
      refusalLogsPerSecond: read.int("REFUSAL_LOGS_PER_SECOND", 10, 0, 1_000_000),
    },
    cel: {
      maxExpressionLength: read.int("CEL_MAX_EXPRESSION_LENGTH", CEL_DEFAULTS.maxExpressionLength, 1, 1_000_000),
      maxCost: read.int("CEL_MAX_COST", CEL_DEFAULTS.maxCost, 1, 1_000_000_000),
    },
    kafka: readKafka(read, problems),
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
    tenantMaxStreams: read.int("TENANT_MAX_STREAMS", 1_000, 0, 10_000_000),
    tenantMaxWatchers: read.int("TENANT_MAX_WATCHERS", 1_000, 0, 10_000_000),
    closedStreamRetentionMs: read.int("CLOSED_STREAM_RETENTION_MS", 86_400_000, 0, Number.MAX_SAFE_INTEGER),
    processorMaxInFlight: read.int("PROCESSOR_MAX_IN_FLIGHT", 10_000, 1, 10_000_000),
    healthProbeIntervalMs: read.int("HEALTH_PROBE_INTERVAL_MS", 2000, 100, 3_600_000),
    shutdownTimeoutMs: read.int("SHUTDOWN_TIMEOUT_MS", 10_000, 0, 3_600_000),
    callTurnBudgetMs: read.int("CALL_TURN_BUDGET_MS", 5, 0, 10_000),
    logLevel,
    push: readPush(read, problems),
    auth: readAuth(read, problems),
    limits: {
      global: readBucket(read, problems, "RATE_LIMIT"),
      client: readBucket(read, problems, "CLIENT_RATE_LIMIT"),
      clientMaxWatchers: read.int("CLIENT_MAX_WATCHERS", 0, 0, LIMIT_BOUNDS.clientMaxWatchers) || undefined,
    },
    redis: readRedis(read, problems),
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** The most WORKERS accepted: each worker is a whole instance, with its Kafka clients and memory. */
const MAX_WORKERS = 256;

/**
 * WORKERS: a number, or "auto" for the cores this process may use. More than
 * one needs Kafka: the embedded broker lives inside one process, so workers
 * on it would not share streams.
 */
function readWorkers(read: EnvReader, problems: string[], kafkaBrokers: string | undefined): number {
  const raw = read.string("WORKERS", "1");
  const workers = raw === "auto" ? availableParallelism() : Number(raw);
  if (!Number.isSafeInteger(workers) || workers < 1 || workers > MAX_WORKERS) {
    problems.push(`WORKERS=${JSON.stringify(raw)} must be "auto" or a whole number from 1 to ${MAX_WORKERS}`);
    return 1;
  }
  if (workers > 1 && (kafkaBrokers ?? "").trim() === "") {
    problems.push(
      `WORKERS=${raw} (${workers} processes) needs KAFKA_BROKERS: the embedded broker lives inside one process, ` +
        "so each worker would have a log of its own and none would see another's streams; run one worker, or set KAFKA_BROKERS",
    );
  }
  return workers;
}

/** SSE_HEARTBEAT_MS and the WATCH_TICKET_* settings. */
function readPush(read: EnvReader, problems: string[]): PushConfig {
  const secret = read.string("WATCH_TICKET_SECRET", "");
  const ticketSecret = secret === "" ? undefined : new TextEncoder().encode(secret);
  if (ticketSecret && ticketSecret.length < MIN_HS256_SECRET_BYTES) {
    problems.push(
      `WATCH_TICKET_SECRET: the secret is ${ticketSecret.length} bytes; it needs at least ${MIN_HS256_SECRET_BYTES}`,
    );
  }
  return {
    heartbeatMs: read.int("SSE_HEARTBEAT_MS", 15_000, 100, 3_600_000),
    ticketSecret,
    ticketTtlMs: read.int("WATCH_TICKET_TTL_MS", 60_000, 1000, 3_600_000),
  };
}

/**
 * `<prefix>_RPS` and `<prefix>_BURST` as a bucket, or undefined when RPS is unset or 0 (no limit).
 * The burst defaults to one second's worth; a burst without a refill rate would be a
 * budget that never comes back, so it is refused.
 */
function readBucket(read: EnvReader, problems: string[], prefix: string): BucketConfig | undefined {
  const rps = read.int(`${prefix}_RPS`, 0, 0, LIMIT_BOUNDS.rps);
  const burst = read.int(`${prefix}_BURST`, 0, 0, LIMIT_BOUNDS.burst);
  if (rps === 0) {
    if (burst > 0) problems.push(`${prefix}_BURST is set but ${prefix}_RPS is not: set both, or neither for no limit`);
    return undefined;
  }
  return { rps, burst: burst === 0 ? rps : burst };
}

/** REDIS_URL (redis:// or rediss://) and REDIS_KEY_PREFIX, or undefined when REDIS_URL is unset. */
function readRedis(read: EnvReader, problems: string[]): RedisConfig | undefined {
  const url = read.string("REDIS_URL", "");
  const keyPrefix = read.string("REDIS_KEY_PREFIX", "streamgate:");
  if (url === "") return undefined;
  let scheme = "";
  try {
    scheme = new URL(url).protocol;
  } catch {
    // reported below
  }
  if (scheme !== "redis:" && scheme !== "rediss:") {
    // Not the value itself: a URL may carry a password.
    problems.push("REDIS_URL must be a redis:// or rediss:// URL, like redis://127.0.0.1:6379");
    return undefined;
  }
  return { url, keyPrefix };
}

/** The default of AUTH_OPEN_SERVICES: health and reflection. */
const OPEN_SERVICES = [
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
];

/** Smallest HS256 secret accepted (RFC 7518 3.2: at least the hash's size). */
export const MIN_HS256_SECRET_BYTES = 32;

/** The auth settings; files are read here, so a missing one stops the start. Never puts a key or secret in a problem. */
function readAuth(read: EnvReader, problems: string[]): AuthConfig {
  const apiKeys = [
    ...parseKeyList(read.string("API_KEYS", ""), "API_KEYS", "user", problems),
    ...parseKeyFile(read.file("API_KEYS_FILE") ?? "", "API_KEYS_FILE", "user", problems),
    ...parseKeyList(read.string("ADMIN_API_KEYS", ""), "ADMIN_API_KEYS", "admin", problems),
  ];
  checkUnique(apiKeys, problems);

  const secretValue = read.string("JWT_HS256_SECRET", "");
  const secretFile = read.file("JWT_HS256_SECRET_FILE")?.replace(/\r?\n$/, "");
  let hs256Secret: Uint8Array | undefined;
  if (secretValue !== "" && secretFile !== undefined) {
    problems.push("JWT_HS256_SECRET and JWT_HS256_SECRET_FILE are both set: use one");
  } else if (secretValue !== "" || secretFile !== undefined) {
    const name = secretValue !== "" ? "JWT_HS256_SECRET" : "JWT_HS256_SECRET_FILE";
    hs256Secret = new TextEncoder().encode(secretValue !== "" ? secretValue : secretFile);
    if (hs256Secret.length < MIN_HS256_SECRET_BYTES) {
      problems.push(
        `${name}: the secret is ${hs256Secret.length} bytes; HS256 needs at least ${MIN_HS256_SECRET_BYTES}`,
      );
    }
  }
  const jwks = readJwks(read, problems);
  const jwt: JwtConfig = {
    hs256Secret,
    jwks,
    issuer: read.string("JWT_ISSUER", "") || undefined,
    audience: read.string("JWT_AUDIENCE", "") || undefined,
    tenantClaim: read.string("JWT_TENANT_CLAIM", "tenant"),
    adminClaim: read.string("JWT_ADMIN_CLAIM", "role"),
    adminValue: read.string("JWT_ADMIN_VALUE", "admin"),
  };
  return {
    apiKeys,
    jwt: hs256Secret || jwks ? jwt : undefined,
    openServices: read.list("AUTH_OPEN_SERVICES", OPEN_SERVICES),
    adminServices: read.list("ADMIN_SERVICES", ["streamgate.v1.AdminService"]),
  };
}

/** JWT_JWKS_FILE's key set: a JSON object with a non-empty `keys` array. */
function readJwks(read: EnvReader, problems: string[]): JwtConfig["jwks"] {
  const text = read.file("JWT_JWKS_FILE");
  if (text === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    problems.push("JWT_JWKS_FILE is not valid JSON");
    return undefined;
  }
  const keys = (parsed as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0 || !keys.every((key) => typeof key === "object" && key !== null)) {
    problems.push('JWT_JWKS_FILE must be a JWK set: {"keys": [ ...one or more keys... ]}');
    return undefined;
  }
  return parsed as JwtConfig["jwks"];
}

const SASL_MECHANISMS = ["plain", "scram-sha-256", "scram-sha-512"] as const;

/** The Kafka settings, read only when KAFKA_BROKERS is set. */
function readKafka(read: EnvReader, problems: string[]): KafkaConfig | undefined {
  const brokers = read.list("KAFKA_BROKERS", []);
  if (brokers.length === 0) return undefined;
  for (const broker of brokers) {
    const port = /^[^:\s]+:(\d{1,5})$/.exec(broker)?.[1];
    if (port === undefined || Number(port) < 1 || Number(port) > 65535) {
      problems.push(`KAFKA_BROKERS entry ${JSON.stringify(broker)} must be host:port`);
    }
  }
  const mechanism = read.string("KAFKA_SASL_MECHANISM", "").toLowerCase();
  let sasl: KafkaConfig["sasl"];
  if (mechanism !== "") {
    const username = read.string("KAFKA_SASL_USERNAME", "");
    const password = read.string("KAFKA_SASL_PASSWORD", "");
    if (!(SASL_MECHANISMS as readonly string[]).includes(mechanism)) {
      problems.push(`KAFKA_SASL_MECHANISM=${JSON.stringify(mechanism)} is not one of ${SASL_MECHANISMS.join(", ")}`);
    } else if (username === "" || password === "") {
      problems.push("KAFKA_SASL_MECHANISM needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD");
    } else {
      sasl = { mechanism: mechanism as (typeof SASL_MECHANISMS)[number], username, password };
    }
  }
  const caFile = read.string("KAFKA_TLS_CA_FILE", "");
  return {
    brokers,
    clientId: read.string("KAFKA_CLIENT_ID", "streamgate"),
    replication: readReplication(read, problems),
    tls: read.bool("KAFKA_TLS", false) || caFile !== "",
    tlsCaFile: caFile === "" ? undefined : caFile,
    tlsCa: read.file("KAFKA_TLS_CA_FILE"),
    sasl,
    lingerMs: read.int("KAFKA_LINGER_MS", 2, 0, 1000),
    batchMaxRecords: read.int("KAFKA_BATCH_MAX_RECORDS", 1000, 1, 100_000),
    produceTimeoutMs: read.int("KAFKA_PRODUCE_TIMEOUT_MS", 5000, 100, 600_000),
  };
}

/** A replication factor: -1 (the cluster's default) or 1 to 32; 0 means nothing. */
function readReplication(read: EnvReader, problems: string[]): number {
  const value = read.int("KAFKA_REPLICATION", -1, -1, 32);
  if (value === 0) {
    problems.push("KAFKA_REPLICATION=0 is not a replication factor: use -1 (the cluster's default) or 1 to 32");
  }
  return value;
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

  /** The contents of the file named by `name`, or undefined when unset (a problem when unreadable). */
  file(name: string): string | undefined {
    const path = this.string(name, "");
    if (path === "") return undefined;
    try {
      return readFileSync(path, "utf8");
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? String(error);
      this.problems.push(`${name}=${JSON.stringify(path)} cannot be read (${reason})`);
      return undefined;
    }
  }

  list(name: string, fallback: string[]): string[] {
    const value = this.env[name];
    if (value === undefined || value.trim() === "") return fallback;
    return value
      .split(",")
      .map((item) => item.trim())
      .filter((item) => item !== "");
  }

  bool(name: string, fallback: boolean): boolean {
    const raw = this.env[name]?.trim().toLowerCase();
    if (raw === undefined || raw === "") return fallback;
    if (["1", "true", "yes", "on"].includes(raw)) return true;
    if (["0", "false", "no", "off"].includes(raw)) return false;
    this.problems.push(`${name}=${JSON.stringify(this.env[name])} must be true or false`);
    return fallback;
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
