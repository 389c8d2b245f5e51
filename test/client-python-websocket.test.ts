/**
 * The Python WebSocket example (examples/python/ws_stream.py, on the
 * `websockets` package the example's virtualenv installs from PyPI) against a
 * live server: it sends records on the results socket of a started stream and
 * reads their acks and results on it, which the server's own view of the
 * stream confirms; with a wrong key the upgrade is refused with HTTP 401, which
 * it reports, having sent nothing. On the embedded broker and on Kafka.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_DIR } from "./support/clients-cli.js";
import { type ClientRun, PYTHON, requirePythonVenv, runExampleClient, stepOf } from "./support/example-client.js";
import { BROKERS, startTestServer, streamClient, TEST_API_KEY, type TestServer } from "./support/server.js";

const SCRIPT = join(PROJECT_DIR, "examples/python/ws_stream.py");
const RECORDS = 3;
/** 0 … RECORDS - 1: the records' ids and their data's n. */
const SENT = Array.from({ length: RECORDS }, (_, n) => n);

/** Runs ws_stream.py with `args`; no bytecode is written into the tree. */
function runScript(args: string[]): Promise<ClientRun> {
  return runExampleClient(PYTHON, [SCRIPT, ...args], { PYTHONDONTWRITEBYTECODE: "1" }, 25_000);
}

/** The partition and offset of a cursor such as "i-0-12". */
function position(cursor: string): [number, number] {
  const [, partition, offset] = cursor.split("-");
  return [Number(partition), Number(offset)];
}

beforeAll(requirePythonVenv);

describe.each(BROKERS)("on the %s broker", (kind) => {
  let server: TestServer;
  let url: string;
  beforeAll(async () => {
    server = await startTestServer({}, kind);
    url = `ws://127.0.0.1:${server.port}`;
  });
  afterAll(() => server?.close());

  it("sends records on the socket and reads their acks, then their results, as the server records them", async () => {
    const streamId = `python-ws-${kind}`;
    const client = streamClient(server);
    await client.startStream({ streamId });
    const run = await runScript(["--url", url, "--stream", streamId, "--key", TEST_API_KEY, "--send", String(RECORDS)]);
    const output = `exit ${run.code}\n${run.stdout}\n${run.stderr}`;
    expect(run, output).toMatchObject({ code: 0 });
    expect(stepOf(run, "done")).toEqual({ step: "done", acks: RECORDS, results: RECORDS });

    // The acks, one per record in the order sent, with increasing SendData cursors.
    const acks = run.steps.filter((step) => step.step === "ack");
    expect(
      acks.map((ack) => [ack.id, ack.duplicate]),
      output,
    ).toEqual(SENT.map((n) => [n, false]));
    const cursors = acks.map((ack) => ack.cursor as string);
    expect(
      cursors.every((cursor) => /^i-\d+-\d+$/.test(cursor)),
      output,
    ).toBe(true);
    const positions = cursors.map(position);
    expect(new Set(positions.map(([partition]) => partition)).size, output).toBe(1);
    expect(
      positions.every(([, offset], i) => i === 0 || offset > positions[i - 1]![1]),
      output,
    ).toBe(true);

    // The results, in the order sent, each naming its record's cursor and printed after its ack.
    const results = run.steps.filter((step) => step.step === "result");
    expect(results.map((result) => result.data)).toEqual(SENT.map((n) => ({ n })));
    expect(results.map((result) => result.source_cursor)).toEqual(cursors);
    expect(
      results.every((result) => /^r-\d+-\d+$/.test(result.cursor as string)),
      output,
    ).toBe(true);
    for (const [i, result] of results.entries()) {
      expect(run.steps.indexOf(result), output).toBeGreaterThan(run.steps.indexOf(acks[i]!));
    }
    // Nothing else was printed: the acks, the results, then done.
    expect(run.steps.map((step) => step.step).at(-1)).toBe("done");
    expect(run.steps).toHaveLength(2 * RECORDS + 1);

    // The server's side, through the TypeScript client: the records were accepted and processed.
    const { counts } = await client.getStream({ streamId });
    expect(counts).toMatchObject({ accepted: BigInt(RECORDS), rejected: 0n, duplicates: 0n, results: BigInt(RECORDS) });
  });

  it("fails with the 401 refusal when the key is wrong, having sent nothing", async () => {
    const streamId = `python-ws-bad-key-${kind}`;
    const client = streamClient(server);
    await client.startStream({ streamId });
    const run = await runScript(["--url", url, "--stream", streamId, "--key", "not-a-key-of-this-server"]);
    expect(run.code, `exit ${run.code}\n${run.stdout}\n${run.stderr}`).toBe(1);
    expect(run.steps).toEqual([
      {
        step: "error",
        status: 401,
        code: "unauthenticated",
        message: expect.stringMatching(/^the upgrade was refused with HTTP 401: unauthenticated: /),
      },
    ]);
    expect(run.stderr).toContain("HTTP 401");
    const { counts } = await client.getStream({ streamId });
    expect(counts).toMatchObject({ accepted: 0n, rejected: 0n });
  });
});
