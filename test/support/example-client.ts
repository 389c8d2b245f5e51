/**
 * Runs an example client (examples/go, examples/python), which prints one
 * JSON line per step it takes ({"step": "start_stream", ...}), and reads
 * those steps back.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { finished, PROJECT_DIR, type RunResult, spawnTool } from "./clients-cli.js";

/** The Python example's virtualenv interpreter (scripts/python-client.sh makes it). */
export const PYTHON = join(PROJECT_DIR, ".tools/python-venv/bin/python");

/** Fails, saying how to make it, when the Python example's virtualenv is missing: a missing tool is never a skip. */
export function requirePythonVenv(): void {
  if (!existsSync(PYTHON)) {
    throw new Error(
      "the Python client's virtualenv is missing: run `bash scripts/python-client.sh` (npm test does, through scripts/tools.sh)",
    );
  }
}

/** One line the client printed: a step and what it saw. */
interface Step {
  step: string;
  [field: string]: unknown;
}

/** A finished client run, with its output parsed into steps. */
export type ClientRun = RunResult & { steps: Step[] };

/** Runs `command` with `args`, from the project directory, with `env` added to this process's environment. */
export async function runExampleClient(
  command: string,
  args: string[],
  env: Record<string, string>,
  timeoutMs: number,
): Promise<ClientRun> {
  const child = spawnTool(command, args, env);
  child.stdin!.end(); // the clients read nothing from stdin
  const result = await finished(child, timeoutMs);
  const steps = result.stdout
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as Step);
  return { ...result, steps };
}

/** The step named `name`, failing with everything the client printed when it is missing. */
export function stepOf(run: ClientRun, name: string): Step {
  const found = run.steps.find((step) => step.step === name);
  expect(found, `no "${name}" step (exit ${run.code})\n${run.stdout}\n${run.stderr}`).toBeDefined();
  return found!;
}
