/**
 * Free loopback ports for servers a test starts itself (Kafka, redis, a second
 * listener), and for addresses where nothing must listen.
 */
import { createServer, type Server } from "node:net";

/** Free loopback ports, distinct: all are held open until each is known. */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", resolve);
      });
    }
    return servers.map((server) => {
      const address = server.address();
      if (address === null || typeof address === "string") throw new Error("no port");
      return address.port;
    });
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  }
}

/** One free loopback port (nothing listens on it when this resolves). */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port!;
}
