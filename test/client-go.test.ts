/**
 * The Go example client (examples/go: code generated from proto/ by buf with
 * protoc-gen-go and protoc-gen-go-grpc, grpc-go over h2c, the API key as
 * per-call metadata) against a live server: StartStream → SendData →
 * SendDataStream → WatchResults from EARLIEST → resume after the middle result
 * → CloseStream (the resumed watch then ends) → GetStream. What it printed is
 * checked against the server's own view of the stream; a wrong or missing key
 * makes it exit non-zero with the server's code. On the embedded broker and on Kafka.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StartPosition, StreamState } from "../gen/streamgate/v1/stream_service_pb.js";
import { PROJECT_DIR } from "./support/clients-cli.js";
import { type ClientRun, runExampleClient, stepOf } from "./support/example-client.js";
import { BROKERS, collect, startTestServer, streamClient, TEST_API_KEY, type TestServer } from "./support/server.js";

const CLIENT = join(PROJECT_DIR, ".tools/bin/streamgate-go-client");

/** A result as the client prints it. */
interface SeenResult {
  cursor: string;
  source_cursor: string;
  event_id: string;
  data: { seq: number; from: string };
}

/** Runs the Go client with `args` and `env` added to this process's environment. */
function runClient(args: string[], env: Record<string, string> = {}): Promise<ClientRun> {
  return runExampleClient(CLIENT, args, env, 45_000);
}

// The provisioning that scripts/tools.sh also runs: quick once done (the plugins are kept in .tools/bin
// and Go's build cache keeps the build), and it rebuilds the binary from examples/go as it is now.
beforeAll(async () => {
  await new Promise<void>((resolve, reject) => {
    execFile("bash", [join(PROJECT_DIR, "scripts/go-client.sh")], { timeout: 540_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`bash scripts/go-client.sh failed: ${error.message}\n${stdout}${stderr}`));
      else resolve();
    });
  });
}, 600_000);

describe.each(BROKERS)("on the %s broker", (kind) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({}, kind);
  });
  afterAll(() => server?.close());

  it("starts, sends, watches, resumes and closes a stream, as the server records it", async () => {
    const streamId = `go-${kind}`;
    // The address and key from the environment, as a user would give them; 1 unary + 4 streamed records.
    const run = await runClient(["-stream", streamId, "-records", "4"], {
      STREAMGATE_ADDR: `127.0.0.1:${server.port}`,
      STREAMGATE_API_KEY: TEST_API_KEY,
    });
    expect(run, `exit ${run.code}\n${run.stdout}\n${run.stderr}`).toMatchObject({ code: 0 });
    expect(run.steps.map((step) => step.step)).toEqual([
      "start_stream",
      "send_data",
      "send_data_stream",
      "watch_results",
      "resume",
      "close_stream",
      "get_stream",
      "done",
    ]);
    expect(stepOf(run, "start_stream")).toMatchObject({
      stream_id: streamId,
      created: true,
      state: "STREAM_STATE_OPEN",
    });
    const sent = stepOf(run, "send_data");
    const streamed = stepOf(run, "send_data_stream");
    expect(streamed).toMatchObject({ accepted: 4, rejected: 0, duplicates: 0 });

    // Every record's result, in send order, each pointing back at the cursor its send returned.
    const seen = stepOf(run, "watch_results").results as SeenResult[];
    expect(seen.map((result) => result.event_id)).toEqual(["go-1", "go-2", "go-3", "go-4", "go-5"]);
    expect(seen.map((result) => result.data)).toEqual([1, 2, 3, 4, 5].map((seq) => ({ seq, from: "go" })));
    expect(seen[0]!.source_cursor).toBe(sent.cursor);
    expect(seen[4]!.source_cursor).toBe(streamed.last_cursor);

    // Resumed after the middle result: exactly the results after it.
    const resume = stepOf(run, "resume");
    expect(resume.after_cursor).toBe(seen[2]!.cursor);
    expect(resume.results).toEqual(seen.slice(3));
    expect(stepOf(run, "close_stream")).toMatchObject({ state: "STREAM_STATE_CLOSED", watch_ended: true });
    expect(stepOf(run, "get_stream")).toMatchObject({
      state: "STREAM_STATE_CLOSED",
      counts: { accepted: 5, results: 5 },
    });

    // The server's own view, through another client: closed, and the very results the Go client saw.
    const client = streamClient(server);
    const described = await client.getStream({ streamId });
    expect(described.stream?.state).toBe(StreamState.CLOSED);
    expect(described.stream?.labels).toEqual({ client: "go" });
    const stored = await collect(client.watchResults({ streamId, startPosition: StartPosition.EARLIEST }));
    expect(stored.map((message) => message.result!.cursor)).toEqual(seen.map((result) => result.cursor));
  }, 60_000);
});

describe("with a bad key", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server?.close());

  it.each([
    ["a wrong key", ["-api-key", "not-the-key"], "invalid credential"],
    ["no key", [], "missing credential"],
  ])("exits non-zero with the server's code on %s, and changes nothing", async (_, keyArgs, message) => {
    const streamId = `go-refused-${keyArgs.length}`;
    // STREAMGATE_API_KEY cleared, so only the flag (or nothing) is sent.
    const run = await runClient(["-addr", `127.0.0.1:${server.port}`, "-stream", streamId, ...keyArgs], {
      STREAMGATE_API_KEY: "",
    });
    expect(run.code).toBe(1);
    expect(run.steps).toEqual([
      { step: "start_stream", code: "Unauthenticated", error: expect.stringContaining(message) },
    ]);
    await expect(streamClient(server).getStream({ streamId })).rejects.toMatchObject({ code: Code.NotFound });
  });
});
