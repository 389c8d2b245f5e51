/**
 * Call admission (src/call-admission.ts): calls start as they arrive while the
 * turn's budget has room; once recent calls were costly, the calls beyond the
 * budget wait and start in later turns of the event loop, in arrival order, at
 * least one per turn; a waiting call whose client has gone is dropped; and,
 * through the server, a burst of calls on one connection is answered in full.
 * Cost is measured on a clock the test moves, so nothing depends on timing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CallAdmission } from "../src/call-admission.js";
import { startTestServer, streamClient, type TestServer } from "./support/server.js";

/** The end of the current turn of the event loop: the admission's own end of turn, scheduled earlier, has run. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** An admission whose calls cost `costMs` each on a fake clock, recording the order calls start in. */
function admission(options: { budgetMs: number; costMs: number; gone?: Set<number> }) {
  let clock = 0;
  const started: number[] = [];
  const calls = new CallAdmission<number, undefined>(
    (call) => {
      started.push(call);
      clock += options.costMs;
    },
    { turnBudgetMs: options.budgetMs, isGone: (call) => options.gone?.has(call) ?? false, now: () => clock },
  );
  const admit = (...ids: number[]) => ids.forEach((id) => calls.admit(id, undefined));
  return { calls, started, admit };
}

it("starts calls as they arrive while the turn has room", () => {
  const { calls, started, admit } = admission({ budgetMs: 10, costMs: 0.1 });
  admit(1, 2, 3, 4, 5);
  expect(started).toEqual([1, 2, 3, 4, 5]);
  expect(calls.waitingCount).toBe(0);
});

it("after a costly turn, starts what fits in each turn's budget, in arrival order", async () => {
  const { calls, started, admit } = admission({ budgetMs: 10, costMs: 4 });
  admit(1, 2, 3); // the first estimate (0.5 ms a call) lets all three start
  expect(started).toEqual([1, 2, 3]);
  await nextTurn(); // that turn measured 4 ms a call: two fit in 10 ms
  admit(4, 5, 6, 7, 8, 9, 10);
  expect(started).toEqual([1, 2, 3, 4, 5]);
  expect(calls.waitingCount).toBe(5);
  await nextTurn();
  expect(started).toEqual([1, 2, 3, 4, 5, 6, 7]);
  admit(11); // behind those waiting, though the turn has room
  expect(started).toHaveLength(7);
  await nextTurn();
  await nextTurn();
  expect(started).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  expect(calls.waitingCount).toBe(0);
});

it("starts one call per turn at least, however costly calls are", async () => {
  const { started, admit } = admission({ budgetMs: 10, costMs: 50 });
  admit(1);
  await nextTurn();
  admit(2, 3, 4);
  expect(started).toEqual([1, 2]);
  await nextTurn();
  expect(started).toEqual([1, 2, 3]);
  await nextTurn();
  expect(started).toEqual([1, 2, 3, 4]);
});

it("drops a waiting call whose client has gone", async () => {
  const gone = new Set<number>();
  const { calls, started, admit } = admission({ budgetMs: 10, costMs: 20, gone });
  admit(1);
  await nextTurn();
  admit(2, 3, 4);
  gone.add(3);
  await nextTurn();
  await nextTurn();
  expect(started).toEqual([1, 2, 4]);
  expect(calls.waitingCount).toBe(0);
});

it("gives more calls a turn again once calls are cheap", async () => {
  let cost = 10;
  let clock = 0;
  const started: number[] = [];
  const calls = new CallAdmission<number, undefined>(
    (call) => {
      started.push(call);
      clock += cost;
    },
    { turnBudgetMs: 10, isGone: () => false, now: () => clock },
  );
  calls.admit(0, undefined);
  await nextTurn(); // 10 ms a call: one per turn
  cost = 0;
  for (let id = 1; id <= 50; id++) calls.admit(id, undefined);
  const perTurn: number[] = [];
  while (calls.waitingCount > 0) {
    const before = started.length;
    await nextTurn();
    perTurn.push(started.length - before);
  }
  expect(started).toEqual(Array.from({ length: 51 }, (_, id) => id));
  // The estimate falls turn by turn, so the turns take more and more calls.
  expect(perTurn[0]).toBe(1);
  expect(Math.max(...perTurn)).toBeGreaterThan(1);
});

describe("through the server", () => {
  let server: TestServer;
  beforeAll(async () => {
    // A budget of 1 ms: a burst of calls on one connection is spread over many turns.
    server = await startTestServer({ CALL_TURN_BUDGET_MS: "1" });
  });
  afterAll(() => server?.close());

  it("answers every call of a burst on one connection, and none waits afterwards", async () => {
    const client = streamClient(server, "grpc");
    const ids = Array.from({ length: 300 }, (_, i) => `burst-${i}`);
    const answers = await Promise.all(ids.map((streamId) => client.startStream({ streamId })));
    expect(answers.map((answer) => answer.stream?.streamId)).toEqual(ids);
    const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/^streamgate_calls_waiting 0$/m);
  });
});
