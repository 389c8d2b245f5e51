// Makes patches/@connectrpc+connect+2.1.2.patch and
// patches/@connectrpc+connect-node+2.1.2.patch from the published packages:
//
//   npm install && rm -rf node_modules/@connectrpc && npm install --ignore-scripts
//   node scripts/patch-connect.mjs && npx patch-package @connectrpc/connect @connectrpc/connect-node
//
// It changes two things in connect's ES modules (the build Node loads for
// streamgate, an ES module package), and nothing in what they do:
//
// 1. Native async generators. connect ships its ES modules compiled for
//    ES2017, where every async generator becomes a sync generator driven by
//    the __asyncGenerator helper: eight closures, a queue and a prototype per
//    call, a helper step and extra promises per await. The server runs ten or
//    more of them per RPC, and an open WatchResults call keeps its set alive.
//    Node 20 runs async generators natively. Only these exact shapes of tsc's
//    output are rewritten, and any other use of __await or __asyncDelegator
//    fails the run, so a new connect version either converts cleanly or says
//    where it did not:
//
//      __asyncGenerator(this, arguments, function* f() { B })  ->  (async function* f() { B }).apply(this, arguments)
//      yield yield __await(x)                                   ->  yield x
//      yield __await(yield* __asyncDelegator(__asyncValues(x))) ->  (yield* x)
//      yield __await(x)                                         ->  (await x)
//
//    A downlevelled for-await loop keeps its shape (its __asyncValues(...)
//    .next() calls are awaited natively). The helpers' definitions stay, unused.
//
// 2. One AbortError per module for the aborts that have no reason. Every call
//    aborts its context's AbortController when it ends, and connect-node the
//    request's when the HTTP/2 stream closes, both without a reason, and Node
//    then builds a DOMException, with a stack trace, for each: two per call,
//    8 % of the CPU profile of a bare connect-node server under unary load.
//    The reason is the same kind of AbortError, made once.
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "acorn";

const isIdentifier = (node, name) => node?.type === "Identifier" && node.name === name;
const isCallOf = (node, name) => node?.type === "CallExpression" && isIdentifier(node.callee, name);
const isAwaitHelper = (node) => isCallOf(node, "__await");

/** The rewritten source and how many async generators it converted. */
function nativeAsyncGenerators(source) {
  const ast = parse(source, { ecmaVersion: "latest", sourceType: "module" });
  let converted = 0;

  /** The child nodes of `node`, in source order (a node shared by two fields, as in `{ a }`, once). */
  const childrenOf = (node) => {
    const children = [];
    for (const [key, value] of Object.entries(node)) {
      if (key === "type" || key === "start" || key === "end") continue;
      for (const child of Array.isArray(value) ? value : [value]) {
        if (child && typeof child.type === "string") children.push(child);
      }
    }
    return children.sort((a, b) => a.start - b.start);
  };

  /** `node`'s source with its children rewritten. */
  const copy = (node) => {
    let text = "";
    let at = node.start;
    for (const child of childrenOf(node)) {
      if (child.start < at) continue;
      text += source.slice(at, child.start) + rewrite(child);
      at = child.end;
    }
    return text + source.slice(at, node.end);
  };

  const rewrite = (node) => {
    if (isCallOf(node, "__asyncGenerator")) {
      const [self, args, body] = node.arguments;
      if (self?.type !== "ThisExpression" || !isIdentifier(args, "arguments") || body?.type !== "FunctionExpression" || !body.generator || body.params.length > 0) {
        throw new Error(`unexpected __asyncGenerator call at offset ${node.start}`);
      }
      converted++;
      return `(async function* ${body.id?.name ?? ""}() ${rewrite(body.body)}).apply(this, arguments)`;
    }
    if (node.type === "YieldExpression" && !node.delegate) {
      const inner = node.argument;
      if (inner?.type === "YieldExpression" && !inner.delegate && isAwaitHelper(inner.argument)) {
        return `yield ${rewrite(inner.argument.arguments[0])}`;
      }
      if (isAwaitHelper(inner)) {
        const awaited = inner.arguments[0];
        if (awaited.type === "YieldExpression" && awaited.delegate && isCallOf(awaited.argument, "__asyncDelegator") && isCallOf(awaited.argument.arguments[0], "__asyncValues")) {
          return `(yield* ${rewrite(awaited.argument.arguments[0].arguments[0])})`;
        }
        return `(await ${rewrite(awaited)})`;
      }
    }
    if (isIdentifier(node, "__await") || isIdentifier(node, "__asyncDelegator")) {
      throw new Error(`unexpected use of ${node.name} at offset ${node.start}`);
    }
    return copy(node);
  };

  let text = "";
  let at = 0;
  for (const statement of ast.body) {
    // The helpers' definitions (`var __await = ...`) are kept as they are.
    const isHelper = statement.type === "VariableDeclaration" && statement.declarations.every((d) => d.id.name?.startsWith("__"));
    text += source.slice(at, statement.start) + (isHelper ? source.slice(statement.start, statement.end) : rewrite(statement));
    at = statement.end;
  }
  return { code: text + source.slice(at), converted };
}

/** Replaces `before` by `after` in `file`, which must contain `before` exactly once. */
function replaceOnce(file, before, after) {
  const source = readFileSync(file, "utf8");
  const parts = source.split(before);
  if (parts.length !== 2) throw new Error(`${file}: expected exactly one ${JSON.stringify(before)}, found ${parts.length - 1}`);
  writeFileSync(file, parts.join(after));
}

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "node_modules", "@connectrpc");
const REASON = 'new DOMException("This operation was aborted", "AbortError")';

for (const dir of [join(root, "connect", "dist", "esm"), join(root, "connect-node", "dist", "esm")]) {
  for (const name of readdirSync(dir, { recursive: true })) {
    if (!name.endsWith(".js")) continue;
    const file = join(dir, name);
    const source = readFileSync(file, "utf8");
    if (!source.includes("__asyncGenerator(this")) continue;
    const { code, converted } = nativeAsyncGenerators(source);
    writeFileSync(file, code);
    console.log(`${file}: ${converted} async generator(s) made native`);
  }
}

const context = join(root, "connect", "dist", "esm", "implementation.js");
replaceOnce(context, "export function createHandlerContext(init) {", `const callEnded = ${REASON};\nexport function createHandlerContext(init) {`);
replaceOnce(context, "abortController.abort(reason);", "abortController.abort(reason !== null && reason !== void 0 ? reason : callEnded);");
const request = join(root, "connect-node", "dist", "esm", "node-universal-handler.js");
replaceOnce(request, "export function universalRequestFromNodeRequest(", `const requestClosed = ${REASON};\nexport function universalRequestFromNodeRequest(`);
replaceOnce(request, "abortController.abort();", "abortController.abort(requestClosed);");
console.log(`${context}, ${request}: one AbortError each for aborts without a reason`);
