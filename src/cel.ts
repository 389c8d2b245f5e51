/**
 * CEL expressions for stream filters and transforms (@bufbuild/cel), compiled
 * once when a stream or watch starts, so that a bad expression is refused there
 * with INVALID_ARGUMENT instead of failing on every record later.
 */
import {
  CelScalar,
  celEnv,
  isCelError,
  isCelList,
  isCelMap,
  isCelType,
  isCelUint,
  mapType,
  parse,
  plan,
  type CelValue,
} from "@bufbuild/cel";
import { strings } from "@bufbuild/cel/ext";
import { toJson, type JsonValue } from "@bufbuild/protobuf";
import { isReflectMessage } from "@bufbuild/protobuf/reflect";
import { invalidArgument } from "./errors.js";
import type { DecodedRecord } from "./records.js";
import { checkExpressionLength } from "./validation.js";

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
  "bool", "bytes", "double", "duration", "dyn", "int", "list", "map", "null_type", "string",
  "timestamp", "type", "uint",
]);

/** A parsed CEL syntax tree (the type comes from cel-spec, a dependency of @bufbuild/cel). */
type Expr = ReturnType<typeof parse>["expr"];

const decoder = new TextDecoder();

const env = celEnv({ variables: VARIABLES, funcs: strings });

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

/**
 * Compiles `source` or throws INVALID_ARGUMENT naming `field`, for syntax errors
 * and for names that are not variables (caught here, since evaluation would only
 * report them record by record).
 */
export function compileCel(source: string, field: string): CelProgram {
  checkExpressionLength(source, field);
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(source);
  } catch (error) {
    throw invalidArgument(`${field} is not a valid CEL expression: ${(error as Error).message}`);
  }
  const unknown = unknownIdentifiers(parsed.expr);
  if (unknown.length > 0) {
    throw invalidArgument(
      `${field} uses unknown name ${unknown.map((name) => `"${name}"`).join(", ")}; ` +
        `the variables are ${Object.keys(VARIABLES).join(", ")}`,
    );
  }
  const program = plan(env, parsed);
  return (record) => {
    const value = program({
      data: record.data as never,
      raw: record.raw,
      headers: record.headers,
      event_id: record.eventId,
      stream_id: record.streamId,
    });
    if (isCelError(value)) throw new CelEvalError(value.message);
    return value;
  };
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
