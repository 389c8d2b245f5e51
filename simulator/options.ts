/**
 * The simulator's command line (node:util parseArgs) and environment, typed
 * and validated: every bad value gives a message naming the option, the value
 * and what was expected, as the server's configuration does (exit code 2).
 */
import { parseArgs } from "node:util";
import { MIN_HS256_SECRET_BYTES } from "../src/config/config.js";
import { BURST_SECONDS, PATTERNS, type PatternName } from "./patterns.js";

/** The calls a run makes: SendData to a stream per client, or StartStream. */
const METHODS = ["send", "start"] as const;

/** One of {@link METHODS}. */
export type MethodName = (typeof METHODS)[number];

/** How clients authenticate: API keys (client i uses key i mod n), or HS256 JWTs minted per client. */
export type Credentials =
  | { kind: "keys"; keys: string[] }
  | { kind: "jwt"; secret: string; issuer: string | undefined; audience: string | undefined };

/** A run's settings. */
export interface SimOptions {
  /** The server's base URL, http:// or https://. */
  url: string;
  pattern: PatternName;
  /** Peak calls per second offered, all clients together. */
  rps: number;
  /** Seconds of load. */
  duration: number;
  /** Client identities, each with its own connection. */
  clients: number;
  /** The burst or wave period in seconds; undefined: the pattern's default. */
  period: number | undefined;
  method: MethodName;
  credentials: Credentials;
  /** The most calls in flight at once. */
  maxInFlight: number;
  /** Print the summary as one JSON object on stdout. */
  json: boolean;
}

/** What the command line asks for: help, or a run (with warnings to print first). */
export type Parsed = { help: true } | { help: false; options: SimOptions; warnings: string[] };

/** Bad options; {@link UsageError.problems} has one message per problem. */
export class UsageError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.length === 1 ? problems[0] : `invalid options:\n  - ${problems.join("\n  - ")}`);
    this.name = "UsageError";
  }
}

/** The defaults, as --help states them. */
const DEFAULTS = {
  url: "http://127.0.0.1:8080",
  pattern: "steady",
  rps: 20,
  duration: 30,
  clients: 3,
  method: "send",
  maxInFlight: 2000,
} as const;

/** The text of --help. */
export const HELP = `Usage: npm run simulate -- [options]

Sends calls to a running streamgate from several client identities, on a
schedule (open loop), and shows allowed, blocked and latency each second and a
summary at the end.

Options:
  --url URL             server (default: $STREAMGATE_URL or ${DEFAULTS.url})
  --pattern NAME        steady | burst | wave (default: ${DEFAULTS.pattern})
                          steady: --rps all the time
                          burst:  --rps for the first ${BURST_SECONDS} s of every period, 10 % of it otherwise
                          wave:   from 0 up to --rps and back over each period
  --rps N               peak calls per second, all clients together (default: ${DEFAULTS.rps})
  --duration S          seconds of load (default: ${DEFAULTS.duration})
  --clients K           client identities, one connection each (default: ${DEFAULTS.clients})
  --period S            burst or wave period in seconds (default: burst 5, wave 20)
  --method NAME         send: SendData to stream sim-<client> (started first)
                        start: StartStream of sim-<client> (default: ${DEFAULTS.method})
  --keys K1,K2,...      API keys; client i uses key i mod n (default: $STREAMGATE_API_KEYS,
                        else $STREAMGATE_API_KEY)
  --jwt-secret SECRET   mint an HS256 JWT per client, sub sim-1..sim-K (default:
                        $JWT_HS256_SECRET; $JWT_ISSUER and $JWT_AUDIENCE are honoured)
  --max-in-flight N     most calls in flight; calls due beyond it are not sent (default: ${DEFAULTS.maxInFlight})
  --json                print the summary as one JSON object on stdout
  -h, --help            show this help

Exit status: 0 the run completed (blocked calls are expected), 1 the server
could not be reached or refused the credentials, 2 bad options, 130 stopped by
Ctrl-C (the summary is still printed).
`;

/** Parses `argv` (without node and the script) with `env` for the defaults. Throws {@link UsageError}. */
export function parseOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): Parsed {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        url: { type: "string" },
        pattern: { type: "string" },
        rps: { type: "string" },
        duration: { type: "string" },
        clients: { type: "string" },
        period: { type: "string" },
        method: { type: "string" },
        keys: { type: "string" },
        "jwt-secret": { type: "string" },
        "max-in-flight": { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    throw new UsageError([parseArgsProblem(error)]);
  }
  if (values.help) return { help: true };

  const problems: string[] = [];
  const warnings: string[] = [];
  const pattern = oneOf("--pattern", values.pattern, PATTERNS, DEFAULTS.pattern, problems);
  const method = oneOf("--method", values.method, METHODS, DEFAULTS.method, problems);
  const clients = number("--clients", values.clients, DEFAULTS.clients, { min: 1, max: 1000, whole: true }, problems);
  const period =
    values.period === undefined
      ? undefined
      : number("--period", values.period, 0, { min: 0.001, max: 86_400 }, problems);
  if (period !== undefined && pattern === "steady") {
    problems.push("--period applies to the burst and wave patterns, not steady");
  } else if (period !== undefined && period > 0 && pattern === "burst" && period <= BURST_SECONDS) {
    problems.push(`--period=${JSON.stringify(values.period)} must be longer than the burst (${BURST_SECONDS} s)`);
  }
  const options: SimOptions = {
    url: url(values.url, env.STREAMGATE_URL, problems),
    pattern,
    rps: number("--rps", values.rps, DEFAULTS.rps, { min: 0.001, max: 1_000_000 }, problems),
    duration: number("--duration", values.duration, DEFAULTS.duration, { min: 0.001, max: 86_400 }, problems),
    clients,
    period,
    method,
    credentials: credentials(values.keys, values["jwt-secret"], env, clients, problems, warnings),
    maxInFlight: number(
      "--max-in-flight",
      values["max-in-flight"],
      DEFAULTS.maxInFlight,
      { min: 1, max: 1_000_000, whole: true },
      problems,
    ),
    json: values.json ?? false,
  };
  if (problems.length > 0) throw new UsageError(problems);
  return { help: false, options, warnings };
}

/** parseArgs's complaint, said the simulator's way. */
function parseArgsProblem(error: unknown): string {
  const { code, message } = error as { code?: string; message: string };
  // parseArgs quotes the option as given ('-x') or as declared ('-h, --help', '--rps <value>'): name the long form.
  const quoted = /'([^']*)'/.exec(message)?.[1] ?? "";
  const option = /--[\w-]+/.exec(quoted)?.[0] ?? quoted;
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") return `unknown option ${option}`;
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    if (message.includes("does not take an argument")) return `${option} takes no value`;
    if (message.includes("ambiguous"))
      return `${option} needs a value (for one starting with "-", write ${option}=-...)`;
    return `${option} needs a value`;
  }
  if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL")
    return `unexpected argument ${JSON.stringify(quoted)}: options start with --`;
  return message;
}

/** `raw` if it is one of `allowed`, else `fallback` when absent; a problem otherwise. */
function oneOf<T extends string>(
  name: string,
  raw: string | undefined,
  allowed: readonly T[],
  fallback: T,
  problems: string[],
): T {
  if (raw === undefined) return fallback;
  if ((allowed as readonly string[]).includes(raw)) return raw as T;
  problems.push(`${name}=${JSON.stringify(raw)} is not one of ${allowed.join(", ")}`);
  return fallback;
}

/** `raw` as a number within bounds (a whole one when `whole`), or `fallback` when absent; a problem otherwise. */
function number(
  name: string,
  raw: string | undefined,
  fallback: number,
  bounds: { min: number; max: number; whole?: boolean },
  problems: string[],
): number {
  if (raw === undefined) return fallback;
  const value = raw.trim() === "" ? NaN : Number(raw);
  const ok =
    Number.isFinite(value) && value >= bounds.min && value <= bounds.max && (!bounds.whole || Number.isInteger(value));
  if (ok) return value;
  const expected = bounds.whole
    ? `a whole number from ${bounds.min} to ${bounds.max}`
    : `a number greater than 0 and at most ${bounds.max}`;
  problems.push(`${name}=${JSON.stringify(raw)} must be ${expected}`);
  return fallback;
}

/** --url, else STREAMGATE_URL, else the default: an http:// or https:// URL. */
function url(flag: string | undefined, fromEnv: string | undefined, problems: string[]): string {
  const [name, raw] = flag !== undefined ? ["--url", flag] : fromEnv ? ["STREAMGATE_URL", fromEnv] : ["", DEFAULTS.url];
  let protocol = "";
  try {
    protocol = new URL(raw).protocol;
  } catch {
    // reported below
  }
  if (protocol === "http:" || protocol === "https:") return raw.replace(/\/+$/, "");
  problems.push(`${name}=${JSON.stringify(raw)} must be an http:// or https:// URL, e.g. ${DEFAULTS.url}`);
  return DEFAULTS.url;
}

/**
 * The credentials: --keys or --jwt-secret (not both), else STREAMGATE_API_KEYS
 * (or STREAMGATE_API_KEY), else JWT_HS256_SECRET. Warns when there are fewer
 * keys than clients: the server knows clients by key, so some share an identity.
 */
function credentials(
  keysFlag: string | undefined,
  secretFlag: string | undefined,
  env: NodeJS.ProcessEnv,
  clients: number,
  problems: string[],
  warnings: string[],
): Credentials {
  const none: Credentials = { kind: "keys", keys: [] };
  if (keysFlag !== undefined && secretFlag !== undefined) {
    problems.push("--keys and --jwt-secret are exclusive: give one");
    return none;
  }
  const envKeys = env.STREAMGATE_API_KEYS
    ? "STREAMGATE_API_KEYS"
    : env.STREAMGATE_API_KEY
      ? "STREAMGATE_API_KEY"
      : undefined;
  const [keysName, keysRaw] =
    keysFlag !== undefined ? ["--keys", keysFlag] : secretFlag === undefined && envKeys ? [envKeys, env[envKeys]!] : [];
  if (keysName !== undefined) {
    const keys = keysRaw!
      .split(",")
      .map((key) => key.trim())
      .filter((key) => key !== "");
    if (keys.length === 0) {
      problems.push(`${keysName} is empty: give one or more API keys, comma-separated`);
      return none;
    }
    if (keys.length < clients) {
      warnings.push(
        `${keys.length} key${keys.length === 1 ? "" : "s"} for ${clients} clients: client i uses key i mod ${keys.length}, ` +
          `so the server sees ${keys.length} identit${keys.length === 1 ? "y" : "ies"} (give one key per client for ${clients})`,
      );
    }
    return { kind: "keys", keys };
  }
  // Trimmed, as the server reads JWT_HS256_SECRET.
  const [secretName, secret] =
    secretFlag !== undefined ? ["--jwt-secret", secretFlag.trim()] : ["JWT_HS256_SECRET", env.JWT_HS256_SECRET?.trim()];
  if (secret === undefined || secret === "") {
    problems.push(
      secretFlag !== undefined
        ? "--jwt-secret is empty"
        : "no credential: give --keys (or set STREAMGATE_API_KEYS) or --jwt-secret (or set JWT_HS256_SECRET)",
    );
    return none;
  }
  const bytes = Buffer.byteLength(secret, "utf8");
  if (bytes < MIN_HS256_SECRET_BYTES) {
    // Never echo a secret: name it and say what is wrong.
    problems.push(
      `${secretName}: the secret is ${bytes} bytes; HS256 needs at least ${MIN_HS256_SECRET_BYTES} (as the server)`,
    );
    return none;
  }
  // Trimmed, as the server reads them: a stray space would otherwise fail every call.
  return {
    kind: "jwt",
    secret,
    issuer: env.JWT_ISSUER?.trim() || undefined,
    audience: env.JWT_AUDIENCE?.trim() || undefined,
  };
}
