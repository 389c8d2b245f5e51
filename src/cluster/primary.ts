/**
 * The primary of a cluster (WORKERS > 1): it serves no request itself. It
 * starts the workers (worker.ts), each a whole streamgate on the one port (the
 * primary accepts connections and hands them to the workers in turn); replaces
 * a worker that dies; on SIGTERM or SIGINT passes SIGTERM to every worker,
 * which drain as one instance does, and exits when they have; and serves
 * METRICS_PORT: every worker's metrics, each series labelled with its worker,
 * and probes that answer for the workers.
 */
import cluster, { type Worker } from "node:cluster";
import { AggregatorRegistry, Counter, Gauge, Registry } from "prom-client";
import { listenMetrics } from "../app/metrics-endpoint.js";
import { generateApiKey } from "../app/parts.js";
import type { NotReady } from "../app/probes.js";
import { type Backoff, backoffMs } from "../common/backoff.js";
import type { Config } from "../config/config.js";
import type { Logger } from "../observe/logger.js";
import { IpcQuestions } from "./ipc-questions.js";
import {
  GENERATED_KEY_VARIABLE,
  isStreamgateMessage,
  type PrimaryMessage,
  type Scrape,
  WORKER_INDEX_VARIABLE,
  type WorkerMessage,
} from "./messages.js";

/** How long a worker may take to answer a readiness question. */
const READINESS_TIMEOUT_MS = 2_000;
/** A worker that ran this long before it died was healthy: its replacement starts at once. */
const STABLE_AFTER_MS = 30_000;
/** Pauses before replacing a worker that died soon after it started, so that a crash loop does not spin. */
const RESTART_BACKOFF: Backoff = { firstMs: 1_000, maxMs: 30_000 };
/** Time beyond SHUTDOWN_TIMEOUT_MS a worker gets to exit after SIGTERM before it is killed. */
const EXIT_GRACE_MS = 15_000;

/** A running cluster. */
export interface Primary {
  /** The port the workers share. */
  port: number;
  /** The METRICS_PORT listener's port, when one is configured. */
  metricsPort: number | undefined;
  /** The key generated because no credential is configured, which every worker accepts. */
  generatedApiKey: string | undefined;
  /** Passes SIGTERM to every worker and resolves once all have exited: true when every one exited 0. */
  stop(): Promise<boolean>;
  /** SIGKILLs every worker (a second signal). */
  kill(): void;
}

/** One worker's place: its number stays, its process is replaced when it dies. */
interface Slot {
  worker: Worker;
  startedAt: number;
  /** Deaths soon after start in a row, for the pause before the next replacement. */
  quickDeaths: number;
  restart?: NodeJS.Timeout;
}

/**
 * Starts `config.workers` workers and resolves once every one listens; if one
 * dies before it listens, stops the others and throws.
 */
export async function startPrimary(config: Config, logger: Logger): Promise<Primary> {
  // Every worker must accept the same generated key and sign and check tickets with the same secret.
  const noCredential = config.auth.apiKeys.length === 0 && config.auth.jwt === undefined;
  const generatedApiKey = noCredential ? generateApiKey() : undefined;
  const shared: NodeJS.ProcessEnv = {
    ...(generatedApiKey === undefined ? {} : { [GENERATED_KEY_VARIABLE]: generatedApiKey }),
    ...(config.push.ticketSecret === undefined ? { WATCH_TICKET_SECRET: generateApiKey() } : {}),
  };
  const registry = new Registry();
  const restarts = new Counter({
    name: "streamgate_worker_restarts_total",
    help: "Workers the primary replaced after they died (WORKERS > 1).",
    registers: [registry],
  });
  new Gauge({
    name: "streamgate_workers",
    help: "Workers configured (WORKERS); streamgate_worker_info counts those running.",
    registers: [registry],
  }).set(config.workers);
  const workersRegistry = new AggregatorRegistry();
  const readinessAnswers = new IpcQuestions<NotReady | null>(READINESS_TIMEOUT_MS);
  const slots = new Map<number, Slot>();
  let stopping = false;
  let metricsListener: Awaited<ReturnType<typeof listenMetrics>> | undefined;

  /**
   * Every worker's metrics, then the primary's own. Scrapes at the same time share one
   * gathering: GET /metrics needs no credential, and each gathering asks every worker.
   */
  let gathering: Promise<Scrape> | undefined;
  const scrape = (): Promise<Scrape> =>
    (gathering ??= (async () => ({
      contentType: workersRegistry.contentType,
      body: (await workersRegistry.clusterMetrics()) + (await registry.metrics()),
    }))().finally(() => {
      gathering = undefined;
    }));
  /** A message from `worker`; `listened` hears of its port once it listens. */
  const onMessage = (worker: Worker, message: unknown, listened: (port: number) => void) => {
    if (!isStreamgateMessage<WorkerMessage>(message)) return;
    if (message.type === "streamgate:listening") listened(message.port);
    else if (message.type === "streamgate:readiness") readinessAnswers.answer(message.id, message.notReady);
    else if (message.type === "streamgate:scrape") {
      const reply = (answer: PrimaryMessage) => {
        if (worker.isConnected()) worker.send(answer);
      };
      scrape().then(
        (result) => reply({ type: "streamgate:scraped", id: message.id, scrape: result, error: null }),
        (error: unknown) => reply({ type: "streamgate:scraped", id: message.id, scrape: null, error: String(error) }),
      );
    }
  };

  /** Forks worker `index`; resolves with its port once it listens, rejects if it exits first. */
  const fork = (index: number): { worker: Worker; listening: Promise<number> } => {
    const worker = cluster.fork({ ...shared, [WORKER_INDEX_VARIABLE]: String(index) });
    const listening = new Promise<number>((resolve, reject) => {
      worker.on("message", (message) => onMessage(worker, message, resolve));
      worker.once("exit", (code, signal) =>
        reject(new Error(`worker ${index} exited (${signal ?? `code ${code}`}) before it listened`)),
      );
    });
    worker.once("exit", (code, signal) => onExit(index, worker, code, signal));
    return { worker, listening };
  };

  const onExit = (index: number, worker: Worker, code: number | null, signal: string | null) => {
    const slot = slots.get(index);
    if (stopping || slot?.worker !== worker) return;
    const lived = Date.now() - slot.startedAt;
    slot.quickDeaths = lived < STABLE_AFTER_MS ? slot.quickDeaths + 1 : 0;
    const pauseMs = slot.quickDeaths === 0 ? 0 : backoffMs(slot.quickDeaths, RESTART_BACKOFF);
    logger.error(
      { worker: index, workerPid: worker.process.pid, code, signal, restartInMs: pauseMs },
      `worker ${index} exited; starting a replacement`,
    );
    slot.restart = setTimeout(() => {
      slot.restart = undefined;
      if (stopping) return;
      restarts.inc();
      const { worker: replacement, listening } = fork(index);
      slot.worker = replacement;
      slot.startedAt = Date.now();
      listening.then(
        () => logger.info({ worker: index, workerPid: replacement.process.pid }, `worker ${index} replaced`),
        () => {}, // its exit is handled as any other
      );
    }, pauseMs);
  };

  const exited = (worker: Worker) =>
    new Promise<number | null>((resolve) => {
      if (worker.isDead()) resolve(worker.process.exitCode);
      else worker.once("exit", (code) => resolve(code));
    });
  const stop = async (): Promise<boolean> => {
    stopping = true;
    const running = [...slots.values()];
    for (const slot of running) {
      clearTimeout(slot.restart);
      if (!slot.worker.isDead()) slot.worker.process.kill("SIGTERM");
    }
    // A worker that does not finish its drain in time is killed: the stop must end.
    const killer = setTimeout(() => kill(), config.shutdownTimeoutMs + EXIT_GRACE_MS);
    const codes = await Promise.all(running.map((slot) => exited(slot.worker)));
    clearTimeout(killer);
    await metricsListener?.close();
    return codes.every((code) => code === 0);
  };
  const kill = () => {
    for (const slot of slots.values()) if (!slot.worker.isDead()) slot.worker.process.kill("SIGKILL");
  };

  const starting: Promise<number>[] = [];
  for (let index = 1; index <= config.workers; index++) {
    const { worker, listening } = fork(index);
    slots.set(index, { worker, startedAt: Date.now(), quickDeaths: 0 });
    starting.push(listening);
  }
  let port: number;
  try {
    [port] = (await Promise.all(starting)) as [number];
  } catch (error) {
    await stop();
    throw error;
  }

  /** Ready while any worker is: the port's connections go to the workers that listen. Probes at the same time share one round of questions. */
  let asking: Promise<NotReady | undefined> | undefined;
  const readiness = (): Promise<NotReady | undefined> =>
    (asking ??= askWorkers().finally(() => {
      asking = undefined;
    }));
  const askWorkers = async (): Promise<NotReady | undefined> => {
    if (stopping) return "draining";
    const answers = await Promise.allSettled(
      [...slots]
        .filter(([, slot]) => slot.worker.isConnected())
        .map(([index, slot]) =>
          readinessAnswers.ask(
            (id) => slot.worker.send({ type: "streamgate:ready?", id } satisfies PrimaryMessage),
            `worker ${index} readiness`,
          ),
        ),
    );
    return answers.some((answer) => answer.status === "fulfilled" && answer.value === null)
      ? undefined
      : "no worker ready";
  };
  const metricsPort = config.metricsPort;
  try {
    metricsListener =
      metricsPort === undefined ? undefined : await listenMetrics({ scrape }, metricsPort, config.host, readiness);
  } catch (error) {
    await stop();
    throw error;
  }
  return { port, metricsPort: metricsListener?.port, generatedApiKey, stop, kill };
}
