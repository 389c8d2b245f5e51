/**
 * connect 2.3.0 and connect-node 2.3.0 are installed with streamgate's patches
 * (patches/, made by scripts/patch-connect.mjs, applied by patch-package at
 * npm install): native async generators instead of tsc's ES2017 helpers,
 * lifted out of the functions that made one per call, and one AbortError per
 * module for the aborts that have no reason. None of it may change what
 * connect does. The suites against real clients (grpc-js, connect over every
 * protocol, grpcurl, buf curl, a browser) show the calls; these tests pin the
 * edges the rewrite touches: early stops, errors up and down a pipe, and what
 * an aborted call's signal says.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Code, ConnectError, createHandlerContext } from "@connectrpc/connect";
import { pipe, transformCatchFinally, transformPrepend } from "@connectrpc/connect/protocol";
import { describe, expect, it } from "vitest";
import { StreamService } from "../gen/streamgate/v1/stream_service_pb.js";

/** A source of `values` (then `error`, if given); `stopped` resolves when its finally has run. */
function source(values: number[], error?: Error) {
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  async function* generate() {
    try {
      yield* values;
      if (error) throw error;
    } finally {
      stop();
    }
  }
  return { iterable: generate(), stopped };
}

describe("connect with streamgate's patches", () => {
  it("is what Node loads: no ES2017 async generator helper is left in use", () => {
    // The ES module build, beside the CommonJS one that require resolves.
    const cjsIndex = createRequire(import.meta.url).resolve("@connectrpc/connect");
    const esm = join(dirname(cjsIndex), "../esm/protocol/async-iterable.js");
    const text = readFileSync(esm, "utf8");
    expect(text).not.toContain("__asyncGenerator(this");
    // Native, and lifted out of the function that made one per call.
    expect(text).toMatch(/^async function\* pipe_1\$lifted\d+\(/m);
    expect(text).not.toContain("(async function*");
  });

  it("pipes in order through transforms, and a consumer stopping early stops the source", async () => {
    const { iterable, stopped } = source([1, 2, 3, 4]);
    const piped = pipe(
      iterable,
      transformPrepend(() => 0),
      { propagateDownStreamError: true },
    );
    const received: number[] = [];
    for await (const value of piped) {
      received.push(value);
      if (value === 2) break;
    }
    expect(received).toEqual([0, 1, 2]);
    // The pipe asks its source to return and does not wait for it: this resolves, or the test times out.
    await stopped;
  });

  it("passes a source's error to transformCatchFinally, which can answer with a last message", async () => {
    const failure = new ConnectError("gone", Code.Unavailable);
    const { iterable } = source([1], failure);
    const caught: unknown[] = [];
    const piped = pipe(
      iterable,
      transformCatchFinally<number>((error) => {
        caught.push(error);
        return 99;
      }),
    );
    const received: number[] = [];
    for await (const value of piped) received.push(value);
    expect(received).toEqual([1, 99]);
    expect(caught).toEqual([failure]);
  });

  it("propagates an error thrown downstream of a pipe back into its source", async () => {
    const { iterable, stopped } = source([1, 2, 3]);
    // connect's server pipes a response this way: nothing prepended, errors propagated.
    const piped = pipe(
      iterable,
      transformPrepend<number>(() => undefined),
      { propagateDownStreamError: true },
    );
    const iterator = piped[Symbol.asyncIterator]();
    expect(await iterator.next()).toEqual({ done: false, value: 1 });
    const downstream = new Error("write failed");
    await expect(iterator.throw!(downstream)).rejects.toBe(downstream);
    await stopped;
  });

  it("aborts a call's signal with an AbortError when the call ends without a reason, and with the reason when it has one", () => {
    const init = {
      service: StreamService,
      method: StreamService.method.sendData,
      protocolName: "grpc",
      requestMethod: "POST",
      url: "http://localhost/streamgate.v1.StreamService/SendData",
    };
    const ended = createHandlerContext(init);
    ended.abort();
    expect(ended.signal.aborted).toBe(true);
    expect(ended.signal.reason).toBeInstanceOf(DOMException);
    expect((ended.signal.reason as DOMException).name).toBe("AbortError");

    const failed = createHandlerContext(init);
    const reason = new ConnectError("deadline", Code.DeadlineExceeded);
    failed.abort(reason);
    expect(failed.signal.reason).toBe(reason);
  });
});
