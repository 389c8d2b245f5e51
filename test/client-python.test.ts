/**
 * The Python example client (examples/python: stubs generated from proto/ by
 * buf with grpcio-tools' generators, grpcio over h2c) against a live server
 * with an API key: start → send (unary, then client streaming) → watch from the
 * earliest result → resume after the middle one → close. What it printed is
 * checked against the server's own view of the stream; a wrong key fails it
 * with the server's code. On the embedded broker and on Kafka.
 */
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StartPosition, StreamState } from "../gen/streamgate/v1/stream_service_pb.js";
import { PROJECT_DIR } from "./support/clients-cli.js";
import { type ClientRun, PYTHON, requirePythonVenv, runExampleClient, stepOf } from "./support/example-client.js";
import { BROKERS, collect, startTestServer, streamClient, TEST_API_KEY, type TestServer } from "./support/server.js";

const CLIENT = join(PROJECT_DIR, "examples/python/streamgate_client.py");

/** A result as the client prints it. */
interface SeenResult {
  cursor: string;
  source_cursor: string;
  event_id: string;
  data: { n: number; via: string };
}

/** Runs the Python client with `args` and `env` added to this process's environment; no bytecode is written into the tree. */
function runClient(args: string[], env: Record<string, string> = {}): Promise<ClientRun> {
  return runExampleClient(PYTHON, [CLIENT, ...args], { PYTHONDONTWRITEBYTECODE: "1", ...env }, 25_000);
}

beforeAll(requirePythonVenv);

describe.each(BROKERS)("on the %s broker", (kind) => {
  let server: TestServer;
  let address: string;
  beforeAll(async () => {
    server = await startTestServer({}, kind);
    address = `127.0.0.1:${server.port}`;
  });
  afterAll(() => server?.close());

  it("starts, sends, watches, resumes and closes a stream, as the server records it", async () => {
    const streamId = `python-${kind}`;
    const run = await runClient([
      "--addr",
      address,
      "--api-key",
      TEST_API_KEY,
      "--stream-id",
      streamId,
      "--records",
      "4",
    ]);
    expect(run, `exit ${run.code}\n${run.stdout}\n${run.stderr}`).toMatchObject({ code: 0 });
    expect(run.steps.map((step) => step.step)).toEqual([
      "start",
      "send",
      "send_stream",
      "watch",
      "resume",
      "close",
      "done",
    ]);
    expect(stepOf(run, "start")).toMatchObject({ stream_id: streamId, created: true, state: "STREAM_STATE_OPEN" });
    expect(stepOf(run, "send_stream")).toMatchObject({ accepted: 4 });

    // The watch from the earliest result saw the unary record, then the streamed ones, in order.
    const watched = stepOf(run, "watch").results as SeenResult[];
    expect(watched.map((result) => result.data)).toEqual([
      { n: 1, via: "unary" },
      { n: 2, via: "stream" },
      { n: 3, via: "stream" },
      { n: 4, via: "stream" },
      { n: 5, via: "stream" },
    ]);
    expect(watched.map((result) => result.event_id)).toEqual(["py-1", "py-2", "py-3", "py-4", "py-5"]);
    expect(watched[0]!.source_cursor).toBe(stepOf(run, "send").cursor);
    expect(watched[4]!.source_cursor).toBe(stepOf(run, "send_stream").last_cursor);

    // Resumed after the middle result, it got exactly the two after it.
    const resume = stepOf(run, "resume");
    expect(resume.after_cursor).toBe(watched[2]!.cursor);
    expect(resume.results).toEqual(watched.slice(3));
    expect(stepOf(run, "close")).toMatchObject({ state: "STREAM_STATE_CLOSED" });

    // The server's side, through the TypeScript client: the same results, and a closed stream.
    const client = streamClient(server);
    const described = await client.getStream({ streamId });
    expect(described.stream?.state).toBe(StreamState.CLOSED);
    expect(described.stream?.labels).toEqual({ client: "python" });
    expect(described.counts).toMatchObject({ accepted: 5n, rejected: 0n, results: 5n });
    const stored = await collect(client.watchResults({ streamId, startPosition: StartPosition.EARLIEST }));
    expect(stored.map((response) => response.result!.cursor)).toEqual(watched.map((result) => result.cursor));
  });

  it("takes the address and the key from STREAMGATE_ADDR and STREAMGATE_API_KEY", async () => {
    const run = await runClient(["--records", "1"], { STREAMGATE_ADDR: address, STREAMGATE_API_KEY: TEST_API_KEY });
    expect(run, `exit ${run.code}\n${run.stdout}\n${run.stderr}`).toMatchObject({ code: 0 });
    const streamId = stepOf(run, "start").stream_id as string;
    const watched = stepOf(run, "watch").results as SeenResult[];
    expect(watched.map((result) => result.data.n)).toEqual([1, 2]);
    expect(stepOf(run, "resume")).toMatchObject({ after_cursor: watched[0]!.cursor, results: [watched[1]] });
    const described = await streamClient(server).getStream({ streamId });
    expect(described.counts).toMatchObject({ accepted: 2n, results: 2n });
  });

  it("fails with the server's code when the key is wrong, having changed nothing", async () => {
    const streamId = `python-bad-key-${kind}`;
    const run = await runClient(["--addr", address, "--api-key", "not-a-key-of-this-server", "--stream-id", streamId]);
    expect(run.code).toBe(1);
    expect(run.steps).toEqual([
      { step: "error", code: "UNAUTHENTICATED", message: expect.stringMatching(/^UNAUTHENTICATED: /) },
    ]);
    expect(run.stderr).toContain("UNAUTHENTICATED");
    await expect(streamClient(server).getStream({ streamId })).rejects.toMatchObject({ code: Code.NotFound });
  });
});
