/**
 * GET /healthz and /readyz, for load balancers that do not speak gRPC health
 * (README "Observability"): on the service port and on METRICS_PORT, without a
 * credential; /readyz answers 503 with the reason while the broker does not
 * answer the health probe (and streamgate_broker_up reads 0), and 200 again
 * once it does; and it is not ready from the moment a drain starts.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Broker } from "../src/broker/broker.js";
import { createMemoryBroker } from "../src/broker/memory.js";
import { pollUntil } from "./support/kafka-gateway.js";
import { freePort } from "./support/ports.js";
import { startTestServer, type TestServer } from "./support/server.js";

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function get(url: string, method = "GET"): Promise<{ status: number; body: string; cache: string | null }> {
  const response = await fetch(url, { method });
  return { status: response.status, body: await response.text(), cache: response.headers.get("cache-control") };
}

/** The memory broker, whose health probe answers what `reachable` says at the time. */
function brokerAnswering(reachable: { now: boolean }): Broker {
  const broker = createMemoryBroker({ retentionRecords: 10_000, retentionMs: 0 });
  return Object.assign(Object.create(broker) as Broker, {
    probe: async () => reachable.now,
  });
}

describe("probes", () => {
  it("answer on the service port and on METRICS_PORT without a credential", async () => {
    const metricsPort = await freePort();
    server = await startTestServer({ METRICS_PORT: String(metricsPort) });
    for (const base of [server.baseUrl, `http://127.0.0.1:${metricsPort}`]) {
      expect(await get(`${base}/healthz`)).toEqual({ status: 200, body: "ok\n", cache: "no-store" });
      expect(await get(`${base}/readyz`)).toEqual({ status: 200, body: "ready\n", cache: "no-store" });
      expect((await get(`${base}/readyz`, "HEAD")).status).toBe(200);
      // Only GET and HEAD: anything else is not a probe.
      expect((await get(`${base}/readyz`, "POST")).status).not.toBe(200);
    }
  });

  it("/readyz is 503 while the broker does not answer, and ready again once it does", async () => {
    const reachable = { now: true };
    const metricsPort = await freePort();
    server = await startTestServer(
      { METRICS_PORT: String(metricsPort), HEALTH_PROBE_INTERVAL_MS: "100" },
      brokerAnswering(reachable),
    );
    const urls = [`${server.baseUrl}/readyz`, `http://127.0.0.1:${metricsPort}/readyz`];
    const brokerUp = async () =>
      /^streamgate_broker_up (\d)$/m.exec(await (await fetch(`${server!.baseUrl}/metrics`)).text())?.[1];
    expect(await brokerUp()).toBe("1");

    reachable.now = false;
    await pollUntil("readyz 503", async () => ((await get(urls[0]!)).status === 503 ? true : undefined), {
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    for (const url of urls)
      expect(await get(url)).toMatchObject({ status: 503, body: "not ready: broker unreachable\n" });
    // Alive all the same: the process serves, so it must not be restarted for this.
    expect((await get(`${server.baseUrl}/healthz`)).status).toBe(200);
    expect(await brokerUp()).toBe("0");

    reachable.now = true;
    await pollUntil("readyz 200", async () => ((await get(urls[0]!)).status === 200 ? true : undefined), {
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    expect(await get(urls[1]!)).toMatchObject({ status: 200, body: "ready\n" });
    expect(await brokerUp()).toBe("1");
  });

  it("a draining server is not ready from the moment the drain starts", async () => {
    server = await startTestServer();
    expect(await server.app.readiness()).toBeUndefined();
    const closing = server.app.close();
    expect(await server.app.readiness()).toBe("draining");
    await closing;
    server = undefined;
  });
});
