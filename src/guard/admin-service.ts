/**
 * AdminService: the request limits read and changed at run time, and the live
 * figures pushed to operators (the dashboard's source).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  type AdminService,
  type RequestLimits,
  RequestLimitsSchema,
  type Stats,
  StatsSchema,
  type TokenBucket,
} from "../../gen/streamgate/v1/admin_service_pb.js";
import { type BucketConfig, LIMIT_BOUNDS, type LimitsConfig } from "../config/config.js";
import type { LiveStats } from "../observe/live-stats.js";
import { invalidArgument, shuttingDown } from "../rpc/errors.js";
import type { LimitSettingsStore } from "./limits/limit-settings.js";
import type { Limits } from "./limits/limits.js";

/** Dependencies of the service. */
export interface AdminServiceDeps {
  limits: Limits;
  settings: LimitSettingsStore;
  stats: LiveStats;
  activeStreams: () => number;
  activeWatchers: () => number;
  /** Aborted when the server starts shutting down: stats watchers end then. */
  shutdown: AbortSignal;
}

const { rps: MAX_RPS, burst: MAX_BURST, clientMaxWatchers: MAX_WATCHERS } = LIMIT_BOUNDS;
const MASK_PATHS = ["global", "per_client", "client_max_watchers"] as const;
const DEFAULT_INTERVAL_MS = 1000;
const MIN_INTERVAL_MS = 100;
const MAX_INTERVAL_MS = 60_000;
const TOP_CLIENTS = 10;

/** Limits as the API shows them. */
export function limitsToProto(limits: LimitsConfig): RequestLimits {
  const bucket = (config: BucketConfig | undefined) => config && { ratePerSecond: config.rps, burst: config.burst };
  return create(RequestLimitsSchema, {
    global: bucket(limits.global),
    perClient: bucket(limits.client),
    clientMaxWatchers: limits.clientMaxWatchers ?? 0,
  });
}

/** A bucket from the API, checked; unset means no limit. */
function bucketFromProto(bucket: TokenBucket | undefined, field: string): BucketConfig | undefined {
  if (!bucket) return undefined;
  if (bucket.ratePerSecond < 1 || bucket.ratePerSecond > MAX_RPS) {
    throw invalidArgument(
      `limits.${field}.rate_per_second must be 1 to ${MAX_RPS} (leave ${field} unset for no limit)`,
    );
  }
  if (bucket.burst < 1 || bucket.burst > MAX_BURST) {
    throw invalidArgument(`limits.${field}.burst must be 1 to ${MAX_BURST}`);
  }
  return { rps: bucket.ratePerSecond, burst: bucket.burst };
}

/** `current` with the fields of `requested` named by `paths` (all when empty), checked. */
function mergeLimits(current: LimitsConfig, requested: RequestLimits | undefined, paths: string[]): LimitsConfig {
  for (const path of paths) {
    if (!(MASK_PATHS as readonly string[]).includes(path)) {
      throw invalidArgument(`update_mask path ${JSON.stringify(path)} is not one of ${MASK_PATHS.join(", ")}`);
    }
  }
  const given = requested ?? create(RequestLimitsSchema);
  const applies = (path: (typeof MASK_PATHS)[number]) => paths.length === 0 || paths.includes(path);
  if (given.clientMaxWatchers > MAX_WATCHERS) {
    throw invalidArgument(`limits.client_max_watchers must be at most ${MAX_WATCHERS} (0 for no cap)`);
  }
  return {
    global: applies("global") ? bucketFromProto(given.global, "global") : current.global,
    client: applies("per_client") ? bucketFromProto(given.perClient, "per_client") : current.client,
    clientMaxWatchers: applies("client_max_watchers")
      ? given.clientMaxWatchers || undefined
      : current.clientMaxWatchers,
  };
}

/** Creates the AdminService implementation. */
export function createAdminService(deps: AdminServiceDeps): ServiceImpl<typeof AdminService> {
  const { limits, settings, stats } = deps;

  /** One snapshot: rates and percentiles since `since`, levels now. */
  const snapshot = async (since: { at: number; allowed: number; blocked: number }): Promise<Stats> => {
    const at = Date.now();
    const counted = stats.counted;
    const seconds = Math.max(0.001, (at - since.at) / 1000);
    const { p50, p95, p99 } = stats.percentiles(since.at);
    const top = stats.topClients(TOP_CLIENTS);
    const clientTokens = await Promise.all(top.map(({ client }) => limits.clientLevel(client)));
    const global = limits.settings.global;
    const result = create(StatsSchema, {
      time: timestampNow(),
      allowedPerSecond: (counted.allowed - since.allowed) / seconds,
      blockedPerSecond: (counted.blocked - since.blocked) / seconds,
      globalTokens: await limits.globalLevel(),
      globalBurst: global?.burst,
      topClients: top.map((figures, i) => ({
        // Limits keys clients "client:<tenant>/<name>" or "peer:<address>"; names read better alone.
        ...clientAndTenant(figures.client),
        allowed: BigInt(figures.allowed),
        blocked: BigInt(figures.blocked),
        tokens: clientTokens[i],
      })),
      latencyP50Ms: p50,
      latencyP95Ms: p95,
      latencyP99Ms: p99,
      activeStreams: BigInt(deps.activeStreams()),
      activeWatchers: BigInt(deps.activeWatchers()),
      limits: limitsToProto(limits.settings),
    });
    since.at = at;
    since.allowed = counted.allowed;
    since.blocked = counted.blocked;
    return result;
  };

  return {
    async getLimits() {
      return { limits: limitsToProto(limits.settings), shared: settings.shared };
    },

    async updateLimits(request) {
      const next = mergeLimits(limits.settings, request.limits, request.updateMask?.paths ?? []);
      const stored = await settings.update(next);
      // Also delivered by the store's change listener; applying twice is harmless (same generation).
      limits.apply(stored);
      return { limits: limitsToProto(limits.settings) };
    },

    async *watchStats(request, context) {
      const intervalMs = request.intervalMs === 0 ? DEFAULT_INTERVAL_MS : request.intervalMs;
      if (intervalMs < MIN_INTERVAL_MS || intervalMs > MAX_INTERVAL_MS) {
        throw invalidArgument(
          `interval_ms must be ${MIN_INTERVAL_MS} to ${MAX_INTERVAL_MS} (0 for ${DEFAULT_INTERVAL_MS})`,
        );
      }
      const signal = AbortSignal.any([context.signal, deps.shutdown]);
      // The first snapshot covers the interval before the call, so it has figures at once.
      const counted = stats.counted;
      const since = { at: Date.now() - intervalMs, allowed: counted.allowed, blocked: counted.blocked };
      while (!signal.aborted) {
        yield { stats: await snapshot(since) };
        await sleep(intervalMs, undefined, { signal }).catch(() => undefined);
      }
      if (deps.shutdown.aborted) throw shuttingDown();
    },
  };
}

/** The client and tenant of a limits key: "client:<tenant>/<name>", or "peer:<address>" (no tenant). */
function clientAndTenant(key: string): { client: string; tenant: string } {
  if (!key.startsWith("client:")) return { client: key, tenant: "" };
  const slash = key.indexOf("/");
  return { client: key.slice(slash + 1), tenant: key.slice("client:".length, slash) };
}
