/**
 * The dashboard's static files at /dashboard/ on the service's port: the page
 * and its bundle with their types and security headers, no credential needed;
 * only files of the built directory (no path traversal, encoded or not); GET
 * and HEAD only; and a 503 saying how to build it when it is not built.
 * Needs `npm run build:dashboard` to have run.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DASHBOARD_DIR, serveDashboard } from "../src/observe/dashboard.js";
import { startTestServer, type TestServer } from "./support/server.js";

/** A response read whole. */
interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Requests `path` exactly as given (fetch would resolve "..", which the tests need to send), with no credential. */
function request(port: number, path: string, method = "GET"): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const sent = http.request({ host: "127.0.0.1", port, path, method }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () =>
        resolve({
          status: response.statusCode ?? 0,
          headers: response.headers,
          body: Buffer.concat(chunks).toString("utf8"),
        }),
      );
      response.on("error", reject);
    });
    sent.on("error", reject);
    sent.end();
  });
}

describe("the built dashboard", () => {
  let server: TestServer;
  const packageJson = readFileSync(join(DASHBOARD_DIR, "..", "..", "package.json"), "utf8");
  beforeAll(async () => {
    if (!existsSync(join(DASHBOARD_DIR, "index.html"))) {
      throw new Error(`${DASHBOARD_DIR} is not built: run npm run build:dashboard before these tests`);
    }
    server = await startTestServer();
  });
  afterAll(() => server?.close());

  it("redirects /dashboard to /dashboard/, so that the page's relative URLs resolve", async () => {
    const answer = await request(server.port, "/dashboard");
    expect([301, 308]).toContain(answer.status);
    expect(answer.headers.location).toBe("/dashboard/");
  });

  it("serves the page, which loads the bundle, with a strict CSP and nosniff", async () => {
    const answer = await request(server.port, "/dashboard/");
    expect(answer.status).toBe(200);
    expect(answer.headers["content-type"]).toMatch(/^text\/html/);
    expect(answer.body).toBe(readFileSync(join(DASHBOARD_DIR, "index.html"), "utf8"));
    expect(answer.body).toMatch(/<script type="module" src="app\.js"><\/script>/);
    const csp = answer.headers["content-security-policy"];
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toContain("unsafe-eval");
    expect(answer.headers["x-content-type-options"]).toBe("nosniff");
    expect(answer.headers["cache-control"]).toBe("no-cache");
  });

  it("serves the bundle as JavaScript, and its stylesheets as CSS", async () => {
    const script = await request(server.port, "/dashboard/app.js");
    expect(script.status).toBe(200);
    expect(script.headers["content-type"]).toMatch(/^text\/javascript/);
    expect(script.body).toBe(readFileSync(join(DASHBOARD_DIR, "app.js"), "utf8"));
    expect(script.headers["x-content-type-options"]).toBe("nosniff");
    for (const sheet of ["style.css", "uPlot.min.css"]) {
      const answer = await request(server.port, `/dashboard/${sheet}`);
      expect(answer.status).toBe(200);
      expect(answer.headers["content-type"]).toMatch(/^text\/css/);
    }
  });

  it("answers HEAD with the headers of GET and no body", async () => {
    const answer = await request(server.port, "/dashboard/app.js", "HEAD");
    expect(answer.status).toBe(200);
    expect(answer.headers["content-length"]).toBe(String(readFileSync(join(DASHBOARD_DIR, "app.js")).length));
    expect(answer.body).toBe("");
  });

  it.each([
    "/dashboard/../package.json",
    "/dashboard/%2e%2e/package.json",
    "/dashboard/%2E%2E%2Fpackage.json",
    "/dashboard/..%5cpackage.json",
    "/dashboard/nope.js",
  ])("gives 404, never another file's contents, for %s", async (path) => {
    const answer = await request(server.port, path);
    expect(answer.status).toBe(404);
    expect(answer.body).not.toContain('"name": "streamgate"');
    expect(answer.body.length).toBeLessThan(packageJson.length);
  });

  it("refuses other methods with 405 and names the allowed ones", async () => {
    const answer = await request(server.port, "/dashboard/", "POST");
    expect(answer.status).toBe(405);
    expect(answer.headers.allow).toBe("GET, HEAD");
  });

  it("serves the page over HTTP/2 on the same port too", async () => {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    try {
      const stream = session.request({ ":path": "/dashboard/" });
      const [headers, body] = await Promise.all([
        new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once("response", resolve)),
        (async () => {
          const chunks: Buffer[] = [];
          for await (const chunk of stream) chunks.push(chunk as Buffer);
          return Buffer.concat(chunks).toString("utf8");
        })(),
      ]);
      expect(headers[":status"]).toBe(200);
      expect(headers["content-type"]).toMatch(/^text\/html/);
      expect(body).toContain('src="app.js"');
    } finally {
      session.close();
    }
  });
});

/** A plain HTTP server answering with serveDashboard from `dir`, and 418 for what it leaves alone. */
async function serveFrom(dir: string): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    if (!serveDashboard(req, res, dir)) res.writeHead(418).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe("a built directory next to other servable files", () => {
  // outer/secret.js would be served, type and all, if a path could leave outer/dashboard/.
  const SECRET = "secret-contents-of-a-file-outside";
  let outer: string;
  let served: Awaited<ReturnType<typeof serveFrom>>;
  beforeAll(async () => {
    outer = mkdtempSync(join(tmpdir(), "streamgate-dashboard-"));
    mkdirSync(join(outer, "dashboard"));
    writeFileSync(join(outer, "dashboard", "index.html"), "<!doctype html><title>t</title>");
    writeFileSync(join(outer, "dashboard", "app.js"), "export {};");
    writeFileSync(join(outer, "secret.js"), SECRET);
    served = await serveFrom(join(outer, "dashboard"));
  });
  afterAll(async () => {
    await served.close();
    rmSync(outer, { recursive: true, force: true });
  });

  it("serves the files inside it", async () => {
    expect((await request(served.port, "/dashboard/app.js")).body).toBe("export {};");
  });

  it.each([
    "/dashboard/../secret.js",
    "/dashboard/%2e%2e/secret.js",
    "/dashboard/%2E%2E%2Fsecret.js",
    "/dashboard/..%5csecret.js",
    "/dashboard/.%2e/secret.js",
    "/dashboard/x/../../secret.js",
    "/dashboard/%252e%252e/secret.js",
    "/dashboard/app.js%00.js",
  ])("gives 404 and nothing of a file outside it for %s", async (path) => {
    const answer = await request(served.port, path);
    expect(answer.status).toBe(404);
    expect(answer.body).not.toContain(SECRET);
  });
});

describe("a dashboard that is not built", () => {
  let dir: string;
  let served: Awaited<ReturnType<typeof serveFrom>>;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "streamgate-dashboard-"));
    served = await serveFrom(dir);
  });
  afterAll(async () => {
    await served.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("answers 503 saying how to build it", async () => {
    const answer = await request(served.port, "/dashboard/");
    expect(answer.status).toBe(503);
    expect(answer.body).toContain("run npm run build:dashboard");
  });

  it("leaves other paths to the rest of the server", async () => {
    expect((await request(served.port, "/dashboards")).status).toBe(418);
    expect((await request(served.port, "/streamgate.v1.StreamService/GetStream", "POST")).status).toBe(418);
  });
});
