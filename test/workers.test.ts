/**
 * WORKERS (README "Every core: WORKERS"): the real entry point as a cluster on
 * the real Kafka broker. Calls over separate connections reach both workers
 * (each worker's series in the primary's METRICS_PORT carry its number, and
 * streamgate_worker_info its pid, a child of the primary); a worker killed
 * with SIGKILL during a steady stream of sends loses no acknowledged record
 * and the primary replaces it under the same number; the key and the watch
 * ticket secret the primary generates work on both; each worker exports its
 * own spans to an OTLP receiver; SIGTERM to the primary
 * drains both workers and everything exits 0. On the embedded broker, more
 * than one worker is refused at start, saying why.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import { type Client, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, expect, it } from "vitest";
import { type Result, StartPosition, StreamService } from "../gen/streamgate/v1/stream_service_pb.js";
import { killLeftover, listeningPort, type StreamgateProcess, spawnStreamgate } from "./support/clients-process.js";
import { jsonData, kafkaGatewayEnv, pollUntil, uniqueTopicPrefix } from "./support/kafka-gateway.js";
import { type OtlpReceiver, startOtlpReceiver } from "./support/otlp-receiver.js";
import { freePort } from "./support/ports.js";
import { apiKeyHeader, collect } from "./support/server.js";

let running: StreamgateProcess | undefined;
let receiver: OtlpReceiver;
const workerPidsSeen = new Set<number>();
afterAll(async () => {
  await killLeftover(running);
  await receiver?.close();
  // A failed test must not leave workers behind (they exit with their primary, but not if it was SIGKILLed).
  for (const pid of workerPidsSeen) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
});

/** The parent pid of `pid`, from /proc. */
function parentOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which is in parentheses and may hold spaces.
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

/** Whether process `pid` exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The value of every series of `name` in exposition `text`, by its labels' text. */
function series(text: string, name: string): Map<string, number> {
  const found = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    const end = line.lastIndexOf("}");
    found.set(line.slice(name.length + 1, end), Number(line.slice(end + 2)));
  }
  return found;
}

/** worker number → pid, from streamgate_worker_info. */
function workerPids(text: string): Map<string, number> {
  const pids = new Map<string, number>();
  for (const labels of series(text, "streamgate_worker_info").keys()) {
    const pid = Number(/pid="(\d+)"/.exec(labels)![1]);
    pids.set(/worker="(\d+)"/.exec(labels)![1]!, pid);
    workerPidsSeen.add(pid);
  }
  return pids;
}

/** The status of a GET `path` (an SSE watch) on a connection of its own, which is then closed. */
function sseStatus(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: "127.0.0.1", port, path, agent: false }, (response) => {
      resolve(response.statusCode!);
      response.destroy();
    });
    request.on("error", reject);
  });
}

it("refuses WORKERS > 1 on the embedded broker at start, saying why", async () => {
  const refused = spawnStreamgate({ PORT: "0", HOST: "127.0.0.1", WORKERS: "2", KAFKA_BROKERS: "" });
  expect(await refused.exited).toEqual({ code: 2, signal: null });
  expect(refused.stderr()).toContain(
    "WORKERS=2 (2 processes) needs KAFKA_BROKERS: the embedded broker lives inside one process",
  );
});

it("WORKERS=2 on Kafka: both workers serve, a killed worker loses no acknowledged record and is replaced, SIGTERM drains both", async () => {
  const metricsPort = await freePort();
  receiver = await startOtlpReceiver();
  running = spawnStreamgate(
    kafkaGatewayEnv(uniqueTopicPrefix("workers"), {
      WORKERS: "2",
      METRICS_PORT: String(metricsPort),
      LOG_LEVEL: process.env.WORKERS_TEST_LOG_LEVEL ?? "info",
      // No credential configured: the primary generates the one key both workers accept.
      API_KEYS: "",
      // Each worker exports its own spans.
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: "100",
    }),
  );
  const port = await listeningPort(running);
  const apiKey = /generated API key for this run: (\S+)/.exec(running.stderr())![1]!;
  const primaryPid = running.child.pid!;
  const scrape = async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();

  const first = workerPids(await scrape());
  expect([...first.keys()].sort()).toEqual(["1", "2"]);
  for (const pid of first.values()) expect(parentOf(pid)).toBe(primaryPid);
  expect((await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status).toBe(200);
  expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);

  // Eight senders, each on a connection of its own (the primary hands connections to the workers in turn),
  // each sending one after another to a stream of its own.
  const senders = Array.from({ length: 8 }, (_, index) => ({
    streamId: `workers-${index}`,
    client: createClient(
      StreamService,
      createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}`, interceptors: [apiKeyHeader(apiKey)] }),
    ) as Client<typeof StreamService>,
    acknowledged: [] as string[],
    failures: 0,
  }));
  for (const sender of senders) await sender.client.startStream({ streamId: sender.streamId });
  let sending = true;
  let sent = 0;
  const loops = senders.map(async (sender) => {
    for (let n = 0; sending; n++) {
      try {
        const { cursor } = await sender.client.sendData(
          { streamId: sender.streamId, eventId: `ev-${n}`, payload: jsonData({ n }) },
          { timeoutMs: 10_000 },
        );
        sender.acknowledged.push(cursor);
        sent++;
      } catch (error) {
        // The killed worker's connections fail; the next call opens a new connection.
        expect(ConnectError.from(error).message).toBeTruthy();
        sender.failures++;
      }
    }
  });
  const acknowledgedCount = () => senders.reduce((sum, sender) => sum + sender.acknowledged.length, 0);
  await pollUntil("40 records acknowledged", async () => (sent >= 40 ? true : undefined), {
    timeoutMs: 20_000,
    intervalMs: 20,
  });

  // Both workers handled SendData calls: each one's series, labelled with its number.
  const handled = series(await scrape(), "grpc_server_handled_total");
  for (const worker of ["1", "2"]) {
    const calls = [...handled]
      .filter(([labels]) => labels.includes('grpc_method="SendData"') && labels.includes(`worker="${worker}"`))
      .reduce((sum, [, value]) => sum + value, 0);
    expect(calls, `SendData calls handled by worker ${worker}`).toBeGreaterThan(0);
  }

  // GET /metrics on the service port too: whichever worker gets it answers with both workers'
  // series (gathered by the primary; concurrent scrapes share one gathering).
  const onPort = await Promise.all(
    Array.from({ length: 10 }, async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text()),
  );
  for (const text of onPort) expect([...workerPids(text).keys()].sort()).toEqual(["1", "2"]);

  // Both workers trace their calls (README "Traces"): SendData spans from each worker's process.
  await receiver.until(
    "SendData spans from both workers",
    (spans) =>
      [...first.values()].every((pid) =>
        spans.some(
          (span) =>
            span.name === "streamgate.v1.StreamService/SendData" && Number(span.resource["process.pid"]) === pid,
        ),
      ),
    15_000,
  );

  // A watch ticket made on one worker opens a watch on either: four SSE watches, each on a new
  // connection (so on both workers, in turn), all accepted. Tickets are signed with the primary's secret.
  const { ticket } = await senders[0]!.client.createWatchTicket({ streamId: senders[0]!.streamId });
  const statuses = await Promise.all(
    Array.from({ length: 4 }, () => sseStatus(port, `/v1/streams/${senders[0]!.streamId}/results?ticket=${ticket}`)),
  );
  expect(statuses).toEqual([200, 200, 200, 200]);

  // SIGKILL worker 1 mid-stream; the primary starts a replacement under the same number.
  const killed = first.get("1")!;
  const beforeKill = acknowledgedCount();
  process.kill(killed, "SIGKILL");
  const replaced = await pollUntil(
    "worker 1 replaced",
    async () => {
      const text = await scrape();
      const pid = workerPids(text).get("1");
      return pid !== undefined &&
        pid !== killed &&
        series(text, "streamgate_worker_restarts_total").size === 0 &&
        /^streamgate_worker_restarts_total 1$/m.test(text)
        ? pid
        : undefined;
    },
    { timeoutMs: 45_000, intervalMs: 200 },
  );
  expect(alive(killed)).toBe(false);
  expect(parentOf(replaced)).toBe(primaryPid);
  expect(running.logs.some((line) => line.msg === "worker 1 exited; starting a replacement")).toBe(true);
  // Sends go on through the kill and after the replacement.
  const afterReplacement = acknowledgedCount();
  await pollUntil(
    "40 more records acknowledged",
    async () => (acknowledgedCount() >= afterReplacement + 40 ? true : undefined),
    {
      timeoutMs: 30_000,
      intervalMs: 20,
    },
  );
  sending = false;
  await Promise.all(loops);
  expect(acknowledgedCount()).toBeGreaterThan(beforeKill);

  // Every acknowledged record has exactly one result, in order: none lost with the killed worker.
  const watcher = senders[0]!.client;
  for (const sender of senders) {
    await watcher.closeStream({ streamId: sender.streamId });
    const results: Result[] = (
      await collect(watcher.watchResults({ streamId: sender.streamId, startPosition: StartPosition.EARLIEST }))
    ).map((response) => response.result!);
    const sources = results.map((result) => result.sourceCursor);
    expect(
      sources.filter((cursor, index) => sources.indexOf(cursor) !== index),
      "results repeated",
    ).toEqual([]);
    expect(
      sources.filter((cursor) => sender.acknowledged.includes(cursor)),
      `stream ${sender.streamId}`,
    ).toEqual(sender.acknowledged);
  }

  // SIGTERM to the primary: both workers drain and stop, then the primary; all exit 0.
  const workers = [...workerPids(await scrape()).values()];
  expect(workers).toHaveLength(2);
  running.child.kill("SIGTERM");
  const exit = await running.exited;
  const problems = running.logs.filter(
    (line) => line.level >= 40 || line.msg === "stopped" || line.msg === "stopping" || line.msg === "draining",
  );
  expect(exit, JSON.stringify(problems)).toEqual({ code: 0, signal: null });
  const stopped = running.logs.filter((line) => line.msg === "stopped");
  expect(stopped.map((line) => line.pid).sort()).toEqual([...workers, primaryPid].sort());
  expect(
    running.logs
      .filter((line) => line.msg === "draining")
      .map((line) => line.pid)
      .sort(),
  ).toEqual([...workers].sort());
  for (const pid of workers) expect(alive(pid)).toBe(false);
}, 120_000);
