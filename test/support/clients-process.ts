/**
 * Runs the real entry point (src/main.ts through tsx) as a child process, the
 * way an operator starts it, and follows its JSON log lines on stdout.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { PROJECT_DIR } from "./clients-cli.js";
import { uniqueTopicPrefix, withTestApiKey } from "./server.js";

/** One pino log line. */
export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A streamgate process started by {@link spawnStreamgate}. */
export interface StreamgateProcess {
  child: ChildProcess;
  /** Every log line read so far, in order. */
  logs: LogLine[];
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Resolves with the first log line (already read or still to come) matching `match`; rejects if the process exits first. */
  waitForLog(match: (line: LogLine) => boolean): Promise<LogLine>;
  /** Resolves when the process has exited and its output is read, with its exit code and signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `node --import tsx src/main.ts` with `env` added to this process's
 * environment, and `API_KEYS=test:<TEST_API_KEY>` unless `env` configures
 * credentials (see withTestApiKey), and topics of its own (a unique
 * KAFKA_TOPIC_PREFIX unless `env` sets one: with KAFKA_BROKERS in the
 * environment, a long-lived broker keeps earlier runs' streams). It is not
 * waited for: see {@link listeningPort}.
 */
export function spawnStreamgate(env: Record<string, string>): StreamgateProcess {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    cwd: PROJECT_DIR,
    env: { ...process.env, KAFKA_TOPIC_PREFIX: uniqueTopicPrefix(), ...withTestApiKey(env) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: LogLine[] = [];
  const waiters = new Set<(line: LogLine) => void>();
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  createInterface({ input: child.stdout! }).on("line", (text) => {
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      line = { level: 0, msg: text }; // not JSON: kept, so a waiter's failure message can show it
    }
    logs.push(line);
    for (const waiter of [...waiters]) waiter(line);
  });
  // "close", not "exit": it comes after stdout has ended, so every log line has been read by then.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("close", (code, signal) => resolve({ code, signal })),
  );

  const waitForLog = (match: (line: LogLine) => boolean) => {
    const seen = logs.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise<LogLine>((resolve, reject) => {
      const waiter = (line: LogLine) => {
        if (!match(line)) return;
        waiters.delete(waiter);
        resolve(line);
      };
      waiters.add(waiter);
      void exited.then(({ code, signal }) => {
        if (!waiters.delete(waiter)) return;
        reject(new Error(`streamgate exited (${code ?? signal}) before the expected log line\n${stderr}`));
      });
    });
  };
  return { child, logs, stderr: () => stderr, waitForLog, exited };
}

/** Waits for the "streamgate listening" log line and returns the port it names. */
export async function listeningPort(process: StreamgateProcess): Promise<number> {
  const line = await process.waitForLog((line) => line.msg.startsWith("streamgate listening"));
  return line.port as number;
}

/** Kills a spawned streamgate still running: a failed test must not leave the process behind. */
export async function killLeftover(running: StreamgateProcess | undefined): Promise<void> {
  if (running && running.child.exitCode === null && running.child.signalCode === null) {
    running.child.kill("SIGKILL");
    await running.exited;
  }
}
