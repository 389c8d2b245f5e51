/**
 * The health of the broker, as load balancers see it: every
 * HEALTH_PROBE_INTERVAL_MS the broker is asked whether it answers, and every
 * service is NOT_SERVING while it does not, so clients go elsewhere.
 */
import { HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import type { Broker } from "../broker/broker.js";
import type { HealthService } from "../rpc/health.js";

/** Starts probing; returns how to stop. `isDraining`: a draining server stays NOT_SERVING whatever the broker says. */
export function probeBroker(
  broker: Pick<Broker, "probe">,
  health: Pick<HealthService, "setAll">,
  intervalMs: number,
  isDraining: () => boolean,
): () => void {
  let probing = false;
  const probe = setInterval(() => {
    if (probing) return; // one probe at a time, however long a dead broker takes to answer
    probing = true;
    void broker
      .probe(intervalMs)
      .then((ok) => {
        if (isDraining()) return;
        health.setAll(ok ? HealthCheckResponse_ServingStatus.SERVING : HealthCheckResponse_ServingStatus.NOT_SERVING);
      })
      .finally(() => {
        probing = false;
      });
  }, intervalMs);
  probe.unref();
  return () => clearInterval(probe);
}
