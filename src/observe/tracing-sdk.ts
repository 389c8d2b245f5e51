/**
 * The OpenTelemetry Node SDK, started for traces alone: imported by
 * src/observe/tracing.ts only when tracing is on. The SDK reads the standard
 * OTEL_* variables itself: the sampler (OTEL_TRACES_SAMPLER, default
 * parentbased_always_on), the batch processor (OTEL_BSP_*), span limits, the
 * resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES; process, host and
 * service.instance.id detected), and the exporter its endpoint, headers,
 * timeout and compression (OTEL_EXPORTER_OTLP_*). The exporter is always
 * OTLP over HTTP with protobuf; metrics and logs are not exported (they are
 * /metrics and stdout's).
 */
import { type DiagLogger, DiagLogLevel, diag, trace } from "@opentelemetry/api";
import { diagLogLevelFromString, W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { defaultResource, resourceFromAttributes } from "@opentelemetry/resources";
import { NodeSDK } from "@opentelemetry/sdk-node";
import type { Logger } from "./logger.js";
import { createTraces } from "./otel-traces.js";
import type { Traces } from "./trace-points.js";

/** The SDK started: where spans are made, where they go, and its stop. */
export interface StartedSdk {
  traces: Traces;
  /** The traces endpoint, without credentials or query, for the start log line. */
  endpoint: string;
  /** Exports what is buffered, then stops. */
  shutdown(): Promise<void>;
}

/**
 * Starts the SDK (see the module comment); its diagnostics go to `logger`, and
 * `onDropped` hears of the spans its batch processor dropped.
 */
export function startSdk(logger: Logger, env: NodeJS.ProcessEnv, onDropped: (spans: number) => void): StartedSdk {
  const sdk = new NodeSDK({
    // The service's name unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES gives one (detected over this).
    resource: defaultResource().merge(resourceFromAttributes({ "service.name": "streamgate" })),
    traceExporter: new OTLPTraceExporter(),
    // Set globally for completeness; streamgate's spans use their own W3C propagator (src/observe/otel-traces.ts).
    textMapPropagator: new W3CTraceContextPropagator(),
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [],
  });
  // The SDK's diagnostics are log lines (its console logger would write plain text among the JSON lines on
  // stdout), at OTEL_LOG_LEVEL, warnings by default: an unreachable receiver is one line per failed export.
  const level = (env.OTEL_LOG_LEVEL ? diagLogLevelFromString(env.OTEL_LOG_LEVEL) : undefined) ?? DiagLogLevel.WARN;
  // At least WARN, whatever OTEL_LOG_LEVEL says: the processor reports dropped spans only as a warning.
  diag.setLogger(diagTo(logger, level, onDropped), {
    logLevel: Math.max(level, DiagLogLevel.WARN),
    suppressOverrideMessage: true,
  });
  sdk.start();
  return {
    traces: createTraces(trace.getTracer("streamgate")),
    endpoint: endpointOf(env),
    shutdown: () => sdk.shutdown(),
  };
}

/**
 * The batch processor's report of spans dropped because its queue
 * (OTEL_BSP_MAX_QUEUE_SIZE) was full, made when it next takes a span; its only
 * report of them (test/tracing.test.ts fails should the wording change).
 */
const DROPPED = /^Dropped (\d+) spans because maxQueueSize reached$/;

/**
 * The SDK's diagnostics as log lines at `level`; its errors are warnings here
 * (a receiver away is not streamgate's error). Dropped spans are counted.
 */
function diagTo(logger: Logger, level: DiagLogLevel, onDropped: (spans: number) => void): DiagLogger {
  const write = (at: DiagLogLevel, method: "warn" | "info" | "debug") => (message: string) => {
    if (at <= level) logger[method]({ component: "opentelemetry" }, message);
  };
  const warn = write(DiagLogLevel.WARN, "warn");
  return {
    error: write(DiagLogLevel.ERROR, "warn"),
    warn: (message) => {
      const dropped = DROPPED.exec(message);
      if (dropped) onDropped(Number(dropped[1]));
      warn(message);
    },
    info: write(DiagLogLevel.INFO, "info"),
    debug: write(DiagLogLevel.DEBUG, "debug"),
    verbose: write(DiagLogLevel.VERBOSE, "debug"),
  };
}

/** Where the exporter sends spans, as it works it out from the variables, shown without credentials or query. */
function endpointOf(env: NodeJS.ProcessEnv): string {
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  const url =
    env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() ||
    (base ? `${base.replace(/\/+$/, "")}/v1/traces` : "http://localhost:4318/v1/traces");
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    return "(not a URL)";
  }
}
