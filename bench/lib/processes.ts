/**
 * The processes a benchmark measures: streamgate itself (its real entry point
 * in a child process, so the load generator does not share its event loop),
 * the bare baseline servers, and the bench's own Kafka broker
 * (scripts/kafka.sh, as `npm run kafka` runs it).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";

/** The project root. */
export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The API key every bench server accepts (name "bench"); the admin key is "bench-admin-key". */
export const BENCH_API_KEY = "bench-key-0123456789abcdef";

/** A running server child. */
export interface StreamgateServer {
  port: number;
  pid: number;
  child: ChildProcess;
  /** GET /metrics text. */
  metrics(): Promise<string>;
  /** SIGTERM, and resolves once it has exited. */
  stop(): Promise<void>;
}

/** Runs `use` on the server `starting` resolves to, and stops the server afterwards, whatever happens. */
export async function withServer<T>(
  starting: Promise<StreamgateServer>,
  use: (server: StreamgateServer) => Promise<T>,
): Promise<T> {
  const server = await starting;
  try {
    return await use(server);
  } finally {
    await server.stop();
  }
}

/** A free loopback port. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const address = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return address.port;
}

/** Resolves once something accepts connections on `port`; rejects when `exited` comes first or after 60 s. */
async function whenListening(port: number, exited: Promise<void>, what: () => string): Promise<void> {
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (gone) throw new Error(`${what()}: exited before listening`);
    if (Date.now() > deadline) throw new Error(`${what()}: not listening after 60 s`);
    const connected = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (connected) return;
    await delay(50);
  }
}

/**
 * Starts a Node program (`args` after `node`) with `env` added, told to listen
 * on a free port through the variable `portVariable`; resolves once it accepts
 * connections there.
 */
export async function startNodeServer(
  args: string[],
  env: Record<string, string>,
  portVariable = "PORT",
): Promise<StreamgateServer> {
  const port = await freePort();
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, ...env, [portVariable]: String(port) },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr = (stderr + chunk).slice(-8000)));
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  await whenListening(port, exited, () => `${args.join(" ")}\n${stderr}`);
  return {
    port,
    pid: child.pid!,
    child,
    metrics: async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text(),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

/**
 * Compiles the service and the baseline servers into dist/ (tsconfig.bench.json),
 * so that what is measured runs as `npm start` runs it: compiled JavaScript, no
 * loader hooks.
 */
export function buildServers(): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", join(ROOT, "tsconfig.bench.json")],
      (error, stdout, stderr) =>
        error ? reject(new Error(`tsc -p tsconfig.bench.json failed:\n${stdout}${stderr}`)) : resolve(),
    );
  });
}

/** Starts streamgate (dist/src/main.js, see {@link buildServers}) on a free port with `env` added. */
export function startStreamgate(env: Record<string, string>): Promise<StreamgateServer> {
  return startNodeServer(["dist/src/main.js"], {
    HOST: "127.0.0.1",
    // One log line per call is a real cost, and not what is measured here.
    LOG_LEVEL: "warn",
    API_KEYS: `bench:${BENCH_API_KEY}`,
    ADMIN_API_KEYS: "bench-admin:bench-admin-key",
    // The one bench key stands for every client of a run (10,000 watchers in one tenant;
    // startstream's new stream per call, thousands a second).
    TENANT_MAX_WATCHERS: "0",
    TENANT_MAX_STREAMS: "0",
    ...env,
  });
}

/** Resident set size of process `pid`, in bytes (Linux /proc). */
export async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return Number(kb) * 1024;
}

/** A Kafka broker started by scripts/kafka.sh for the run. */
export interface KafkaBroker {
  brokers: string;
  stop(): Promise<void>;
}

function kafkaScript(command: string, env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      "bash",
      [join(ROOT, "scripts/kafka.sh"), command],
      { env: { ...process.env, ...env }, timeout: 240_000 },
      (error, stdout, stderr) =>
        error ? reject(new Error(`scripts/kafka.sh ${command} failed:\n${stdout}${stderr}`)) : resolve(stdout),
    );
  });
}

/** Starts a single-node KRaft broker on free ports with a fresh data dir; stopped (and the dir removed) by stop(), or when this process is gone. */
export async function startKafka(): Promise<KafkaBroker> {
  const port = await freePort();
  const env = {
    KAFKA_PORT: String(port),
    KAFKA_CONTROLLER_PORT: String(await freePort()),
    KAFKA_DATA_DIR: await mkdtemp(join(tmpdir(), "streamgate-bench-kafka-")),
    KAFKA_WATCH_PID: String(process.pid),
    KAFKA_WATCH_REMOVE_DATA: "1",
  };
  await kafkaScript("start", env);
  return {
    brokers: `127.0.0.1:${port}`,
    stop: async () => {
      await kafkaScript("stop", env).catch(() => undefined);
      await rm(env.KAFKA_DATA_DIR, { recursive: true, force: true });
    },
  };
}
