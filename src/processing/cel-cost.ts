/**
 * The cost budget of CEL evaluation. @bufbuild/cel (0.6.1) has no cost
 * tracking, so streamgate bounds evaluation itself, in two places:
 *
 * - At run time, a meter charged by every function call (in proportion to the
 *   size of its arguments and result) and by every turn of a comprehension (in
 *   proportion to the size of the loop body); when the budget runs out the
 *   evaluation is stopped by an exception and fails with reason `cel_cost`.
 * - At compile time, a worst-case estimate in the same unit, with literals at
 *   their real sizes and record-derived values (data, raw, headers...) taken as
 *   small: what does not depend on the record must fit the budget, or the
 *   expression is refused; what grows with the record is stopped by the meter.
 *
 * One unit is roughly one basic step of the evaluator (a call, a turn of a
 * loop, one element of a list or map, 16 characters of a string).
 */
import {
  type CelEnv,
  type CelList,
  type CelResult,
  type CelValue,
  isCelError,
  isCelList,
  isCelMap,
  type parse,
} from "@bufbuild/cel";

/** A parsed CEL syntax tree. */
export type Expr = ReturnType<typeof parse>["expr"];

/** Name of the function wrapped around each comprehension's loop condition; '@' keeps users from calling it. */
const METER = "@streamgate_meter";
/** Characters (or bytes) of a string that cost one unit. */
const CHARS_PER_UNIT = 16;
/** Characters of text that cost one unit per character... of pattern, for `matches` (a linear-time RE2). */
const REGEX_CHARS_PER_UNIT = 4;
/** What making an error costs (a call without a matching overload, or failing). */
const ERROR_UNITS = 4;
/** Functions whose work walks their arguments deeply (equality, membership, formatting). */
const DEEP = new Set(["_==_", "_!=_", "@in", "format", "string"]);

/** Raised inside an evaluation when its meter runs out; stops it at once. */
export class CostExceeded extends Error {
  override readonly name = "CostExceeded";
}

/** The cost spent by one evaluation, against its budget. */
export class Meter {
  used = 0;
  exceeded = false;
  constructor(readonly limit: number) {}

  /** Adds `units`; throws once the total is over the budget (and every time after). */
  charge(units: number): void {
    this.used += units;
    if (this.used > this.limit || this.exceeded) {
      this.exceeded = true;
      throw new CostExceeded("CEL cost budget exceeded");
    }
  }

  get remaining(): number {
    return Math.max(0, this.limit - this.used);
  }
}

// Evaluation is synchronous, so the meter of the evaluation running now is a
// module-level slot set around each call (and restored, for safety, after).
let current: Meter | undefined;

/**
 * Runs `evaluate` charging `meter`. The library makes each CEL error (a missing
 * field, a type mismatch, each error an `||` absorbs) an `Error`, whose stack
 * trace costs microseconds: no stack is captured meanwhile, so a loop making
 * errors costs what it is charged.
 */
export function withMeter<T>(meter: Meter, evaluate: () => T): T {
  const previous = current;
  const stackTraceLimit = Error.stackTraceLimit;
  current = meter;
  Error.stackTraceLimit = 0;
  try {
    return evaluate();
  } finally {
    current = previous;
    Error.stackTraceLimit = stackTraceLimit;
  }
}

/** The cost weight of a value, without looking inside list or map elements. */
function shallowWeight(value: CelValue | undefined): number {
  if (typeof value === "string") return Math.ceil(value.length / CHARS_PER_UNIT);
  if (value instanceof Uint8Array) return Math.ceil(value.length / CHARS_PER_UNIT);
  if (isCelList(value) || isCelMap(value)) return value.size;
  return 1;
}

const deepWeights = new WeakMap<object, number>();

/** The cost weight of a value and everything in it, counted up to `cap` at most (so counting is bounded too). */
function deepWeight(value: CelValue | undefined, cap: number): number {
  if (!isCelList(value) && !isCelMap(value)) return shallowWeight(value);
  const known = deepWeights.get(value);
  if (known !== undefined) return known;
  let total = 1;
  const items = isCelList(value) ? value : value.values();
  for (const item of items) {
    total += deepWeight(item as CelValue, cap - total);
    if (total > cap) return total;
  }
  deepWeights.set(value, total);
  return total;
}

const LIST_SYMBOL = Symbol.for("@bufbuild/cel/list");

/**
 * A list made by `+`, sharing its array with the list it extends when that list
 * was the array's last view, so a comprehension that appends one element per
 * turn (map, filter) costs linear, not quadratic, time. A view only ever reads
 * its first `size` elements, so extending the array in place is invisible to it.
 */
class AppendList {
  readonly [LIST_SYMBOL] = {};
  constructor(
    readonly items: CelValue[],
    readonly size: number,
  ) {}
  get(index: number): CelValue | undefined {
    return index >= 0 && index < this.size ? this.items[index] : undefined;
  }
  *values(): IterableIterator<CelValue> {
    for (let i = 0; i < this.size; i++) yield this.items[i]!;
  }
  [Symbol.iterator](): IterableIterator<CelValue> {
    return this.values();
  }
}

/** `left + right` for lists, charging `meter` for the elements copied. */
function appendLists(meter: Meter, left: CelList, right: CelList): CelValue {
  let items: CelValue[];
  if (left instanceof AppendList && left.size === left.items.length) {
    meter.charge(1 + right.size);
    items = left.items;
  } else {
    meter.charge(1 + left.size + right.size);
    items = Array.from(left);
  }
  for (const item of right) items.push(item);
  return new AppendList(items, items.length) as unknown as CelValue;
}

/** The longest string `text.replace(old, replacement[, n])` can return, in characters. */
function replaceBound(args: CelValue[], target: CelValue | undefined): number {
  const [old, replacement] = args;
  if (typeof target !== "string" || typeof old !== "string" || typeof replacement !== "string") return 0;
  const occurrences = old.length === 0 ? target.length + 1 : Math.floor(target.length / old.length);
  return target.length + occurrences * replacement.length;
}

/** Units charged before a call runs, so no single call can do (or build) more than the budget allows. */
function costBefore(name: string, target: CelValue | undefined, args: CelValue[], meter: Meter): number {
  const operands = target === undefined ? args : [target, ...args];
  let units = 1;
  const deep = DEEP.has(name);
  for (const operand of operands) units += deep ? deepWeight(operand, meter.remaining + 1) : shallowWeight(operand);
  if (name === "matches") {
    const [text, pattern] = operands;
    if (typeof text === "string" && typeof pattern === "string") {
      units += Math.ceil(((text.length + 1) * (pattern.length + 1)) / REGEX_CHARS_PER_UNIT);
    }
  }
  if (name === "replace") units += Math.ceil(replaceBound(args, target) / CHARS_PER_UNIT);
  return units;
}

interface FuncGroupLike {
  readonly name: string;
  call(id: number, target: CelValue | undefined, args: CelValue[]): CelValue | CelResult | undefined;
  [Symbol.iterator](): IterableIterator<unknown>;
}

/** Wraps a function group so that each call charges the current meter. */
function meteredGroup(group: FuncGroupLike): FuncGroupLike {
  return {
    name: group.name,
    [Symbol.iterator]: () => group[Symbol.iterator](),
    call(id, target, args) {
      const meter = current;
      if (!meter) return group.call(id, target, args);
      if (group.name === "_+_" && target === undefined && isCelList(args[0]) && isCelList(args[1])) {
        return appendLists(meter, args[0], args[1]);
      }
      meter.charge(costBefore(group.name, target, args, meter));
      const result = group.call(id, target, args);
      // No overload, or an error: the evaluator builds an error (and a message naming the types).
      meter.charge(result === undefined || isCelError(result) ? ERROR_UNITS : shallowWeight(result as CelValue));
      return result;
    },
  };
}

/** The per-turn charge of a comprehension: `@streamgate_meter(condition, units)` returns `condition`. */
const meterGroup: FuncGroupLike = {
  name: METER,
  *[Symbol.iterator]() {},
  call(_id, _target, args) {
    current?.charge(Number(args[1]));
    return args[0];
  },
};

/**
 * An environment for `plan` whose functions charge the current meter. `plan`
 * reads only `funcs`, `registry` and `namespace` of the environment.
 */
export function meteredEnv(env: CelEnv): CelEnv {
  const groups = new Map<string, FuncGroupLike | undefined>();
  const funcs = {
    [Symbol.iterator]: () => env.funcs[Symbol.iterator](),
    find(name: string) {
      if (name === METER) return meterGroup;
      if (!groups.has(name)) {
        const group = env.funcs.find(name) as FuncGroupLike | undefined;
        groups.set(name, group && meteredGroup(group));
      }
      return groups.get(name);
    },
  };
  return { namespace: env.namespace, registry: env.registry, variables: env.variables, funcs } as unknown as CelEnv;
}

/** Number of nodes of a syntax tree. */
function nodeCount(expr: Expr | undefined): number {
  let count = 0;
  forEachNode(expr, () => count++);
  return count;
}

/** The direct children of a node. */
function childrenOf(expr: Expr): Expr[] {
  const kind = expr.exprKind;
  const children: (Expr | undefined)[] = [];
  switch (kind.case) {
    case "selectExpr":
      children.push(kind.value.operand);
      break;
    case "callExpr":
      children.push(kind.value.target, ...kind.value.args);
      break;
    case "listExpr":
      children.push(...kind.value.elements);
      break;
    case "structExpr":
      for (const entry of kind.value.entries) {
        if (entry.keyKind.case === "mapKey") children.push(entry.keyKind.value);
        children.push(entry.value);
      }
      break;
    case "comprehensionExpr": {
      const c = kind.value;
      children.push(c.iterRange, c.accuInit, c.loopCondition, c.loopStep, c.result);
      break;
    }
    default:
      break;
  }
  return children.filter((child): child is Expr => child !== undefined);
}

/** Calls `visit` on `expr` and every node under it, parents first. */
function forEachNode(expr: Expr | undefined, visit: (node: Expr) => void): void {
  if (!expr) return;
  visit(expr);
  for (const child of childrenOf(expr)) forEachNode(child, visit);
}

/** Depth of a syntax tree (1 for a leaf). */
export function treeDepth(expr: Expr | undefined): number {
  if (!expr) return 0;
  let deepest = 0;
  for (const child of childrenOf(expr)) deepest = Math.max(deepest, treeDepth(child));
  return deepest + 1;
}

/**
 * Wraps each comprehension's loop condition in the meter function, charging
 * per turn the size of the loop's body (what a turn evaluates besides calls,
 * which charge for themselves: list and map literals, field accesses).
 * Changes `expr` in place.
 */
export function meterComprehensions(expr: Expr): void {
  forEachNode(expr, (node) => {
    if (node.exprKind.case !== "comprehensionExpr") return;
    const c = node.exprKind.value;
    const condition = c.loopCondition;
    if (!condition) return;
    const units = 1 + nodeCount(condition) + nodeCount(c.loopStep);
    c.loopCondition = {
      ...condition,
      exprKind: {
        case: "callExpr",
        value: {
          $typeName: "cel.expr.Expr.Call",
          function: METER,
          args: [
            condition,
            {
              ...condition,
              exprKind: {
                case: "constExpr",
                value: { $typeName: "cel.expr.Constant", constantKind: { case: "int64Value", value: BigInt(units) } },
              },
            },
          ],
        },
      },
    } as Expr;
  });
}

/** What the estimator knows of a value: its weight, and the weight of one of its elements. */
interface Size {
  weight: number;
  element: number;
}

const SMALL: Size = { weight: 1, element: 1 };

/**
 * The worst-case cost of evaluating `expr` once, in meter units, with literals
 * at their real sizes and record-derived values taken as small (see the file
 * comment). Call before `meterComprehensions`.
 */
export function estimateCost(expr: Expr): number {
  return estimate(expr, new Map()).cost;
}

function estimate(expr: Expr | undefined, bound: ReadonlyMap<string, Size>): Size & { cost: number } {
  if (!expr) return { ...SMALL, cost: 0 };
  const kind = expr.exprKind;
  switch (kind.case) {
    case "constExpr": {
      const value = kind.value.constantKind.value;
      const length = typeof value === "string" || value instanceof Uint8Array ? value.length : 0;
      return { weight: Math.max(1, Math.ceil(length / CHARS_PER_UNIT)), element: 1, cost: 1 };
    }
    case "identExpr":
      return { ...(bound.get(kind.value.name) ?? SMALL), cost: 1 };
    case "selectExpr":
      return { ...SMALL, cost: 1 + estimate(kind.value.operand, bound).cost };
    case "listExpr": {
      let cost = 1;
      let element = 1;
      for (const item of kind.value.elements) {
        const size = estimate(item, bound);
        cost += size.cost;
        element = Math.max(element, size.weight);
      }
      return { weight: Math.max(1, kind.value.elements.length), element, cost };
    }
    case "structExpr": {
      let cost = 1;
      let element = 1;
      for (const entry of kind.value.entries) {
        if (entry.keyKind.case === "mapKey") cost += estimate(entry.keyKind.value, bound).cost;
        const size = estimate(entry.value, bound);
        cost += size.cost;
        element = Math.max(element, size.weight);
      }
      return { weight: Math.max(1, kind.value.entries.length), element, cost };
    }
    case "callExpr":
      return estimateCall(kind.value, bound);
    case "comprehensionExpr": {
      const c = kind.value;
      const range = estimate(c.iterRange, bound);
      const init = estimate(c.accuInit, bound);
      const turns = range.weight;
      const inner = new Map(bound);
      inner.set(c.iterVar, { weight: range.element, element: 1 });
      if (c.iterVar2 !== "") inner.set(c.iterVar2, { weight: range.element, element: 1 });
      inner.set(c.accuVar, init);
      const condition = estimate(c.loopCondition, inner);
      const step = estimate(c.loopStep, inner);
      // An accumulator that grows by a step's worth each turn (map, filter) ends `turns` steps larger.
      const growth = Math.max(0, step.weight - init.weight);
      const accu = { weight: init.weight + turns * growth, element: Math.max(init.element, step.element) };
      inner.set(c.accuVar, accu);
      const perTurn = 1 + nodeCount(c.loopCondition) + nodeCount(c.loopStep) + condition.cost + step.cost;
      const result = estimate(c.result, inner);
      return {
        weight: result.weight,
        element: result.element,
        cost: range.cost + init.cost + turns * perTurn + result.cost,
      };
    }
    default:
      return { ...SMALL, cost: 1 };
  }
}

type Call = Extract<Expr["exprKind"], { case: "callExpr" }>["value"];

function estimateCall(call: Call, bound: ReadonlyMap<string, Size>): Size & { cost: number } {
  const operands = [...(call.target ? [call.target] : []), ...call.args].map((arg) => estimate(arg, bound));
  let cost = 1;
  for (const operand of operands) cost += operand.cost;
  const weights = operands.map((operand) => operand.weight);
  const sum = weights.reduce((a, b) => a + b, 0);
  let result: Size = SMALL;
  switch (call.function) {
    case "_&&_":
    case "_||_":
    case "@not_strictly_false":
    case "!_":
      return { ...SMALL, cost };
    case "_?_:_":
      return {
        weight: Math.max(weights[1] ?? 1, weights[2] ?? 1),
        element: Math.max(operands[1]?.element ?? 1, operands[2]?.element ?? 1),
        cost,
      };
    case "_[_]":
      return { weight: operands[0]?.element ?? 1, element: 1, cost };
    case "_+_":
      result = { weight: sum, element: Math.max(...operands.map((operand) => operand.element)) };
      break;
    case "join":
    case "format":
      result = { weight: sum * 2, element: 1 };
      break;
    case "split":
      result = { weight: (weights[0] ?? 1) * CHARS_PER_UNIT, element: weights[0] ?? 1 };
      break;
    case "replace": {
      // Worst case: the replacement at every position of the text.
      const text = (weights[0] ?? 1) * CHARS_PER_UNIT;
      const replacement = weights[2] ?? 1;
      result = { weight: (weights[0] ?? 1) + (text + 1) * replacement, element: 1 };
      break;
    }
    case "matches":
      cost += Math.ceil(
        (((weights[0] ?? 1) * CHARS_PER_UNIT + 1) * ((weights[1] ?? 1) * CHARS_PER_UNIT + 1)) / REGEX_CHARS_PER_UNIT,
      );
      break;
    default:
      break;
  }
  return { ...result, cost: cost + sum + result.weight };
}
