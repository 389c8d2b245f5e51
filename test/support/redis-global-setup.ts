/**
 * vitest globalSetup: a real redis-server for the test run (the shared limits
 * store of REDIS_URL).
 *
 * With REDIS_URL set, that server is used as is. Otherwise Debian's
 * `redis-server` (installed by scripts/tools.sh) runs in the foreground as a
 * child of the vitest main process, on a free loopback port, with nothing
 * persisted (`--save ''`, `--appendonly no`) and a fresh temporary `--dir`.
 * Setup resolves once redis logs "Ready to accept connections"; teardown stops
 * it and removes the dir. A server that cannot start fails the run with its log.
 *
 * Should the vitest main process go away without a teardown, redis does not
 * linger: it is killed on the process's "exit" event, and a detached watcher
 * (the KAFKA_WATCH_PID idea of scripts/kafka.sh) kills it and removes the dir
 * once the vitest process is gone, SIGKILL included.
 *
 * Tests read the URL with `inject("redisUrl")` (test/support/redis.ts), also
 * in process.env.STREAMGATE_TEST_REDIS_URL.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { freePort } from "./ports.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** URL of the test redis, "redis://127.0.0.1:PORT" (or REDIS_URL as given). */
    redisUrl: string;
  }
}

/** Bounds the wait for "Ready to accept connections" (redis starts in milliseconds; this is only a hang guard). */
const START_TIMEOUT_MS = 20_000;
/** Bounds the wait for redis to exit after SIGTERM before SIGKILL. */
const STOP_TIMEOUT_MS = 10_000;
/** How much of redis's log is kept for error messages. */
const LOG_KEEP_CHARS = 8_000;

/**
 * Kills redis and removes its dir once the watched process (vitest) is gone;
 * exits by itself when redis does. The command line check keeps a reused pid safe.
 */
const WATCHER = `
watch=$1 redis=$2 port=$3 dir=$4
while kill -0 "$watch" 2>/dev/null && kill -0 "$redis" 2>/dev/null; do sleep 1; done
if tr '\\0' ' ' <"/proc/$redis/cmdline" 2>/dev/null | grep -q "redis-server.*:$port"; then kill -TERM "$redis" 2>/dev/null; fi
rm -rf -- "$dir"
`;

/** A redis-server child that answers on its port. */
export interface Started {
  child: ChildProcess;
  port: number;
  dir: string;
  /** The tail of its log so far. */
  log: () => string;
}

/** Starts redis-server on `port`; resolves once it is ready to accept connections, rejects with its log if it exits first. */
export async function startRedis(port: number): Promise<Started> {
  const dir = await mkdtemp(join(tmpdir(), "streamgate-redis-"));
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
    "--daemonize",
    "no",
    "--logfile",
    "",
    "--loglevel",
    "notice",
  ];
  const child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  const append = (chunk: Buffer): void => {
    log = (log + chunk.toString("utf8")).slice(-LOG_KEEP_CHARS);
  };
  // Read to the end, not only until ready: an unread pipe would fill and block redis's logging.
  child.stdout!.on("data", append);
  child.stderr!.on("data", append);

  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`redis-server on 127.0.0.1:${port} not ready after ${START_TIMEOUT_MS} ms:\n${log}`));
      }, START_TIMEOUT_MS);
      const done = (error?: Error): void => {
        clearTimeout(timer);
        child.stdout!.off("data", onData);
        child.off("error", onError);
        child.off("close", onExit);
        if (error) reject(error);
        else resolve();
      };
      const onData = (): void => {
        if (log.includes("Ready to accept connections")) done();
      };
      const onError = (error: NodeJS.ErrnoException): void => {
        done(
          error.code === "ENOENT"
            ? new Error(
                "redis-server not found on PATH: run `bash scripts/tools.sh` (as root; it installs Debian's redis-server) or set REDIS_URL",
              )
            : error,
        );
      };
      const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
        done(new Error(`redis-server exited during startup (${signal ?? `exit code ${String(code)}`}):\n${log}`));
      };
      child.stdout!.on("data", onData);
      child.once("error", onError);
      // "close", not "exit": by then its output (the reason it stopped) has all been read.
      child.once("close", onExit);
    });
  } catch (error) {
    await stopRedis(child);
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return { child, port, dir, log: () => log };
}

/** SIGTERM (redis shuts down at once: nothing to save), SIGKILL after a bound; resolves once it has exited. */
export async function stopRedis(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

/** Starts the detached watcher of WATCHER for `started`; returns its pid (also its process group). */
function startWatcher(started: Started): number | undefined {
  const watcher = spawn(
    "bash",
    ["-c", WATCHER, "redis-watch", String(process.pid), String(started.child.pid), String(started.port), started.dir],
    // Its own process group: a Ctrl-C to vitest's group must not take the watcher down with it.
    { detached: true, stdio: "ignore" },
  );
  watcher.on("error", () => {}); // no bash: the "exit" handler below still covers a normal exit
  watcher.unref();
  return watcher.pid;
}

export default async function setup({ provide }: TestProject): Promise<() => Promise<void>> {
  const external = process.env.REDIS_URL;
  if (external) {
    provide("redisUrl", external);
    process.env.STREAMGATE_TEST_REDIS_URL = external;
    return async () => {};
  }

  let started: Started | undefined;
  // A port taken between choosing it and redis binding it is the only failure worth another try.
  for (let attempt = 1; started === undefined; attempt++) {
    try {
      started = await startRedis(await freePort());
    } catch (error) {
      if (!/Address already in use/.test(String(error)) || attempt >= 3) throw error;
    }
  }

  const { child, dir, log } = started;
  let stopping = false;
  // Tests would only see connection errors: say why, once, in the run's output.
  child.once("close", (code, signal) => {
    if (!stopping)
      console.error(`redis-server exited during the run (${signal ?? `exit code ${String(code)}`}):\n${log()}`);
  });
  const killOnExit = (): void => {
    child.kill("SIGKILL");
  };
  process.on("exit", killOnExit);
  const watcherPid = startWatcher(started);

  const url = `redis://127.0.0.1:${started.port}`;
  provide("redisUrl", url);
  process.env.STREAMGATE_TEST_REDIS_URL = url;

  return async () => {
    process.off("exit", killOnExit);
    stopping = true;
    try {
      await stopRedis(child);
    } finally {
      if (watcherPid !== undefined) {
        try {
          process.kill(-watcherPid, "SIGTERM"); // the watcher's group: bash and its `sleep`
        } catch {
          // already gone: it saw redis exit
        }
      }
      await rm(dir, { recursive: true, force: true });
    }
  };
}
