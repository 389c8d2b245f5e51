/**
 * Traces, with OpenTelemetry: on only when the standard variables configure
 * an OTLP endpoint (README "Traces"), exported as OTLP over HTTP with
 * protobuf. Off, which is the default, costs nothing: the SDK is never
 * imported (it comes in by a dynamic import below), `traces` stays undefined,
 * and every place on the record's path that would make a span tests that and
 * does nothing else: no header is parsed, no span or context object is made.
 */
import type { Logger } from "./logger.js";
import type { Traces } from "./trace-points.js";

/** Tracing as started: whether it is on, and its flush and stop. */
export interface Tracing {
  readonly enabled: boolean;
  /** Exports the spans still buffered and stops; resolves (never rejects) once done or given up. */
  shutdown(): Promise<void>;
}

/**
 * Where spans are made while tracing is on; undefined while it is off. The
 * one thing a hot path checks: `traces?.startSend(...)`.
 */
export let traces: Traces | undefined;

const OFF: Tracing = { enabled: false, shutdown: async () => {} };

let dropped = 0;

/**
 * Spans dropped so far because the export queue (OTEL_BSP_MAX_QUEUE_SIZE) was
 * full: spans are never waited for, so a receiver that is away or slow costs
 * spans, not memory or calls (streamgate_trace_spans_dropped_total).
 */
export function droppedSpans(): number {
  return dropped;
}

/**
 * Whether `env` turns tracing on: OTEL_SDK_DISABLED is not "true",
 * OTEL_TRACES_EXPORTER does not say "none", and either it names "otlp" or an
 * OTLP endpoint (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
 * OTEL_EXPORTER_OTLP_ENDPOINT) is set.
 */
export function tracingWanted(env: NodeJS.ProcessEnv): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return false;
  const exporters = exporterNames(env);
  if (exporters.includes("none")) return false;
  if (exporters.includes("otlp")) return true;
  return Boolean(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim());
}

/**
 * Starts tracing as `env` says (see {@link tracingWanted}); call it before
 * the app starts, so its interceptor chain and record path see `traces`.
 */
export async function startTracing(logger: Logger, env: NodeJS.ProcessEnv = process.env): Promise<Tracing> {
  const unsupported = exporterNames(env).filter((name) => name !== "otlp" && name !== "none");
  if (unsupported.length > 0) {
    logger.warn({ exporters: unsupported }, "OTEL_TRACES_EXPORTER: only otlp (or none) is supported; ignored");
  }
  if (!tracingWanted(env)) return OFF;
  const { startSdk } = await import("./tracing-sdk.js");
  const sdk = startSdk(logger, env, (spans) => {
    dropped += spans;
  });
  traces = sdk.traces;
  logger.info({ endpoint: sdk.endpoint, protocol: "http/protobuf" }, "tracing on: spans exported over OTLP");
  let stopping: Promise<void> | undefined;
  return {
    enabled: true,
    shutdown: () =>
      (stopping ??= sdk.shutdown().then(
        () => {
          traces = undefined;
        },
        (error: unknown) => {
          traces = undefined;
          logger.warn({ err: error }, "exporting the last spans failed");
        },
      )),
  };
}

/** OTEL_TRACES_EXPORTER's names, lowercased ([] when unset). */
function exporterNames(env: NodeJS.ProcessEnv): string[] {
  return (env.OTEL_TRACES_EXPORTER ?? "")
    .split(",")
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== "");
}
