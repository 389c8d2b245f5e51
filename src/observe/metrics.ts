/**
 * Prometheus metrics (prom-client), one Registry per app rather than the global
 * default, so several apps in one process (tests) keep their own figures. Names
 * follow go-grpc-prometheus for the RPC metrics; the rest are streamgate_*.
 * No label takes unbounded values: never a stream id.
 */
import { AggregatorRegistry, Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** Which of the three topics a broker metric is about. */
export type TopicKind = "ingest" | "results" | "streams";

/** The gRPC call type, as go-grpc-prometheus names it. */
export type GrpcType = "unary" | "client_stream" | "server_stream" | "bidi_stream";

/**
 * Why a bound refused a connection, a call or a request (at the edge, or a
 * quota in the domain): the label values of streamgate_refusals_total
 * (README "Limits and protections").
 */
export type RefusalReason =
  | "max_connections"
  | "max_connections_per_peer"
  | "first_bytes_timeout"
  | "http2_idle_timeout"
  | "request_body_timeout"
  | "connection_buffer"
  | "unauthenticated"
  | "permission_denied"
  | "peer_rate_limit"
  | "cel_too_long"
  | "cel_too_costly"
  | "stream_quota"
  | "watcher_quota";

/** Why processing one record failed: the label values of streamgate_records_failed_total. */
export type RecordFailure = "cel_error" | "cel_cost" | "result_too_large" | "serialization" | "exception";

/** What the gauges read at scrape time. */
export interface GaugeSources {
  /** Open (not closed) streams in the registry. */
  activeStreams(): number;
  /** Open WatchResults calls. */
  activeWatchers(): number;
  /** Ingest records written to the partitions this instance processes but not yet processed (see Processor.lag). */
  consumerLag(): number;
  /** Spans dropped because the trace export queue was full, so far (src/observe/tracing.ts). */
  droppedSpans(): number;
  /** Server-streaming and bidi calls, and SSE and WebSocket watches, received and waiting for a turn of the event loop to start (see call-admission.ts). */
  callsWaiting(): number;
}

const RPC_LABELS = ["grpc_service", "grpc_method", "grpc_type"] as const;
/** Latency buckets from 0.5 ms to 10 s: RPCs and produce calls are mostly in the low milliseconds. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Every metric of one app, registered in its own {@link Registry}. */
export class Metrics {
  readonly registry = new Registry();
  readonly started = new Counter({
    name: "grpc_server_started_total",
    help: "Total number of RPCs started on the server.",
    labelNames: RPC_LABELS,
    registers: [this.registry],
  });
  readonly handled = new Counter({
    name: "grpc_server_handled_total",
    help: "Total number of RPCs completed on the server, regardless of success or failure.",
    labelNames: [...RPC_LABELS, "grpc_code"] as const,
    registers: [this.registry],
  });
  readonly handling = new Histogram({
    name: "grpc_server_handling_seconds",
    help: "Histogram of response latency (seconds) of RPCs handled by the server.",
    labelNames: RPC_LABELS,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly received = new Counter({
    name: "grpc_server_msg_received_total",
    help: "Total number of RPC stream messages received on the server.",
    labelNames: RPC_LABELS,
    registers: [this.registry],
  });
  readonly sent = new Counter({
    name: "grpc_server_msg_sent_total",
    help: "Total number of RPC stream messages sent by the server.",
    labelNames: RPC_LABELS,
    registers: [this.registry],
  });
  readonly produced = new Counter({
    name: "streamgate_broker_records_produced_total",
    help: "Records the broker acknowledged as stored, by topic.",
    labelNames: ["topic_kind"] as const,
    registers: [this.registry],
  });
  readonly consumed = new Counter({
    name: "streamgate_broker_records_consumed_total",
    help: "Records delivered by the broker to this instance's subscribers, by topic.",
    labelNames: ["topic_kind"] as const,
    registers: [this.registry],
  });
  readonly produceSeconds = new Histogram({
    name: "streamgate_broker_produce_seconds",
    help: "Latency of broker produce calls, until the records are stored.",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly endToEnd = new Histogram({
    name: "streamgate_end_to_end_seconds",
    help: "Time from a record's SendData to its result's delivery to a watcher.",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly limiter = new Counter({
    name: "streamgate_limiter_requests_total",
    help: "Rate-limit decisions, by result (allowed, denied), bucket (global, client), client (a configured API key's name, else anonymous) and tenant (a configured API key's tenant, else anonymous).",
    labelNames: ["result", "limit", "client", "tenant"] as const,
    registers: [this.registry],
  });
  readonly refusals = new Counter({
    name: "streamgate_refusals_total",
    help: 'Connections, calls and requests refused by a bound, by reason (see README "Limits and protections").',
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });
  readonly recordsFailed = new Counter({
    name: "streamgate_records_failed_total",
    help: "Records whose processing failed (no result; the partition moves on), by reason.",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });
  readonly httpWatches = new Counter({
    name: "streamgate_http_watches_total",
    help: "Watches over plain HTTP (transport: sse, websocket), counted when they end, by how (code: ok, canceled, not_found, resource_exhausted, unavailable, unauthenticated, ...).",
    labelNames: ["transport", "code"] as const,
    registers: [this.registry],
  });
  readonly watchersInterrupted = new Counter({
    name: "streamgate_watchers_interrupted_total",
    help: "Watches ended early by the server, by reason (overflow: the client read slower than WATCH_BUFFER allows; shutdown: the server drained; removed: the stream was deleted).",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });
  readonly brokerUp = new Gauge({
    name: "streamgate_broker_up",
    help: "1 when the broker answered the last health probe (HEALTH_PROBE_INTERVAL_MS), 0 when it did not.",
    registers: [this.registry],
  });
  readonly watchFilterFailed = new Counter({
    name: "streamgate_watch_filter_failures_total",
    help: "Results not delivered to a watcher because its filter failed on them, by reason (cel_error, cel_cost: the filter ran out of CEL_MAX_COST).",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });

  /** Counts one refusal at the edge. */
  refused(reason: RefusalReason): void {
    this.refusals.inc({ reason });
  }

  /** `worker`: this process is that worker of several (WORKERS > 1), which every series names. */
  constructor(worker?: number) {
    collectDefaultMetrics({ register: this.registry });
    if (worker !== undefined) {
      // Per worker rather than summed: a worker that restarts resets only its own counters,
      // which rate() handles, where a sum would fall and read as a reset of the whole.
      this.registry.setDefaultLabels({ worker: String(worker) });
      new Gauge({
        name: "streamgate_worker_info",
        help: "1 for each running worker (WORKERS > 1), with its process id.",
        labelNames: ["pid"] as const,
        registers: [this.registry],
      }).set({ pid: String(process.pid) }, 1);
      // What this worker answers when the primary gathers every worker's metrics;
      // prom-client starts answering once an AggregatorRegistry exists in the process.
      AggregatorRegistry.setRegistries([this.registry]);
      new AggregatorRegistry();
    }
    // prom-client's gauges named *_total break the Prometheus convention (promtool rejects them);
    // each repeats the sum of its per-type sibling (nodejs_active_handles etc.), so nothing is lost.
    for (const name of [
      "nodejs_active_handles_total",
      "nodejs_active_requests_total",
      "nodejs_active_resources_total",
    ]) {
      this.registry.removeSingleMetric(name);
    }
  }

  /** Adds the gauges, read from `sources` at each scrape. */
  observe(sources: GaugeSources): void {
    new Gauge({
      name: "streamgate_active_streams",
      help: "Open streams in this instance's registry.",
      registers: [this.registry],
      collect() {
        this.set(sources.activeStreams());
      },
    });
    new Gauge({
      name: "streamgate_active_watchers",
      help: "Open WatchResults calls on this instance.",
      registers: [this.registry],
      collect() {
        this.set(sources.activeWatchers());
      },
    });
    new Gauge({
      name: "streamgate_calls_waiting",
      help: "Server-streaming and bidi calls (WatchResults, WatchStats, health Watch, reflection) and SSE and WebSocket watches received and waiting for a turn of the event loop to start (CALL_TURN_BUDGET_MS).",
      registers: [this.registry],
      collect() {
        this.set(sources.callsWaiting());
      },
    });
    let droppedSeen = 0;
    new Counter({
      name: "streamgate_trace_spans_dropped_total",
      help: "Spans dropped because the trace export queue (OTEL_BSP_MAX_QUEUE_SIZE) was full: the receiver is away or slower than the spans come.",
      registers: [this.registry],
      collect() {
        const total = sources.droppedSpans();
        this.inc(total - droppedSeen);
        droppedSeen = total;
      },
    });
    // Only the ingest topic: the results and streams subscribers handle a batch
    // as it arrives, so their lag is the fetch in progress, and how far
    // watchers trail is streamgate_end_to_end_seconds.
    new Gauge({
      name: "streamgate_consumer_lag_records",
      help: "Records written to the partitions this instance consumes but not yet processed, by topic (ingest: its processor's consumer group).",
      labelNames: ["topic_kind"] as const,
      registers: [this.registry],
      collect() {
        this.set({ topic_kind: "ingest" }, sources.consumerLag());
      },
    });
  }

  /** The text exposition and its content type, for GET /metrics. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** Creates an app's metrics; `worker`: see the {@link Metrics} constructor. */
export function createMetrics(worker?: number): Metrics {
  return new Metrics(worker);
}
