// Rewrites TypeScript's ES2017 emit of async generators back into native ones.
//
// connect ships its ES modules compiled for ES2017, where every async
// generator becomes a sync generator driven by the __asyncGenerator helper:
// eight closures, a queue and a prototype per call, a helper step and extra
// promises per await. Node runs async generators natively. Only these exact
// shapes of tsc's output are rewritten, and any other use of __await or
// __asyncDelegator throws, so a new connect version either converts cleanly or
// says where it did not:
//
//   __asyncGenerator(this, arguments, function* f() { B })  ->  (async function* f() { B }).apply(this, arguments)
//   yield yield __await(x)                                   ->  yield x
//   yield __await(yield* __asyncDelegator(__asyncValues(x))) ->  (yield* x)
//   yield __await(x)                                         ->  (await x)
//
// A downlevelled for-await loop keeps its shape (its __asyncValues(...).next()
// calls are awaited natively). The helpers' definitions stay, unused.
import { parse } from "acorn";
import { sourceRewriter } from "./source-rewriter.mjs";

const isIdentifier = (node, name) => node?.type === "Identifier" && node.name === name;
const isCallOf = (node, name) => node?.type === "CallExpression" && isIdentifier(node.callee, name);
const isAwaitHelper = (node) => isCallOf(node, "__await");
/** A top-level `var __helper = ...` of tsc's: kept as it is. */
const isHelperDefinition = (node) =>
  node.type === "VariableDeclaration" && node.declarations.every((d) => d.id.name?.startsWith("__"));

/** The rewritten source and how many async generators it converted. */
export function nativeAsyncGenerators(source) {
  const ast = parse(source, { ecmaVersion: "latest", sourceType: "module" });
  let converted = 0;
  const emit = sourceRewriter(source, (node, emit) => {
    if (isHelperDefinition(node)) return source.slice(node.start, node.end);
    if (isCallOf(node, "__asyncGenerator")) {
      const [self, args, body] = node.arguments;
      if (
        self?.type !== "ThisExpression" ||
        !isIdentifier(args, "arguments") ||
        body?.type !== "FunctionExpression" ||
        !body.generator ||
        body.params.length > 0
      ) {
        throw new Error(`unexpected __asyncGenerator call at offset ${node.start}`);
      }
      converted++;
      return `(async function* ${body.id?.name ?? ""}() ${emit(body.body)}).apply(this, arguments)`;
    }
    if (node.type === "YieldExpression" && !node.delegate) {
      const inner = node.argument;
      if (inner?.type === "YieldExpression" && !inner.delegate && isAwaitHelper(inner.argument)) {
        return `yield ${emit(inner.argument.arguments[0])}`;
      }
      if (isAwaitHelper(inner)) {
        const awaited = inner.arguments[0];
        if (
          awaited.type === "YieldExpression" &&
          awaited.delegate &&
          isCallOf(awaited.argument, "__asyncDelegator") &&
          isCallOf(awaited.argument.arguments[0], "__asyncValues")
        ) {
          return `(yield* ${emit(awaited.argument.arguments[0].arguments[0])})`;
        }
        return `(await ${emit(awaited)})`;
      }
    }
    if (isIdentifier(node, "__await") || isIdentifier(node, "__asyncDelegator")) {
      throw new Error(`unexpected use of ${node.name} at offset ${node.start}`);
    }
    return undefined;
  });
  return { code: emit(ast), converted };
}
