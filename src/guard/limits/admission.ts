/**
 * What a call costs of its client's limits, the same on every way in (RPC
 * interceptors, Server-Sent Events, WebSocket): a token from the client's
 * bucket and the global one, and for a watcher one of the client's
 * CLIENT_MAX_WATCHERS slots while it is open. Every request is counted in the
 * live stats, allowed or not.
 */
import type { LiveStats } from "../../observe/live-stats.js";
import { rateLimited, tooManyWatchers } from "../../rpc/errors.js";
import type { Principal } from "../auth/api-keys.js";
import type { LimitedClient, Limits } from "./limits.js";

/** The client a principal's calls are limited as: keyed by tenant and client (a JWT's sub names a client within its tenant only). */
export function limitedClient(principal: Principal): LimitedClient {
  return {
    key: `client:${principal.tenant}/${principal.client}`,
    // Only configured names (API keys') become metric labels.
    label: principal.configured ? principal.client : "anonymous",
    tenantLabel: principal.configured ? principal.tenant : "anonymous",
  };
}

/**
 * Takes a token for `client`, or rejects with RESOURCE_EXHAUSTED and when to
 * retry. With no limit set it settles nothing and returns undefined: a
 * client stream asks once per message, and a promise per message would cost
 * more than the rest of the check.
 */
export function takeToken(limits: Limits, stats: LiveStats, client: LimitedClient): Promise<void> | undefined {
  if (!limits.enabled) {
    stats.request(client.key, true);
    return undefined;
  }
  return limits.take(client).then((decision) => {
    stats.request(client.key, decision.allowed);
    if (!decision.allowed) throw rateLimited(decision.limit, decision.retryMs);
  });
}

/**
 * Admits a watcher of `client`: one of its watcher slots, then one token.
 * Resolves with the slot's release (idempotent); rejects RESOURCE_EXHAUSTED
 * when the client has CLIENT_MAX_WATCHERS open or is over its rate.
 */
export async function admitWatcher(limits: Limits, stats: LiveStats, client: LimitedClient): Promise<() => void> {
  const release = limits.openWatcher(client.key);
  if (!release) {
    stats.request(client.key, false);
    throw tooManyWatchers(limits.maxWatchers ?? 0);
  }
  try {
    await takeToken(limits, stats, client);
  } catch (error) {
    release();
    throw error;
  }
  return release;
}
