/**
 * The standard gRPC health service (grpc.health.v1.Health), as load balancers,
 * Kubernetes probes and `grpc_health_probe` expect it.
 *
 * @module
 */

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import type { HealthCheckRequest, HealthCheckResponseSchema } from "../../gen/grpc/health/v1/health_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { waitForWake } from "../common/waits.js";
import { unknownService } from "./errors.js";

type HealthCheckResponseInit = MessageInitShape<typeof HealthCheckResponseSchema>;

/** The service name that stands for the whole server, per the health protocol. */
export const OVERALL_HEALTH = "";

/**
 * A health service: the RPC routes plus the setters the rest of the server
 * uses to report its state.
 */
export interface HealthService {
  /** Registers grpc.health.v1.Health on a Connect router. */
  routes(router: ConnectRouter): void;
  /**
   * Sets the serving status of one service ("" is the whole server). A service
   * becomes known to Check and Watch the first time it is set; watchers of it
   * are told at once.
   */
  setStatus(service: string, status: HealthCheckResponse_ServingStatus): void;
  /**
   * Sets every known service, the whole server ("") included, to one status:
   * for example NOT_SERVING when the server starts draining, so that load
   * balancers stop sending new calls before the listener closes.
   */
  setAll(status: HealthCheckResponse_ServingStatus): void;
}

/**
 * Creates a health service whose only known service at first is the whole
 * server (""), SERVING. Register further services with `setStatus`.
 */
export function createHealthService(): HealthService {
  const statuses = new Map<string, HealthCheckResponse_ServingStatus>([
    [OVERALL_HEALTH, HealthCheckResponse_ServingStatus.SERVING],
  ]);
  // Watchers by service name. A watcher is only a wake-up call: it re-reads the
  // status itself, so a slow watcher skips intermediate states and receives the
  // latest one (health is a state, not an event log) instead of us queueing
  // without bound. Empty sets are deleted so that clients watching arbitrary,
  // never-registered names leave nothing behind.
  const watchers = new Map<string, Set<() => void>>();

  function notify(service: string): void {
    const set = watchers.get(service);
    if (set === undefined) return;
    // Copy first: a woken watcher may unsubscribe while we iterate.
    for (const wake of [...set]) wake();
  }

  function subscribe(service: string, wake: () => void): () => void {
    let set = watchers.get(service);
    if (set === undefined) {
      set = new Set();
      watchers.set(service, set);
    }
    set.add(wake);
    return () => {
      const current = watchers.get(service);
      if (current === undefined) return;
      current.delete(wake);
      if (current.size === 0) watchers.delete(service);
    };
  }

  function setStatus(service: string, status: HealthCheckResponse_ServingStatus): void {
    if (statuses.get(service) === status) return;
    statuses.set(service, status);
    notify(service);
  }

  function check(request: HealthCheckRequest): HealthCheckResponseInit {
    const status = statuses.get(request.service);
    if (status === undefined) {
      // The health spec asks for NOT_FOUND here, which probes treat as "this
      // server does not know that service" rather than as "unhealthy".
      throw unknownService(request.service);
    }
    return { status };
  }

  async function* watch(request: HealthCheckRequest, context: HandlerContext): AsyncGenerator<HealthCheckResponseInit> {
    const service = request.service;
    let wake: (() => void) | undefined;
    const unsubscribe = subscribe(service, () => wake?.());
    try {
      let sent: HealthCheckResponse_ServingStatus | undefined;
      while (!context.signal.aborted) {
        // Unknown services are reported as SERVICE_UNKNOWN without ending the
        // call, so the watcher learns when the service appears (health spec).
        const current = statuses.get(service) ?? HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN;
        if (current !== sent) {
          sent = current;
          yield { status: current };
          continue;
        }
        // No await between the read above and arming `wake`, so a change cannot
        // slip in unseen: setStatus runs synchronously on this same thread.
        // The call's signal aborts when the client goes away, the deadline passes or
        // the server shuts down: that is the only way a Watch ends, so it ends
        // the wait too, or the generator (and its subscription) would live on.
        await waitForWake(
          (resolve) => {
            wake = resolve;
            return undefined;
          },
          { signal: context.signal },
        );
      }
    } finally {
      unsubscribe();
    }
  }

  return {
    routes(router: ConnectRouter): void {
      router.service(Health, { check, watch });
    },
    setStatus,
    setAll(status: HealthCheckResponse_ServingStatus): void {
      for (const service of [...statuses.keys()]) setStatus(service, status);
    },
  };
}
