/**
 * Whether the broker answers, asked every HEALTH_PROBE_INTERVAL_MS: what gRPC
 * health, GET /readyz and streamgate_broker_up report, so load balancers send
 * clients elsewhere while it does not.
 */
import type { Broker } from "../broker/broker.js";

/** Starts probing, telling `onResult` each answer; returns how to stop. */
export function probeBroker(
  broker: Pick<Broker, "probe">,
  intervalMs: number,
  onResult: (reachable: boolean) => void,
): () => void {
  let probing = false;
  const probe = setInterval(() => {
    if (probing) return; // one probe at a time, however long a dead broker takes to answer
    probing = true;
    void broker
      .probe(intervalMs)
      .then(onResult)
      .finally(() => {
        probing = false;
      });
  }, intervalMs);
  probe.unref();
  return () => clearInterval(probe);
}
