/**
 * A server's settled memory: what it holds right after a full garbage
 * collection, so that memory per watcher is what the watchers keep alive,
 * not how much garbage happened to be waiting for the collector when it was
 * read. The server is started knowing an inspector port
 * ({@link inspectableServerEnv}: `--inspect-port`, which opens nothing); a
 * reading opens the inspector there (SIGUSR1, as `node inspect -p` does),
 * runs one full collection (V8's gc(), exposed for the call) and reads
 * process.memoryUsage(), then closes the inspector again, so the server runs
 * its load with no inspector open, as `npm start` runs it.
 */
import * as http from "node:http";
import { connect } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { WebSocket } from "ws";
import { freePort } from "./processes.js";

/** What the server holds, in bytes, right after a full collection. */
export interface SettledMemory {
  rss: number;
  heapUsed: number;
  /** Memory of C++ objects bound to JavaScript ones (Buffers' included). */
  external: number;
}

/** How long the inspector may take to open, or to close. */
const OPEN_TIMEOUT_MS = 10_000;
/** How long after the reading the inspector closes: the session is gone by then. */
const CLOSE_DELAY_MS = 200;

/** Evaluated in the server: one full, synchronous collection, then its memory (JSON). */
const COLLECT_AND_READ = `(() => {
  process.getBuiltinModule("v8").setFlagsFromString("--expose-gc");
  process.getBuiltinModule("vm").runInNewContext("gc")();
  return JSON.stringify(process.memoryUsage());
})()`;

/**
 * Evaluated in the server once read: closes the inspector a while after this
 * call returns, once the session has gone (closing it with a session still
 * attached, or going, can crash the process: SIGSEGV in Node 24).
 */
const CLOSE_INSPECTOR = `void setTimeout(() => process.getBuiltinModule("inspector").close(), ${CLOSE_DELAY_MS})`;

/** A free port for a server's inspector, and the environment that tells the server (NODE_OPTIONS, beside any the bench has). */
export async function inspectableServerEnv(): Promise<{ port: number; env: Record<string, string> }> {
  const port = await freePort();
  const options = [process.env.NODE_OPTIONS, `--inspect-port=127.0.0.1:${port}`].filter(Boolean).join(" ");
  return { port, env: { NODE_OPTIONS: options } };
}

/** Collects the garbage of server `pid`, started with {@link inspectableServerEnv}'s `port`, then reads its memory. */
export async function settledMemory(pid: number, port: number): Promise<SettledMemory> {
  process.kill(pid, "SIGUSR1");
  const url = await debuggerUrl(port);
  const ws = new WebSocket(url, { perMessageDeflate: false });
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    const replies = new Map<number, (reply: Reply) => void>();
    ws.on("message", (data) => {
      const reply = JSON.parse((data as Buffer).toString("utf8")) as Reply;
      if (reply.id !== undefined) replies.get(reply.id)?.(reply);
    });
    let next = 0;
    const evaluate = (expression: string) =>
      new Promise<unknown>((resolve, reject) => {
        const id = ++next;
        replies.set(id, (reply) =>
          reply.error ? reject(new Error(`Runtime.evaluate: ${reply.error.message}`)) : resolve(reply.result?.result),
        );
        ws.send(JSON.stringify({ id, method: "Runtime.evaluate", params: { expression, returnByValue: true } }));
      });
    const { value } = (await evaluate(COLLECT_AND_READ)) as { value: string };
    await evaluate(CLOSE_INSPECTOR);
    const usage = JSON.parse(value) as NodeJS.MemoryUsage;
    ws.close();
    await closed(port);
    return { rss: usage.rss, heapUsed: usage.heapUsed, external: usage.external };
  } finally {
    ws.close();
  }
}

/** Resolves once nothing listens on `port` any more (the inspector has closed). */
async function closed(port: number): Promise<void> {
  await delay(CLOSE_DELAY_MS);
  const deadline = performance.now() + OPEN_TIMEOUT_MS;
  while (await listening(port)) {
    if (performance.now() > deadline) throw new Error(`the server's inspector did not close on port ${port}`);
    await delay(20);
  }
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** A reply of the inspector protocol. */
interface Reply {
  id?: number;
  result?: { result?: unknown };
  error?: { message: string };
}

/** The debugger URL of the inspector opening on `port`, once it answers. */
async function debuggerUrl(port: number): Promise<string> {
  const deadline = performance.now() + OPEN_TIMEOUT_MS;
  for (;;) {
    const url = await targetUrl(port).catch(() => undefined); // not open yet
    if (url) return url;
    if (performance.now() > deadline) throw new Error(`the server's inspector did not open on port ${port}`);
    await delay(20);
  }
}

/**
 * The first target's debugger URL from the inspector's /json/list, on a
 * connection of its own that is closed after (an open one would keep the
 * inspector's close waiting).
 */
function targetUrl(port: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: "127.0.0.1", port, path: "/json/list", agent: false }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => {
        try {
          resolve((JSON.parse(body) as { webSocketDebuggerUrl?: string }[])[0]?.webSocketDebuggerUrl);
        } catch (error) {
          reject(error);
        }
      });
      response.on("error", reject);
    });
    request.on("error", reject);
  });
}
