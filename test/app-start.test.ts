/**
 * A start that fails stops what it had started (src/app/lifecycle.ts): with
 * the port taken, startApp fails after the broker, the registry, the
 * processor and the fanout have started, and leaves none of them running:
 * every subscription is closed and the broker too, so a supervisor that
 * retries the start leaks nothing. And a close stops everything once, however
 * often it is called.
 */
import net from "node:net";
import { pino } from "pino";
import { afterEach, expect, it } from "vitest";
import { startApp } from "../src/app/app.js";
import type { Broker } from "../src/broker/broker.js";
import { createMemoryBroker } from "../src/broker/memory.js";
import { loadConfig } from "../src/config/config.js";
import { TEST_API_KEY } from "./support/server.js";

const logger = pino({ level: "silent" });
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** The embedded broker, counting its open subscriptions and its closes. */
function countingBroker(): { broker: Broker; openSubscriptions(): number; closes(): number } {
  const inner = createMemoryBroker({ retentionRecords: 1000, retentionMs: 0 });
  let open = 0;
  let closes = 0;
  const broker: Broker = Object.assign(Object.create(inner) as Broker, {
    subscribe: async (options: Parameters<Broker["subscribe"]>[0]) => {
      const subscription = await inner.subscribe(options);
      open++;
      let closed = false;
      return Object.assign(Object.create(subscription), {
        close: async (...args: Parameters<typeof subscription.close>) => {
          await subscription.close(...args);
          if (!closed) open--;
          closed = true;
        },
      });
    },
    close: async () => {
      closes++;
      await inner.close();
    },
  });
  return { broker, openSubscriptions: () => open, closes: () => closes };
}

/** A port some other process holds. */
async function takenPort(): Promise<number> {
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => new Promise((resolve) => holder.close(() => resolve())));
  return (holder.address() as net.AddressInfo).port;
}

const configOn = (port: number) =>
  loadConfig({ PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "silent", API_KEYS: `test:${TEST_API_KEY}` });

it("stops what it started when the listener cannot bind: no subscription left open, the broker closed", async () => {
  const counting = countingBroker();
  await expect(startApp(configOn(await takenPort()), logger, counting.broker)).rejects.toMatchObject({
    code: "EADDRINUSE",
  });
  // The registry, the processor and the fanout each subscribed before the listener failed.
  expect({ open: counting.openSubscriptions(), closes: counting.closes() }).toEqual({ open: 0, closes: 1 });
});

it("closes everything once, however often close is called", async () => {
  const counting = countingBroker();
  const app = await startApp(configOn(0), logger, counting.broker);
  expect(counting.openSubscriptions()).toBe(3);
  await Promise.all([app.close(), app.close()]);
  await app.close();
  expect({ open: counting.openSubscriptions(), closes: counting.closes() }).toEqual({ open: 0, closes: 1 });
});
