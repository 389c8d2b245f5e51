/**
 * `npm run simulate`: traffic against a running streamgate from several client
 * identities, following a pattern, with a progress line each second on stderr
 * and a summary at the end on stdout (text, or JSON with --json).
 *
 * Exit status: 0 when the run completed (blocked calls are expected: showing
 * them is the point), 1 when the server could not be reached or refused the
 * credentials (said plainly), or when every call failed; 2 for bad options;
 * 130 when stopped with Ctrl-C (the summary is still printed; a second Ctrl-C
 * cancels the calls still in flight).
 */

import { setMaxListeners } from "node:events";
import { ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { SimClient } from "./client.js";
import { clientCredentials } from "./credentials.js";
import { HELP, parseOptions, type SimOptions, UsageError } from "./options.js";
import { makePattern } from "./patterns.js";
import { ProgressPrinter, progressLine } from "./progress.js";
import { runLoad } from "./run.js";
import { formatSummary, type Summary, summarize } from "./summary.js";

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_INTERRUPTED = 130;

/** Codes meaning the server would not take the credential. */
const REFUSED = new Set(["unauthenticated", "permission_denied"]);
/** Codes meaning no server answered. */
const UNREACHABLE = new Set(["unavailable", "deadline_exceeded"]);

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseOptions(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    say(`${error.message}\nsimulate: run with --help for the options`);
    return EXIT_USAGE;
  }
  if (parsed.help) {
    process.stdout.write(HELP);
    return EXIT_OK;
  }
  const { options, warnings } = parsed;
  for (const warning of warnings) say(`warning: ${warning}`);

  const printer = new ProgressPrinter(process.stderr);
  const stop = new AbortController();
  const cancel = new AbortController();
  // Each client's setup call listens to it.
  setMaxListeners(0, stop.signal);
  process.on("SIGINT", () => {
    printer.end();
    if (stop.signal.aborted) {
      say("cancelling the calls in flight");
      cancel.abort();
    } else {
      say("stopping; waiting for the calls in flight (Ctrl-C again to cancel them)");
      stop.abort();
    }
  });

  const credentials = await clientCredentials(options.credentials, options.clients, options.duration);
  const clients = credentials.map((credential, i) => new SimClient(i + 1, options.url, credential, options.method));
  try {
    const refusal = await setUp(clients, options, stop.signal);
    if (stop.signal.aborted) return EXIT_INTERRUPTED;
    if (refusal !== undefined) {
      say(refusal);
      return EXIT_FAILED;
    }
    say(
      `${options.pattern} at ${options.rps}/s for ${options.duration} s from ${clients.length} client${clients.length === 1 ? "" : "s"} ` +
        `(${[...new Set(credentials.map((c) => c.identity))].join(", ")}) to ${options.url}`,
    );
    const outcome = await runLoad({
      pattern: makePattern(options.pattern, options.rps, options.period),
      duration: options.duration,
      maxInFlight: options.maxInFlight,
      clients,
      stop: stop.signal,
      cancel: cancel.signal,
      onWindow: (figures) => printer.show(progressLine(figures)),
    });
    printer.end();
    const summary = summarize(options, clients, outcome);
    process.stdout.write(options.json ? `${JSON.stringify(summary)}\n` : formatSummary(summary));
    const failure = everyCallFailed(summary, credentials[0]!.kind);
    if (failure !== undefined) say(failure);
    return outcome.stopped ? EXIT_INTERRUPTED : failure !== undefined ? EXIT_FAILED : EXIT_OK;
  } finally {
    for (const client of clients) client.close();
  }
}

/**
 * Starts every client's stream; undefined when all could, else what went
 * wrong with the first that could not, said for people.
 */
async function setUp(clients: SimClient[], options: SimOptions, signal: AbortSignal): Promise<string | undefined> {
  const results = await Promise.allSettled(clients.map((client) => client.setup(signal)));
  const index = results.findIndex((result) => result.status === "rejected");
  if (index === -1) return undefined;
  const client = clients[index]!;
  const error = ConnectError.from((results[index] as PromiseRejectedResult).reason);
  const code = codeToString(error.code);
  const who = `client ${client.index}, ${client.credential.identity}`;
  if (REFUSED.has(code)) {
    return `the server refused the ${client.credential.kind}: ${code} (${who}: ${error.rawMessage})`;
  }
  if (UNREACHABLE.has(code)) return `could not reach the server at ${options.url}: ${code} (${error.rawMessage})`;
  return `${who}: StartStream of ${JSON.stringify(client.streamId)} failed: ${code} (${error.rawMessage})`;
}

/** Why the run failed when no call was either allowed or blocked; undefined otherwise. */
function everyCallFailed(summary: Summary, kind: "key" | "token"): string | undefined {
  if (summary.sent === 0 || summary.allowed + summary.blocked > 0) return undefined;
  const codes = Object.keys(summary.errors);
  if (codes.every((code) => REFUSED.has(code)))
    return `every call failed: the server refused the ${kind}: ${codes.join(", ")}`;
  if (codes.every((code) => UNREACHABLE.has(code)))
    return `every call failed: the server could not be reached (${codes.join(", ")})`;
  return `every call failed: ${codes.join(", ")}`;
}

/** Prints a message for people on stderr. */
function say(message: string): void {
  process.stderr.write(`simulate: ${message}\n`);
}

main().then(
  (code) => {
    process.exitCode = code;
    // Normally nothing is left to wait for; should a connection linger, do not hang on it.
    setTimeout(() => process.exit(code), 1000).unref();
  },
  (error: unknown) => {
    say(`failed: ${error instanceof Error ? error.stack : String(error)}`);
    process.exit(EXIT_FAILED);
  },
);
