/**
 * Runs command-line clients (grpcurl, buf curl, curl) as child processes for
 * tests: argument arrays (no shell), bounded run times, and readers for the
 * output they print.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The project root, where the tools are installed. */
export const PROJECT_DIR = fileURLToPath(new URL("../../", import.meta.url));

const TOOLS: Record<string, { path: string; install: string }> = {
  grpcurl: { path: ".tools/bin/grpcurl", install: "run `bash scripts/tools.sh`" },
  buf: { path: "node_modules/.bin/buf", install: "run `npm install` (@bufbuild/buf)" },
  curl: { path: "curl", install: "run `bash scripts/tools.sh` (installs curl)" },
};

/**
 * The absolute path of a tool the tests need, or an error that says how to
 * install it: a missing tool fails the test, it never skips it.
 */
export function toolPath(name: keyof typeof TOOLS & string): string {
  const tool = TOOLS[name]!;
  // A bare name is looked up on PATH; a relative path is under the project root.
  const candidates = tool.path.includes("/")
    ? [join(PROJECT_DIR, tool.path)]
    : (process.env.PATH ?? "").split(delimiter).map((dir) => join(dir, tool.path));
  const found = candidates.find(isExecutable);
  if (!found) throw new Error(`${name} is not installed (looked for ${tool.path}): ${tool.install}`);
  return found;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** How a command ended and what it printed. */
export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Options of {@link run}. */
export interface RunOptions {
  /** Written to the command's stdin, which is then closed. */
  input?: string;
  /** The command is killed, and the promise rejected, after this long. */
  timeoutMs?: number;
}

/** Runs `command` with `args` (no shell) to its end. */
export function run(command: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const child = spawnTool(command, args);
  child.stdin!.end(options.input ?? "");
  return finished(child, options.timeoutMs ?? 15_000);
}

/** Starts `command` with piped stdio and UTF-8 output, run from the project root, with `env` added to this process's environment. */
export function spawnTool(command: string, args: string[], env?: Record<string, string>): ChildProcess {
  const child = spawn(command, args, {
    cwd: PROJECT_DIR,
    env: env && { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  return child;
}

/** Collects a started child's output until it exits; kills it and rejects after `timeoutMs`. */
export function finished(child: ChildProcess, timeoutMs: number): Promise<RunResult> {
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk: string) => (stdout += chunk));
  child.stderr!.on("data", (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${child.spawnargs.join(" ")} did not finish in ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Resolves once the child's stdout, read so far, satisfies `ready` (or rejects if it exits first). */
export function untilStdout(child: ChildProcess, ready: (stdout: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    let stdout = "";
    const onData = (chunk: string) => {
      stdout += chunk;
      if (!ready(stdout)) return;
      child.stdout!.off("data", onData);
      child.off("close", onClose);
      resolve(stdout);
    };
    const onClose = (code: number | null) =>
      reject(new Error(`exited with ${code} before the expected output:\n${stdout}`));
    child.stdout!.on("data", onData);
    child.once("close", onClose);
  });
}

/**
 * Parses output made of JSON values one after another (grpcurl prints each
 * message as pretty-printed JSON); an incomplete last value is left out.
 */
export function parseJsonSequence(text: string): unknown[] {
  const values: unknown[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (inString) {
      if (char === "\\") i++;
      else if (char === '"') inString = false;
      continue;
    }
    if (char === '"') inString = true;
    else if (char === "{" || char === "[") {
      if (depth++ === 0) start = i;
    } else if (char === "}" || char === "]") {
      if (--depth === 0) values.push(JSON.parse(text.slice(start, i + 1)));
    }
  }
  return values;
}
