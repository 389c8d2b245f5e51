/**
 * The Grafana dashboard (ops/grafana/streamgate-dashboard.json) and the
 * Prometheus rules (ops/prometheus/streamgate-rules.yml) against real data: a
 * streamgate on the test Kafka broker is given traffic that makes every
 * panel's series exist and move (calls that succeed, fail and are refused,
 * live and filtered watches, a record that fails, an SSE watch that
 * overflows, a rate-limit denial; twice, with a scrape between), the real
 * Prometheus scrapes it every second with the rules loaded, and then every
 * PromQL expression of the dashboard, with Grafana's variables substituted,
 * returns data through /api/v1/query (a rate above 0), and every rule
 * evaluates without error.
 */
import { readFileSync } from "node:fs";
import * as http2 from "node:http2";
import { fileURLToPath } from "node:url";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { StartPosition } from "../gen/streamgate/v1/stream_service_pb.js";
import { startKafkaTestServer, uniqueTopicPrefix } from "./support/kafka-gateway.js";
import { type PrometheusServer, type PromSample, startPrometheus } from "./support/prometheus.js";
import { failureOf } from "./support/refusal.js";
import { activeWatchers, adminClient, streamClient, TEST_API_KEY, type TestServer } from "./support/server.js";

const RULES = fileURLToPath(new URL("../ops/prometheus/streamgate-rules.yml", import.meta.url));
const DASHBOARD = fileURLToPath(new URL("../ops/grafana/streamgate-dashboard.json", import.meta.url));
/** Grafana's reference to the `datasource` variable, as every panel's data source uid. */
const DATASOURCE_VARIABLE = "$" + "{datasource}";
const ADMIN_KEY = "streamgate-ops-admin-key-0123456789";
/** Small, so a watcher that reads nothing overflows after a few results. */
const WATCH_BUFFER = 8;
/**
 * What Grafana puts for $__rate_interval on a range of a few hours (at least 4 scrape
 * intervals; 1 s here): long enough to hold both rounds of traffic.
 */
const RATE_INTERVAL = "1m";
/** How long the data may take to reach every query: scrapes and rule evaluations are 1 s apart. */
const SETTLE_MS = 30_000;

const json = (value: JsonValue) => ({ case: "data" as const, value: fromJson(ValueSchema, value) });

interface DataSourceRef {
  type: string;
  uid: string;
}
interface Target {
  expr: string;
  refId: string;
  datasource?: DataSourceRef;
}
interface Panel {
  type: string;
  title: string;
  datasource?: DataSourceRef;
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  schemaVersion: number;
  templating: { list: Array<{ name: string; type: string; query: unknown }> };
  panels: Panel[];
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as Dashboard;
/** Every panel, those inside collapsed rows too. */
const panels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);

/** `expr` with Grafana's variables replaced as a dashboard on `job` would have them; throws on one it does not know. */
function substitute(expr: string, job: string): string {
  const values: Record<string, string> = { __rate_interval: RATE_INTERVAL, job };
  return expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, braced?: string, bare?: string) => {
    const name = (braced ?? bare)!;
    if (!(name in values)) throw new Error(`unknown Grafana variable ${whole} in ${expr}`);
    return values[name]!;
  });
}

/** Polls `attempt` every 250 ms until it returns a value, and returns it; undefined once `deadline` has passed. */
async function settle<T>(attempt: () => Promise<T | undefined>, deadline: number): Promise<T | undefined> {
  for (;;) {
    const value = await attempt();
    if (value !== undefined || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Polls `condition` every 50 ms until it holds; throws naming `what` after `timeoutMs`. */
async function until(condition: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** streamgate_watchers_interrupted_total{reason="overflow"} as the server's /metrics reports it. */
async function overflows(server: TestServer): Promise<number> {
  const text = await (await fetch(`${server.baseUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith('streamgate_watchers_interrupted_total{reason="overflow"}'));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

describe("the Grafana dashboard and the Prometheus rules on a real streamgate and Prometheus", () => {
  let server: TestServer | undefined;
  let prometheus: PrometheusServer | undefined;

  /**
   * One round of traffic that makes every panel's series move: calls that succeed, fail and are
   * refused, a live watch and a watch whose filter fails, a record that fails, an SSE watch that
   * overflows, and a rate-limit denial. Each round uses streams of its own.
   */
  async function traffic(round: number): Promise<void> {
    const s = server!;
    const client = streamClient(s, "grpc", TEST_API_KEY);
    const live = `live-${round}`;
    const poison = `poison-${round}`;
    const stalled = `stalled-${round}`;

    // A watch from the latest result (end-to-end latency is measured on live results), and a
    // watch whose filter fails on every result.
    await client.startStream({ streamId: live });
    await client.startStream({ streamId: poison, processing: { transform: "{'v': data.missing + 1}" } });
    const watchers = await activeWatchers(s);
    const results = client
      .watchResults({ streamId: live, startPosition: StartPosition.LATEST })
      [Symbol.asyncIterator]();
    const first = results.next();
    // Awaited below; a failure before then must not go unhandled.
    first.catch(() => undefined);
    const stopFiltered = new AbortController();
    const filtered = client
      .watchResults(
        { streamId: live, startPosition: StartPosition.LATEST, filter: "data.missing > 1" },
        { signal: stopFiltered.signal },
      )
      [Symbol.asyncIterator]()
      .next()
      .catch(() => undefined);
    await until(async () => (await activeWatchers(s)) === watchers + 2, "both watches to open");
    for (let n = 0; n < 3; n++) await client.sendData({ streamId: live, payload: json({ n }) });
    expect((await first).done).toBe(false);
    expect((await results.next()).done).toBe(false);
    expect((await results.next()).done).toBe(false);
    await results.return?.();
    stopFiltered.abort();
    await filtered;

    // A record whose transform fails (streamgate_records_failed_total{reason="cel_error"}).
    await client.sendData({ streamId: poison, payload: json({ n: 1 }) });
    // A call that fails, and a call refused at the edge for a wrong key.
    expect((await failureOf(client.getStream({ streamId: "missing" }))).code).toBe(Code.NotFound);
    const stranger = streamClient(s, "grpc", "not-a-key-0123456789");
    expect((await failureOf(stranger.getStream({ streamId: live }))).code).toBe(Code.Unauthenticated);

    // An SSE watch whose client reads nothing: HTTP/2 with a zero window, so it overflows WATCH_BUFFER.
    await client.startStream({ streamId: stalled });
    const session = http2.connect(s.baseUrl, { settings: { initialWindowSize: 0 } });
    try {
      const stream = session.request({ ":path": `/v1/streams/${stalled}/results`, "x-api-key": TEST_API_KEY });
      stream.on("error", () => undefined);
      await new Promise((resolve) => stream.once("response", resolve));
      const before = await overflows(s);
      for (let n = 0; n < 60 && (await overflows(s)) === before; n++) {
        await client.sendData({ streamId: stalled, payload: json({ n, pad: "x".repeat(2000) }) });
      }
      await until(async () => (await overflows(s)) > before, "the stalled SSE watch to overflow");
    } finally {
      session.destroy();
    }

    // A rate-limit denial: one token a second for each client, three calls at once; then no limit again.
    const admin = adminClient(s, "grpc", ADMIN_KEY);
    await admin.updateLimits({
      limits: { perClient: { ratePerSecond: 1, burst: 1 } },
      updateMask: { paths: ["per_client"] },
    });
    const codes = await Promise.all(
      [1, 2, 3].map((n) => failureOf(client.getStream({ streamId: `limited-${n}` })).then((error) => error.code)),
    );
    expect(codes).toContain(Code.ResourceExhausted);
    await admin.updateLimits({ limits: {}, updateMask: { paths: ["per_client"] } });
  }

  /** Resolves once Prometheus holds a sample of `expr` (polling its API). */
  async function scraped(expr: string, what: string): Promise<void> {
    await until(async () => (await prometheus!.query(expr)).result.length > 0, what, SETTLE_MS);
  }

  beforeAll(async () => {
    server = await startKafkaTestServer(uniqueTopicPrefix("opsdash"), {
      API_KEYS: `test:${TEST_API_KEY}`,
      ADMIN_API_KEYS: `admin:${ADMIN_KEY}`,
      WATCH_BUFFER: String(WATCH_BUFFER),
    });
    prometheus = await startPrometheus({ targets: [`127.0.0.1:${server.port}`], ruleFiles: [RULES] });
    const job = prometheus.job;
    await scraped(`up{job="${job}"} == 1`, "the first scrape");
    // Twice: a counter first seen after the first round has moved in the second, so rates are not 0.
    await traffic(1);
    await scraped(`streamgate_limiter_requests_total{job="${job}", result="denied"}`, "a scrape after the first round");
    await traffic(2);
    await scraped(
      `sum(increase(streamgate_limiter_requests_total{job="${job}", result="denied"}[1m])) > 0`,
      "a scrape after the second round",
    );
  });

  afterAll(async () => {
    await prometheus?.stop();
    await server?.close();
  });

  it("is a Grafana dashboard with a Prometheus data source variable and the panels it promises", () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.templating.list).toContainEqual(
      expect.objectContaining({ name: "datasource", type: "datasource", query: "prometheus" }),
    );
    // Every query goes to the data source the variable chooses.
    for (const panel of panels.filter((p) => p.type !== "row")) {
      expect(panel.datasource, panel.title).toEqual({ type: "prometheus", uid: DATASOURCE_VARIABLE });
      for (const target of panel.targets ?? []) expect(target.datasource ?? panel.datasource).toEqual(panel.datasource);
    }
    const exprs = panels.flatMap((panel) => panel.targets ?? []).map((target) => target.expr);
    for (const metric of [
      "grpc_server_handled_total",
      "streamgate:grpc_server_failed:ratio_rate5m",
      "streamgate:grpc_server_handling_seconds:p99_rate5m",
      "streamgate:grpc_server_handling_seconds:p50_rate5m",
      "streamgate_end_to_end_seconds_bucket",
      "streamgate_broker_produce_seconds_bucket",
      "streamgate_broker_records_produced_total",
      "streamgate_broker_records_consumed_total",
      "streamgate_consumer_lag_records",
      "streamgate_active_streams",
      "streamgate_active_watchers",
      "streamgate_refusals_total",
      "streamgate_limiter_requests_total",
      "streamgate_watchers_interrupted_total",
      "streamgate_records_failed_total",
      "streamgate_http_watches_total",
      "streamgate_broker_up",
      "nodejs_eventloop_lag_seconds",
      "process_resident_memory_bytes",
    ]) {
      expect(
        exprs.some((expr) => expr.includes(metric)),
        metric,
      ).toBe(true);
    }
  });

  it("answers every PromQL expression of the dashboard with data", async () => {
    const targets = panels.flatMap((panel) =>
      (panel.targets ?? []).map((target) => ({ panel: panel.title, refId: target.refId, expr: target.expr })),
    );
    expect(targets.length).toBeGreaterThan(20);
    const deadline = Date.now() + SETTLE_MS;
    const missing: string[] = [];
    for (const { panel, refId, expr } of targets) {
      const query = substitute(expr, prometheus!.job);
      expect(query, `${panel} ${refId}`).not.toContain("$");
      // query() throws on any status but "success". Some sample must be a number, not only NaN
      // (a quantile of no observations, a ratio of no calls); of a rate, above 0: the traffic moved it.
      const wanted = expr.includes("rate(") ? (value: number) => value > 0 : (value: number) => !Number.isNaN(value);
      let last: PromSample[] = [];
      const result = await settle<PromSample[]>(async () => {
        last = (await prometheus!.query(query)).result;
        return last.some((sample) => wanted(Number(sample.value[1]))) ? last : undefined;
      }, deadline);
      if (result === undefined) {
        const got = last.map((sample) => `${JSON.stringify(sample.metric)} ${sample.value[1]}`).join("; ") || "nothing";
        missing.push(`${panel} ${refId}: ${query} → ${got}`);
      }
    }
    expect(missing, `Prometheus log:\n${prometheus!.log()}`).toEqual([]);
  }, 60_000);

  it("evaluates every recording and alerting rule without error", async () => {
    const groups = (parse(readFileSync(RULES, "utf8")) as { groups: Array<{ name: string; rules: unknown[] }> }).groups;
    const loaded = await settle(async () => {
      const found = await prometheus!.ruleGroups();
      const evaluated = found.every((group) => group.rules.every((rule) => rule.health !== "unknown"));
      return found.length === groups.length && evaluated ? found : undefined;
    }, Date.now() + SETTLE_MS);
    expect(loaded, "the rule groups were not all loaded and evaluated").toBeDefined();
    const shape = (list: Array<{ name: string; rules: unknown[] }>) =>
      list.map((group) => `${group.name}: ${group.rules.length} rules`).sort();
    expect(shape(loaded!)).toEqual(shape(groups));
    const unhealthy = loaded!.flatMap((group) =>
      group.rules
        .filter((rule) => rule.health !== "ok")
        .map((rule) => `${group.name}/${rule.name}: ${rule.health} ${rule.lastError ?? ""}`),
    );
    expect(unhealthy).toEqual([]);
    // The rules see this job's series (its name contains "streamgate"): the recorded call rates are there.
    const notFound = `streamgate:grpc_server_handled:rate5m{job="${prometheus!.job}", grpc_method="GetStream", grpc_code="NotFound"}`;
    const recorded = await settle(async () => {
      const { result } = await prometheus!.query(notFound);
      return result.length > 0 ? result : undefined;
    }, Date.now() + SETTLE_MS);
    expect(recorded, notFound).toHaveLength(1);
    expect(Number(recorded![0]!.value[1])).toBeGreaterThan(0);
  });
});
