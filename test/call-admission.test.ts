/**
 * Call admission (src/rpc/call-admission.ts): calls start in the turn they arrive
 * in while the budget has room; once calls were measured costly, each turn
 * starts what fits and the rest wait for later turns, in arrival order, at
 * least one per turn; a waiting call whose client has gone is dropped; the
 * estimate recovers when calls get cheap; and, through the server, a burst of
 * WatchResults calls on one connection is served in full, as is a burst of
 * WebSocket watches, which wait in the same queue. Cost is measured on a clock
 * the test moves, so nothing depends on timing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { CallAdmission } from "../src/rpc/call-admission.js";
import { authHeaders, startTestServer, streamClient, type TestServer } from "./support/server.js";

/** The end of the current turn's check phase, where the admission (scheduled earlier) has started its batch. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** An admission whose calls cost `costMs()` each on a fake clock, recording the order calls start in. */
function admission(options: { budgetMs: number; costMs: () => number; gone?: Set<number> }) {
  let clock = 0;
  const started: number[] = [];
  const calls = new CallAdmission<number, undefined>(
    (call) => {
      started.push(call);
      clock += options.costMs();
    },
    { turnBudgetMs: options.budgetMs, isGone: (call) => options.gone?.has(call) ?? false, now: () => clock },
  );
  const admit = (...ids: number[]) => ids.forEach((id) => calls.admit(id, undefined));
  return { calls, started, admit };
}

it("starts calls in the turn they arrive in while the budget has room", async () => {
  const { calls, started, admit } = admission({ budgetMs: 10, costMs: () => 0.1 });
  admit(1, 2, 3, 4, 5);
  await nextTurn();
  expect(started).toEqual([1, 2, 3, 4, 5]);
  expect(calls.waitingCount).toBe(0);
});

it("once calls were costly, starts what fits in each turn's budget, in arrival order", async () => {
  const { calls, started, admit } = admission({ budgetMs: 10, costMs: () => 4 });
  admit(1, 2, 3); // the first estimate (0.5 ms a call) lets all three start
  await nextTurn();
  expect(started).toEqual([1, 2, 3]); // measured: 4 ms a call, so two fit in 10 ms
  admit(4, 5, 6, 7, 8, 9, 10);
  await nextTurn();
  expect(started).toEqual([1, 2, 3, 4, 5]);
  expect(calls.waitingCount).toBe(5);
  admit(11); // behind those waiting
  await nextTurn();
  expect(started).toEqual([1, 2, 3, 4, 5, 6, 7]);
  await nextTurn();
  await nextTurn();
  expect(started).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  expect(calls.waitingCount).toBe(0);
});

it("starts one call per turn at least, however costly calls are", async () => {
  const { started, admit } = admission({ budgetMs: 10, costMs: () => 50 });
  admit(1);
  await nextTurn();
  admit(2, 3, 4);
  await nextTurn();
  expect(started).toEqual([1, 2]);
  await nextTurn();
  expect(started).toEqual([1, 2, 3]);
  await nextTurn();
  expect(started).toEqual([1, 2, 3, 4]);
});

it("drops a waiting call whose client has gone", async () => {
  const gone = new Set<number>();
  const { calls, started, admit } = admission({ budgetMs: 10, costMs: () => 20, gone });
  admit(1);
  await nextTurn();
  admit(2, 3, 4);
  await nextTurn();
  gone.add(3);
  await nextTurn();
  expect(started).toEqual([1, 2, 4]);
  expect(calls.waitingCount).toBe(0);
});

it("gives more calls a turn again once calls are cheap", async () => {
  let cost = 10;
  const { calls, started, admit } = admission({ budgetMs: 10, costMs: () => cost });
  admit(0);
  await nextTurn(); // 10 ms a call: one per turn
  cost = 0;
  admit(...Array.from({ length: 50 }, (_, i) => i + 1));
  const perTurn: number[] = [];
  while (calls.waitingCount > 0) {
    const before = started.length;
    await nextTurn();
    perTurn.push(started.length - before);
  }
  expect(started).toEqual(Array.from({ length: 51 }, (_, id) => id));
  // The estimate falls turn by turn, so later turns take more calls than the first.
  expect(perTurn[0]).toBe(1);
  expect(Math.max(...perTurn)).toBeGreaterThan(1);
});

describe("through the server", () => {
  let server: TestServer;
  beforeAll(async () => {
    // A budget of 1 ms: a burst of WatchResults calls on one connection is spread over many turns.
    // All 300 open on one connection at once, so the connection may carry that many streams.
    server = await startTestServer({ CALL_TURN_BUDGET_MS: "1", HTTP2_MAX_CONCURRENT_STREAMS: "300" });
  });
  afterAll(() => server?.close());

  it("gives every WatchResults call of a burst on one connection its results, and none waits afterwards", async () => {
    const client = streamClient(server, "grpc");
    await client.startStream({ streamId: "burst" });
    await client.sendData({ streamId: "burst", payload: { case: "raw", value: new TextEncoder().encode("first") } });
    const watching = new AbortController();
    const firsts = await Promise.all(
      Array.from({ length: 300 }, async () => {
        for await (const response of client.watchResults({ streamId: "burst" }, { signal: watching.signal })) {
          if (response.result) return response.result;
        }
        throw new Error("the watch ended before its first result");
      }),
    );
    watching.abort();
    expect(
      firsts.map((result) =>
        new TextDecoder().decode(result.payload.case === "raw" ? result.payload.value : undefined),
      ),
    ).toEqual(Array.from({ length: 300 }, () => "first"));
    const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/^streamgate_calls_waiting 0$/m);
  });
  it("admits WebSocket watches through call admission: every one of a burst of 100 gets its results, and none waits afterwards", async () => {
    const client = streamClient(server, "grpc");
    await client.startStream({ streamId: "ws-burst" });
    const { cursor } = await client.sendData({
      streamId: "ws-burst",
      payload: { case: "raw", value: new TextEncoder().encode("first") },
    });
    const url = `ws://127.0.0.1:${server.port}/v1/streams/ws-burst/results?from=earliest`;
    // 100 upgrades at once, each on a connection of its own.
    const sockets = Array.from({ length: 100 }, () => new WebSocket(url, { headers: authHeaders(server) }));
    try {
      const firsts = await Promise.all(
        sockets.map(
          (socket) =>
            new Promise<{ type: string; result: { sourceCursor: string } }>((resolve, reject) => {
              socket.once("message", (data) => resolve(JSON.parse(String(data))));
              socket.once("error", reject);
              socket.once("unexpected-response", (_, response) => reject(new Error(`refused: ${response.statusCode}`)));
            }),
        ),
      );
      expect(firsts.map((frame) => [frame.type, frame.result.sourceCursor])).toEqual(
        Array.from({ length: 100 }, () => ["result", cursor]),
      );
    } finally {
      for (const socket of sockets) socket.terminate();
    }
    const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/^streamgate_calls_waiting 0$/m);
  });
});
