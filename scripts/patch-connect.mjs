// Makes patches/@connectrpc+connect+2.1.2.patch and
// patches/@connectrpc+connect-node+2.1.2.patch from the published packages:
//
//   npm install && rm -rf node_modules/@connectrpc && npm install --ignore-scripts
//   node scripts/patch-connect.mjs && npx patch-package @connectrpc/connect @connectrpc/connect-node
//
// It changes connect's ES modules (the build Node loads for streamgate, an ES
// module package) in three ways, and nothing in what they do:
//
// 1. Native async generators instead of tsc's ES2017 helpers
//    (patch-connect/native-async-generators.mjs).
// 2. Those generators lifted out of the functions that made one per call
//    (patch-connect/lift-async-generators.mjs): a prototype and a shape of
//    their own per call no more.
// 3. One AbortError per module for the aborts that have no reason. Every call
//    aborts its context's AbortController when it ends, and connect-node the
//    request's when the HTTP/2 stream closes, both without a reason, and Node
//    then builds a DOMException, with a stack trace, for each: two per call,
//    8 % of the CPU profile of a bare connect-node server under unary load.
//    The reason is the same kind of AbortError, made once.
//
// The server runs ten or more of connect's generators per RPC, and an open
// WatchResults call keeps its set alive: bench/ANALYSIS.md has the figures.
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { liftAsyncGenerators } from "./patch-connect/lift-async-generators.mjs";
import { nativeAsyncGenerators } from "./patch-connect/native-async-generators.mjs";

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
    const native = nativeAsyncGenerators(source);
    const lifted = liftAsyncGenerators(native.code);
    writeFileSync(file, lifted.code);
    console.log(`${file}: ${native.converted} async generator(s) made native, ${lifted.lifted} lifted`);
  }
}

const context = join(root, "connect", "dist", "esm", "implementation.js");
replaceOnce(context, "export function createHandlerContext(init) {", `const callEnded = ${REASON};\nexport function createHandlerContext(init) {`);
replaceOnce(context, "abortController.abort(reason);", "abortController.abort(reason !== null && reason !== void 0 ? reason : callEnded);");
const request = join(root, "connect-node", "dist", "esm", "node-universal-handler.js");
replaceOnce(request, "export function universalRequestFromNodeRequest(", `const requestClosed = ${REASON};\nexport function universalRequestFromNodeRequest(`);
replaceOnce(request, "abortController.abort();", "abortController.abort(requestClosed);");
console.log(`${context}, ${request}: one AbortError each for aborts without a reason`);
