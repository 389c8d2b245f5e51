// Makes patches/@connectrpc+connect+2.3.0.patch and
// patches/@connectrpc+connect-node+2.3.0.patch from the published packages:
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
//
// 4. Error codes that tell the truth, the only changes to what connect does,
//    all on the server side:
//    a. A request that is not valid protobuf is INVALID_ARGUMENT, not INTERNAL
//       (connect's binary parse says INTERNAL whichever side it runs on).
//    b. A request envelope may carry only the compressed flag (0x01), and that
//       only when the request names its encoding: 0x02 (Connect's end-stream)
//       and 0x80 (gRPC-Web's trailers) are response flags, and connect read
//       such envelopes as messages (gRPC) or skipped them (Connect, gRPC-Web).
//       INVALID_ARGUMENT, as connect's own "unexpected end flag".
//    c. A unary call whose request cannot be read (unknown encoding, bad bytes,
//       a body over readMaxBytes, a client that went away mid-body) fails
//       inside the interceptors, not before them, so that it is logged and
//       counted like any other call (src/rpc/interceptors/measure-and-log.ts). The body is
//       still read whole before the first interceptor runs, as before.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { liftAsyncGenerators } from "./patch-connect/lift-async-generators.mjs";
import { nativeAsyncGenerators } from "./patch-connect/native-async-generators.mjs";

/** Replaces `before` by `after` in `file`, which must contain `before` exactly once. */
function replaceOnce(file, before, after) {
  const source = readFileSync(file, "utf8");
  const parts = source.split(before);
  if (parts.length !== 2)
    throw new Error(`${file}: expected exactly one ${JSON.stringify(before)}, found ${parts.length - 1}`);
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
replaceOnce(
  context,
  "export function createHandlerContext(init) {",
  `const callEnded = ${REASON};\nexport function createHandlerContext(init) {`,
);
replaceOnce(
  context,
  "abortController.abort(reason);",
  "abortController.abort(reason !== null && reason !== void 0 ? reason : callEnded);",
);
const request = join(root, "connect-node", "dist", "esm", "node-universal-handler.js");
replaceOnce(
  request,
  "export function universalRequestFromNodeRequest(",
  `const requestClosed = ${REASON};\nexport function universalRequestFromNodeRequest(`,
);
replaceOnce(request, "abortController.abort();", "abortController.abort(requestClosed);");
console.log(`${context}, ${request}: one AbortError each for aborts without a reason`);

// 4. Codes that lie: see the header. Every edit is on a server-only path.
const esm = join(root, "connect", "dist", "esm");
/** Adds `line` at the top of `file` (imports are hoisted, so after the licence comment is not needed). */
function prepend(file, line) {
  writeFileSync(file, `${line}\n${readFileSync(file, "utf8")}`);
}

// a. Only servers parse the input side of a method's serialization lookup (clients serialize it).
const serialization = join(esm, "protocol", "serialization.js");
replaceOnce(
  serialization,
  "const inputBinary = limitSerialization(createBinarySerialization(method.input, binaryOptions), limitOptions);",
  "const inputBinary = limitSerialization(requestBinarySerialization(createBinarySerialization(method.input, binaryOptions)), limitOptions);",
);
replaceOnce(
  serialization,
  "export function createBinarySerialization(desc, options) {",
  `// streamgate: bytes a client sent that are not the request message are its error, not ours.
function requestBinarySerialization(binary) {
    return {
        serialize: binary.serialize,
        parse(data) {
            try {
                return binary.parse(data);
            }
            catch (e) {
                throw new ConnectError(ConnectError.from(e).rawMessage, Code.InvalidArgument);
            }
        },
    };
}
export function createBinarySerialization(desc, options) {`,
);

// b. Checked where the envelopes are split, in the stage every request goes
// through already (a stage of its own measured a few µs per unary call: one
// more async generator per call). transformSplitEnvelope takes the request's
// compression as an optional second argument; only the three server pipelines
// give it, so clients split as before.
const iterables = join(esm, "protocol", "async-iterable.js");
prepend(iterables, 'import { compressedFlag } from "./compression.js";');
const splitSource = readFileSync(iterables, "utf8");
const split =
  /export function transformSplitEnvelope\(readMaxBytes\) \{\n {4}return function \(iterable\) \{\n {8}return (generator\$lifted\d+)\.call\(this, readMaxBytes, iterable\);/.exec(
    splitSource,
  );
if (!split) throw new Error(`${iterables}: transformSplitEnvelope is not as expected`);
const splitter = split[1];
replaceOnce(
  iterables,
  split[0],
  `export function transformSplitEnvelope(readMaxBytes, requestCompression) {
    return function (iterable) {
        return ${splitter}.call(this, readMaxBytes, iterable, requestCompression);`,
);
replaceOnce(
  iterables,
  `async function* ${splitter}(readMaxBytes, iterable) {`,
  `async function* ${splitter}(readMaxBytes, iterable, requestCompression) {`,
);
replaceOnce(
  iterables,
  `for (const env of buffer.decode(chunk)) {
                        yield env;`,
  `for (const env of buffer.decode(chunk)) {
                        if (requestCompression !== undefined) checkRequestEnvelopeFlags(env.flags, requestCompression);
                        yield env;`,
);
writeFileSync(
  iterables,
  `${readFileSync(iterables, "utf8")}
// streamgate: a request envelope may carry the compressed flag (0x01) and no
// other, and that one only when the request names its encoding. 0x02 (Connect's
// end-stream) and 0x80 (gRPC-Web's trailers) are response flags.
function checkRequestEnvelopeFlags(flags, compression) {
    if ((flags & ~compressedFlag) !== 0) {
        throw new ConnectError(\`protocol error: request envelope flags 0x\${flags.toString(16).padStart(2, "0")}: only 0x01 (compressed) is allowed\`, Code.InvalidArgument);
    }
    if ((flags & compressedFlag) !== 0 && compression === null) {
        throw new ConnectError("protocol error: compressed request envelope, but the request names no encoding", Code.InvalidArgument);
    }
}
`,
);
for (const protocol of ["protocol-grpc", "protocol-grpc-web", "protocol-connect"]) {
  const handler = join(esm, protocol, "handler-factory.js");
  replaceOnce(
    handler,
    "transformSplitEnvelope(opt.readMaxBytes), transformDecompressEnvelope(compression.request, opt.readMaxBytes)",
    "transformSplitEnvelope(opt.readMaxBytes, compression.request), transformDecompressEnvelope(compression.request, opt.readMaxBytes)",
  );
}

// c. The request, or its failure, goes to invokeUnaryImplementation as a
// promise, which awaits it and lets the interceptors see a failure as the call's.
const invoke = join(esm, "protocol", "invoke-implementation.js");
replaceOnce(invoke, '(await ensureSingle(input, "unary"))', 'ensureSingle(input, "unary")');
replaceOnce(
  invoke,
  `export async function invokeUnaryImplementation(spec, context, input, interceptors) {
    const anyFn = async (req) => {
`,
  `export async function invokeUnaryImplementation(spec, context, input, interceptors) {
    // streamgate: \`input\` may be a promise; if it fails, the call fails inside the interceptors.
    let inputFailure;
    if (input instanceof Promise) {
        input = await input.catch((error) => {
            inputFailure = { error };
            return undefined;
        });
    }
    const anyFn = async (req) => {
        if (inputFailure) throw inputFailure.error;
`,
);
const connectHandler = join(esm, "protocol-connect", "handler-factory.js");
replaceOnce(
  connectHandler,
  `            if (compression.error) {
                throw compression.error;
            }`,
  `            // streamgate: read and parse in a promise that invokeUnaryImplementation awaits.
            const input = (async () => {
            if (compression.error) {
                throw compression.error;
            }`,
);
replaceOnce(
  connectHandler,
  "            const input = parseUnaryMessage(spec.method, type.binary, serialization, reqBody);",
  `            return parseUnaryMessage(spec.method, type.binary, serialization, reqBody);
            })();`,
);
console.log(`${esm}: request codes, envelope flags, unary failures inside the interceptors`);
