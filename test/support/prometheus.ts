/**
 * The real Prometheus server (Debian's package, installed by scripts/tools.sh)
 * for a test: scraping given streamgate targets every second with the shipped
 * rule files loaded, in a temporary data directory, on a free loopback port,
 * and read through its HTTP API as Grafana reads it. promtool comes from the
 * same package. A missing binary fails the test with how to install it.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports.js";

/** Throws, saying how to install it, unless `binary` (prometheus, promtool) runs. */
export function requirePrometheusTool(binary: "prometheus" | "promtool"): void {
  const found = spawnSync(binary, ["--version"], { encoding: "utf8" });
  if (found.error !== undefined || found.status !== 0) {
    throw new Error(
      `${binary} is missing: run \`bash scripts/tools.sh\` (it installs Debian's prometheus package, which has both prometheus and promtool)`,
    );
  }
}

/** One sample of an instant query's vector result. */
export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

/** A rule as GET /api/v1/rules reports it. */
export interface PromRule {
  name: string;
  type: "recording" | "alerting";
  health: string;
  lastError?: string;
  lastEvaluation: string;
}

/** A rule group as GET /api/v1/rules reports it. */
export interface PromRuleGroup {
  name: string;
  file: string;
  rules: PromRule[];
}

/** A running Prometheus. */
export interface PrometheusServer {
  baseUrl: string;
  /** The scrape job's name (the `job` label of every scraped series). */
  job: string;
  /** An instant query's result (status "success"), or throws with Prometheus's error. */
  query(expr: string): Promise<{ resultType: string; result: PromSample[] }>;
  /** GET /api/v1/rules' groups. */
  ruleGroups(): Promise<PromRuleGroup[]>;
  /** What the process wrote on stderr so far (its log), for failure messages. */
  log(): string;
  /** Stops the process (SIGTERM, then SIGKILL after 5 s) and removes its data directory. */
  stop(): Promise<void>;
}

export interface PrometheusOptions {
  /** host:port of each /metrics target. */
  targets: string[];
  /** Absolute paths of rule files to load. */
  ruleFiles: string[];
  job?: string;
}

/**
 * Starts `prometheus` scraping `targets` (job `job`, every second; rules
 * evaluated every second) and resolves once it reports ready.
 */
export async function startPrometheus({
  targets,
  ruleFiles,
  job = "streamgate",
}: PrometheusOptions): Promise<PrometheusServer> {
  requirePrometheusTool("prometheus");
  const dir = await mkdtemp(join(tmpdir(), "streamgate-prometheus-"));
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  // JSON is YAML: Prometheus reads it as written.
  const config = {
    global: { scrape_interval: "1s", scrape_timeout: "1s", evaluation_interval: "1s" },
    rule_files: ruleFiles,
    scrape_configs: [{ job_name: job, metrics_path: "/metrics", static_configs: [{ targets }] }],
  };
  const configFile = join(dir, "prometheus.yml");
  await writeFile(configFile, JSON.stringify(config, null, 2));
  const child: ChildProcess = spawn(
    "prometheus",
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const running = () => child.exitCode === null && child.signalCode === null;

  const stop = async () => {
    if (running()) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (!running()) throw new Error(`prometheus exited (${child.exitCode ?? child.signalCode}):\n${stderr}`);
      const ready = await fetch(`${baseUrl}/-/ready`).then(
        (response) => response.ok,
        () => false,
      );
      if (ready) break;
      if (Date.now() > deadline) throw new Error(`prometheus not ready within 20 s:\n${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } catch (error) {
    await stop();
    throw error;
  }

  const api = async <T>(path: string): Promise<T> => {
    const response = await fetch(`${baseUrl}${path}`);
    const body = (await response.json()) as { status: string; data: T; error?: string; errorType?: string };
    if (body.status !== "success") throw new Error(`prometheus ${path}: ${body.errorType}: ${body.error}`);
    return body.data;
  };
  return {
    baseUrl,
    job,
    query: (expr) => api(`/api/v1/query?query=${encodeURIComponent(expr)}`),
    ruleGroups: async () => (await api<{ groups: PromRuleGroup[] }>("/api/v1/rules")).groups,
    log: () => stderr,
    stop,
  };
}
