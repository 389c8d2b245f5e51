/**
 * CEL for stream filters and transforms: valid expressions compile and see
 * data, raw, headers, event_id and stream_id; a syntax error or an unknown name
 * is refused at compile time with INVALID_ARGUMENT naming the field; a failure
 * on one record raises CelEvalError; results convert to JSON.
 */

import { Code, type ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { CelEvalError, type CelRecord, celToJson, compileCel, passes } from "../src/processing/cel.js";
import { toConnectError } from "../src/rpc/errors.js";

/** A JSON record as the processor and fanout hand it to CEL. */
function jsonRecord(data: CelRecord["data"], extra: Partial<CelRecord> = {}): CelRecord {
  return {
    data,
    raw: new Uint8Array(0),
    headers: new Map([["region", "eu"]]),
    eventId: "evt-7",
    streamId: "sensors",
    ...extra,
  };
}

/** Compiles and runs `source` as a transform, returning its JSON. */
function transform(source: string, record: CelRecord): unknown {
  return celToJson(compileCel(source, "transform")(record));
}

/** The error compiling `source` throws, as a ConnectError. */
function compileError(source: string, field: string): ConnectError {
  try {
    compileCel(source, field);
  } catch (error) {
    return toConnectError(error);
  }
  throw new Error(`${source} compiled`);
}

describe("compileCel", () => {
  const reading = jsonRecord({ temp: 21.5, unit: "C", items: [1, 5, 2], tags: { site: "north" } });

  it("evaluates filters over every variable", () => {
    const holds = (source: string, record = reading) => passes(compileCel(source, "filter"), record);
    expect(holds("data.temp > 20.0")).toBe(true);
    expect(holds("data.temp > 30.0")).toBe(false);
    expect(holds('data.unit == "C" && data.tags.site == "north"')).toBe(true);
    expect(holds('headers["region"] == "eu"')).toBe(true);
    expect(holds('"region" in headers && !("zone" in headers)')).toBe(true);
    expect(holds('event_id == "evt-7" && stream_id.startsWith("sens")')).toBe(true);
    expect(holds("size(raw) == 0")).toBe(true);

    const raw = jsonRecord(null, { raw: new Uint8Array([0xca, 0xfe]) });
    expect(holds('raw == b"\\xca\\xfe" && data == null', raw)).toBe(true);
  });

  it("lets comprehension variables through, and evaluates them", () => {
    expect(passes(compileCel("data.items.exists(x, x > 4)", "filter"), reading)).toBe(true);
    expect(passes(compileCel("data.items.all(x, x > 4)", "filter"), reading)).toBe(false);
    expect(transform("data.items.map(n, n * 2.0)", reading)).toEqual([2, 10, 4]);
    expect(transform("data.items.filter(n, n > 1.0).size()", reading)).toBe(2);
  });

  it("runs transforms that build new JSON", () => {
    expect(
      transform('{"celsius": data.temp, "fahrenheit": data.temp * 9.0 / 5.0 + 32.0, "from": stream_id}', reading),
    ).toEqual({ celsius: 21.5, fahrenheit: 70.7, from: "sensors" });
    expect(transform("data.unit.lowerAscii()", reading)).toBe("c");
  });

  it("refuses a syntax error with INVALID_ARGUMENT naming the field", () => {
    for (const source of ["data.", "data.temp >", "(1 + 2", "data.temp > > 1"]) {
      const error = compileError(source, "processing.filter");
      expect(error.code, source).toBe(Code.InvalidArgument);
      expect(error.rawMessage, source).toMatch(/^processing\.filter is not a valid CEL expression: /);
    }
  });

  it("refuses unknown names with INVALID_ARGUMENT naming the field and the names", () => {
    const error = compileError("foo > 1", "filter");
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toBe(
      'filter uses unknown name "foo"; the variables are data, raw, headers, event_id, stream_id',
    );

    expect(compileError("payload.temp > 1.0 || tmp", "transform").rawMessage).toMatch(
      /^transform uses unknown name "payload", "tmp";/,
    );
    // A comprehension variable is bound only inside its own macro.
    expect(compileError("data.items.exists(x, x > 1) && x > 2", "filter").rawMessage).toMatch(/unknown name "x"/);
    expect(compileError("data.items.all(i, i > limit)", "filter").rawMessage).toMatch(/unknown name "limit"/);
  });

  it("accepts type names, which are identifiers but not variables", () => {
    expect(passes(compileCel("type(data.temp) == double", "filter"), reading)).toBe(true);
    expect(transform("int(data.temp)", reading)).toBe(21);
  });

  it("refuses an expression over the length limit before parsing it", () => {
    const error = compileError(`data.temp > ${"1".repeat(5000)}`, "filter");
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toMatch(/^filter is longer than \d+ characters \(CEL_MAX_EXPRESSION_LENGTH\)$/);
  });

  it("raises CelEvalError when an expression fails on a record", () => {
    const program = compileCel("data.temp > 20.0", "filter");
    expect(() => program(jsonRecord({ humidity: 40 }))).toThrow(CelEvalError);
    expect(() => program(jsonRecord({ humidity: 40 }))).toThrow(/temp/);
    expect(() => compileCel("1 / (size(data.items) - 3)", "transform")(reading)).toThrow(CelEvalError);
    // A filter must produce a bool; anything else is an evaluation error, not "false".
    expect(() => passes(compileCel("data.temp", "filter"), reading)).toThrow(CelEvalError);
  });
});

describe("celToJson", () => {
  const record = jsonRecord({ n: 3 });

  it("converts maps, lists and nested values", () => {
    expect(transform('{"a": [1, "two", true, null], "b": {"c": 2.5}}', record)).toEqual({
      a: [1, "two", true, null],
      b: { c: 2.5 },
    });
    expect(transform("data", record)).toEqual({ n: 3 });
  });

  it("writes map keys of every CEL key type as strings", () => {
    expect(transform('{1: "int", 2u: "uint", true: "bool", "s": "string"}', record)).toEqual({
      "1": "int",
      "2": "uint",
      true: "bool",
      s: "string",
    });
  });

  it("writes ints and uints as numbers when exact, as strings beyond 2^53", () => {
    expect(transform("[42, 7u, -9]", record)).toEqual([42, 7, -9]);
    expect(transform("9223372036854775807", record)).toBe("9223372036854775807");
    expect(transform("18446744073709551615u", record)).toBe("18446744073709551615");
    expect(transform("9007199254740991", record)).toBe(Number.MAX_SAFE_INTEGER);
  });

  it("writes bytes as base64", () => {
    expect(transform('b"hi"', record)).toBe("aGk=");
    expect(transform("raw", jsonRecord(null, { raw: new Uint8Array([0, 255]) }))).toBe("AP8=");
  });

  it("refuses numbers JSON cannot hold", () => {
    expect(() => transform("1.0 / 0.0", record)).toThrow(CelEvalError);
  });
});
