/**
 * CEL expressions for stream filters and transforms (@bufbuild/cel), compiled
 * once when a stream or watch starts, so that a bad expression is refused there
 * with INVALID_ARGUMENT instead of failing on every record later.
 */
import {
  type CelResult,
  CelScalar,
  type CelValue,
  celEnv,
  celList,
  celMap,
  isCelError,
  isCelList,
  isCelMap,
  isCelType,
  isCelUint,
  mapType,
  parse,
  plan,
} from "@bufbuild/cel";
import { strings } from "@bufbuild/cel/ext";
import { type JsonValue, toJson } from "@bufbuild/protobuf";
import { isReflectMessage } from "@bufbuild/protobuf/reflect";
import { invalidInput } from "../common/domain-error.js";
import { CEL_DEFAULTS, type CelConfig } from "../config/config.js";
import { checkExpressionLength } from "../streams/validation.js";
import type { DecodedRecord } from "../topics/record-format.js";
import {
  CostExceeded,
  estimateCost,
  Meter,
  meterComprehensions,
  meteredEnv,
  treeDepth,
  withMeter,
} from "./cel-cost.js";

/** The variables every expression may use. */
const VARIABLES = {
  data: CelScalar.DYN,
  raw: CelScalar.BYTES,
  headers: mapType(CelScalar.STRING, CelScalar.STRING),
  event_id: CelScalar.STRING,
  stream_id: CelScalar.STRING,
};

/** Identifiers that are not variables but resolve anyway: type names. */
const TYPE_NAMES = new Set([
  "bool",
  "bytes",
  "double",
  "duration",
  "dyn",
  "int",
  "list",
  "map",
  "null_type",
  "string",
  "timestamp",
  "type",
  "uint",
]);

/** A parsed CEL syntax tree (the type comes from cel-spec, a dependency of @bufbuild/cel). */
type Expr = ReturnType<typeof parse>["expr"];

const decoder = new TextDecoder();

const env = celEnv({ variables: VARIABLES, funcs: strings });
/** The same environment, with every function call charging the evaluation's meter (see cel-cost.ts). */
const metered = meteredEnv(env);

/** Deepest bracket nesting accepted: the parser recurses per level and would run out of stack near 500. */
const MAX_NESTING = 100;
/** Deepest syntax tree accepted (operator chains such as `a || b || ...`); evaluation recurses per level. */
const MAX_TREE_DEPTH = 250;
/** JSON nesting converted up front to CEL values (deeper levels are converted by the library on access). */
const MAX_CONVERTED_DEPTH = 64;

/** What an expression sees of a record. */
export interface CelRecord {
  /** The JSON payload, or null for raw payloads. */
  data: JsonValue;
  /** The raw bytes (empty for JSON payloads). */
  raw: Uint8Array;
  headers: ReadonlyMap<string, string>;
  eventId: string;
  streamId: string;
}

/**
 * What CEL sees of a decoded record; `data` is the already parsed JSON when
 * the caller has it (the fanout keeps it per result), else it is parsed here.
 */
export function celRecordOf(record: DecodedRecord, data?: JsonValue): CelRecord {
  const json = record.payload.kind === "json";
  return {
    data: data ?? (json ? (JSON.parse(decoder.decode(record.payload.bytes)) as JsonValue) : null),
    raw: json ? new Uint8Array(0) : record.payload.bytes,
    headers: new Map(Object.entries(record.headers)),
    eventId: record.eventId,
    streamId: record.streamId,
  };
}

/** A compiled expression. */
export type CelProgram = (record: CelRecord) => CelValue;

/**
 * Raised when an expression fails on a record: `cel_error` for a missing
 * field or a type mismatch, `cel_cost` when the evaluation ran out of its cost
 * budget and was stopped.
 */
export class CelEvalError extends Error {
  override readonly name = "CelEvalError";
  constructor(
    message: string,
    readonly reason: "cel_error" | "cel_cost" = "cel_error",
  ) {
    super(message);
  }
}

/** Why an expression was refused: too long, or too costly (cost, nesting). */
export type CelRefusal = "cel_too_long" | "cel_too_costly";

/**
 * Compiles expressions within the CEL settings (CEL_MAX_EXPRESSION_LENGTH,
 * CEL_MAX_COST); one is created from the configuration and shared by the
 * StreamService, the processor and the fanout.
 */
export class CelCompiler {
  constructor(
    readonly limits: CelConfig = CEL_DEFAULTS,
    /** Told of each expression refused for its length or cost (a metric). */
    private readonly onRefused: (reason: CelRefusal) => void = () => undefined,
    /** Told of each evaluation that fails (a metric), when the caller does not count failures itself. */
    private readonly onEvalFailed?: (reason: CelEvalError["reason"]) => void,
  ) {}

  /** See `compileCel`. */
  compile(source: string, field: string): CelProgram {
    const program = compileCel(source, field, this.limits, this.onRefused);
    const onEvalFailed = this.onEvalFailed;
    if (!onEvalFailed) return program;
    return (record) => {
      try {
        return program(record);
      } catch (error) {
        if (error instanceof CelEvalError) onEvalFailed(error.reason);
        throw error;
      }
    };
  }
}

/**
 * Compiles `source` or throws INVALID_ARGUMENT naming `field`: for syntax errors,
 * for names that are not variables (caught here, since evaluation would only
 * report them record by record), for an expression longer than
 * `limits.maxExpressionLength`, and for one whose worst-case cost (record-derived
 * values taken as small, see cel-cost.ts) is over `limits.maxCost`. Each run of
 * the program is metered and stopped (CelEvalError "cel_cost") past `limits.maxCost`.
 * `onRefused` is told of each refusal for length or cost (a metric).
 */
export function compileCel(
  source: string,
  field: string,
  limits: CelConfig = CEL_DEFAULTS,
  onRefused: (reason: CelRefusal) => void = () => undefined,
): CelProgram {
  const refusal = (reason: CelRefusal, message: string) => {
    onRefused(reason);
    return invalidInput(message);
  };
  if (source.length > limits.maxExpressionLength) onRefused("cel_too_long");
  checkExpressionLength(source, field, limits.maxExpressionLength);
  if (nestingDepth(source) > MAX_NESTING) {
    throw refusal("cel_too_costly", `${field} nests brackets more than ${MAX_NESTING} deep`);
  }
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(source);
  } catch (error) {
    throw invalidInput(`${field} is not a valid CEL expression: ${(error as Error).message}`);
  }
  if (treeDepth(parsed.expr) > MAX_TREE_DEPTH) {
    throw refusal("cel_too_costly", `${field} is nested more than ${MAX_TREE_DEPTH} operations deep`);
  }
  const unknown = unknownIdentifiers(parsed.expr);
  if (unknown.length > 0) {
    throw invalidInput(
      `${field} uses unknown name ${unknown.map((name) => `"${name}"`).join(", ")}; ` +
        `the variables are ${Object.keys(VARIABLES).join(", ")}`,
    );
  }
  const cost = parsed.expr ? estimateCost(parsed.expr) : 0;
  if (cost > limits.maxCost) {
    throw refusal(
      "cel_too_costly",
      `${field} may cost up to ${formatCost(cost)} per record, over the budget of ${limits.maxCost} (CEL_MAX_COST); ` +
        "use smaller literals or fewer nested comprehensions",
    );
  }
  if (parsed.expr) meterComprehensions(parsed.expr);
  const program = plan(metered, parsed);
  return (record) => {
    const meter = new Meter(limits.maxCost);
    let value: CelValue | CelResult;
    try {
      value = withMeter(meter, () =>
        program({
          data: celData(record.data, 0) as never,
          raw: record.raw,
          headers: record.headers,
          event_id: record.eventId,
          stream_id: record.streamId,
        }),
      );
    } catch (error) {
      if (!(error instanceof CostExceeded)) throw error;
      value = null;
    }
    // Checked first: `||` and `&&` absorb errors, so a stopped evaluation may still return a value.
    if (meter.exceeded) {
      throw new CelEvalError(`${field} exceeded its cost budget of ${limits.maxCost} (CEL_MAX_COST)`, "cel_cost");
    }
    if (isCelError(value)) throw new CelEvalError(value.message);
    return value;
  };
}

function formatCost(cost: number): string {
  return Number.isFinite(cost) && cost < 1e15 ? String(Math.ceil(cost)) : "more than 1e15";
}

const convertedData = new WeakMap<object, CelValue>();

/**
 * Converts a record's JSON to CEL values once (and once per parsed payload,
 * which the fanout shares between watchers): the library converts an object
 * on each access, copying its entries, which a loop would repeat without being
 * charged for it.
 */
function celData(value: JsonValue, depth: number): CelValue {
  if (value === null || typeof value !== "object" || depth > MAX_CONVERTED_DEPTH) return value as CelValue;
  const known = convertedData.get(value);
  if (known !== undefined) return known;
  const converted = Array.isArray(value)
    ? celList(value.map((item) => celData(item, depth + 1)))
    : celMap(new Map(Object.entries(value).map(([key, item]) => [key, celData(item as JsonValue, depth + 1)])));
  convertedData.set(value, converted);
  return converted;
}

/**
 * How deep `source` nests brackets, outside string literals (quoted with ' or ",
 * tripled or not, raw with an r prefix or with backslash escapes).
 */
function nestingDepth(source: string): number {
  let depth = 0;
  let deepest = 0;
  for (let i = 0; i < source.length; i++) {
    const char = source[i]!;
    if (char === "(" || char === "[" || char === "{") {
      deepest = Math.max(deepest, ++depth);
    } else if (char === ")" || char === "]" || char === "}") {
      depth--;
    } else if (char === "'" || char === '"') {
      const raw = /[rR]/.test(source[i - 1] ?? "") || /[rR]/.test(source[i - 2] ?? "");
      const quote = source.startsWith(char.repeat(3), i) ? char.repeat(3) : char;
      let j = i + quote.length;
      while (j < source.length && !source.startsWith(quote, j)) j += !raw && source[j] === "\\" ? 2 : 1;
      i = j + quote.length - 1;
    }
  }
  return deepest;
}

/** Evaluates a filter; anything but `true` drops the record. */
export function passes(program: CelProgram, record: CelRecord): boolean {
  const value = program(record);
  if (typeof value !== "boolean") throw new CelEvalError(`filter returned ${typeof value}, not a bool`);
  return value;
}

/** Converts a CEL value to JSON (bytes as base64, 64-bit integers as numbers when exact). */
export function celToJson(value: CelValue): JsonValue {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new CelEvalError("transform produced a number JSON cannot hold");
    return value;
  }
  if (typeof value === "bigint") return bigintToJson(value);
  if (isCelUint(value)) return bigintToJson(value.value);
  if (value instanceof Uint8Array) return Buffer.from(value).toString("base64");
  if (isCelList(value)) return Array.from(value, celToJson);
  if (isCelMap(value)) {
    const object: Record<string, JsonValue> = {};
    for (const [key, item] of value) {
      object[typeof key === "object" ? String(key.value) : String(key)] = celToJson(item);
    }
    return object;
  }
  if (isCelType(value)) return value.name;
  if (isReflectMessage(value)) return toJson(value.desc, value.message);
  throw new CelEvalError("transform produced a value JSON cannot hold");
}

function bigintToJson(value: bigint): JsonValue {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(value)
    : value.toString();
}

/** Names used as free identifiers in `expr` that are neither variables nor types. */
function unknownIdentifiers(expr: Expr): string[] {
  const unknown = new Set<string>();
  const visit = (node: Expr | undefined, bound: ReadonlySet<string>): void => {
    if (!node) return;
    const kind = node.exprKind;
    switch (kind.case) {
      case "identExpr": {
        const name = kind.value.name;
        if (!(name in VARIABLES) && !TYPE_NAMES.has(name) && !bound.has(name)) unknown.add(name);
        return;
      }
      case "selectExpr":
        return visit(kind.value.operand, bound);
      case "callExpr":
        visit(kind.value.target, bound);
        for (const arg of kind.value.args) visit(arg, bound);
        return;
      case "listExpr":
        for (const element of kind.value.elements) visit(element, bound);
        return;
      case "structExpr":
        for (const entry of kind.value.entries) {
          if (entry.keyKind.case === "mapKey") visit(entry.keyKind.value, bound);
          visit(entry.value, bound);
        }
        return;
      case "comprehensionExpr": {
        const c = kind.value;
        visit(c.iterRange, bound);
        visit(c.accuInit, bound);
        const inner = new Set([...bound, c.iterVar, c.iterVar2, c.accuVar].filter((name) => name !== ""));
        visit(c.loopCondition, inner);
        visit(c.loopStep, inner);
        visit(c.result, inner);
        return;
      }
      default:
        return;
    }
  };
  visit(expr, new Set());
  return [...unknown];
}
