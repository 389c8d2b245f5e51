// Lifts async generator closures out of the functions that make them.
//
// connect builds its pipeline per call from transforms such as
// `function (iterable) { return (async function* () { ... }).apply(this, arguments) }`:
// a new async generator function per call, and with it a prototype, a map and
// a hidden class of its own for the generator it makes, so every generator of
// every call has another shape and the code that drives them runs megamorphic.
// Here such a function becomes one module-level async generator that takes the
// variables it read from the functions around it as parameters:
//
//   (async function* f() { B }).apply(this, arguments)  ->  f$lifted0.call(this, a, b)
//   ...                                                      async function* f$lifted0(a, b) { B }
//
// Only when that cannot change what B sees: every variable passed is declared
// before the function was made and never assigned after its declaration, B
// does not use `arguments`, and B does not refer to its own name. Anything
// else is left as it was.
import { parse } from "acorn";
import { analyze } from "eslint-scope";
import { sourceRewriter } from "./source-rewriter.mjs";

/** `(async function* ...() {...}).apply(this, arguments)`, as nativeAsyncGenerators writes it. */
function isAppliedAsyncGenerator(node) {
  const { callee } = node;
  return (
    node.type === "CallExpression" &&
    callee.type === "MemberExpression" &&
    callee.property.name === "apply" &&
    callee.object.type === "FunctionExpression" &&
    callee.object.async &&
    callee.object.generator &&
    node.arguments.length === 2 &&
    node.arguments[0].type === "ThisExpression" &&
    node.arguments[1].name === "arguments"
  );
}

/** The rewritten source and how many functions it lifted. */
export function liftAsyncGenerators(source) {
  // eslint-scope reads `range`.
  const ast = parse(source, { ecmaVersion: "latest", sourceType: "module", ranges: true });
  const scopes = analyze(ast, { ecmaVersion: 2022, sourceType: "module" });

  /** The names of the variables `fn` reads from the functions around it, or undefined if it must stay. */
  const capturedBy = (fn) => {
    const scope = scopes.acquire(fn);
    if ((scope.set.get("arguments")?.references.length ?? 0) > 0) return undefined;
    const captured = new Set();
    for (const reference of scope.through) {
      const variable = reference.resolved;
      // Globals and module bindings are the same from module level.
      if (!variable || variable.scope.type === "module" || variable.scope.type === "global") continue;
      if (variable.scope.type === "function-expression-name") return undefined;
      if (variable.references.some((r) => r.isWrite() && !r.init)) return undefined;
      if (variable.defs.some((d) => d.name.start > fn.start)) return undefined;
      captured.add(variable.name);
    }
    return [...captured];
  };

  const lifted = [];
  const emit = sourceRewriter(source, (node, emit) => {
    if (!isAppliedAsyncGenerator(node)) return undefined;
    const fn = node.callee.object;
    const captured = capturedBy(fn);
    if (!captured) return undefined;
    const name = `${fn.id?.name ?? "generator"}$lifted${lifted.length}`;
    lifted.push(`async function* ${name}(${captured.join(", ")}) ${emit(fn.body)}`);
    return `${name}.call(this${captured.map((variable) => `, ${variable}`).join("")})`;
  });
  let code = emit(ast);
  if (lifted.length > 0) {
    code += `\n// Lifted by streamgate's scripts/patch-connect.mjs: one function for every call.\n${lifted.join("\n")}\n`;
  }
  return { code, lifted: lifted.length };
}
