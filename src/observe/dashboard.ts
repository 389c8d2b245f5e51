/**
 * The dashboard's static files (built by scripts/build-dashboard.mjs into
 * dist/dashboard/) at /dashboard/, on the service's port. They need no
 * credential: the page holds no data, and every call it makes needs a key.
 * Only files of the built directory are served, and only of known types.
 */
import { existsSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { dirname, extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { writeHead } from "../rpc/http-response.js";

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;

const PREFIX = "/dashboard";

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".png": "image/png",
  ".svg": "image/svg+xml",
};

/**
 * Sent with every answer. Scripts, styles and calls come from this origin only
 * (uPlot styles its elements through the CSSOM, which 'self' allows); the page
 * is not to be framed, so no other site can overlay it to capture the key.
 */
const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/** A file name of the built directory: plain segments, no dot-leading ones (so no "." or ".."). */
const SAFE_PATH = /^(?:[A-Za-z0-9_-][A-Za-z0-9._-]*\/)*[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/** The built dashboard: dist/dashboard under the project root (the directory holding package.json). */
export const DASHBOARD_DIR = join(projectRoot(), "dist", "dashboard");

/**
 * Walks up from this module (src/ under tsx, dist/src/ once compiled) to the
 * directory holding package.json.
 */
function projectRoot(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
    if (dirname(dir) === dir) return start;
  }
}

/**
 * Answers requests for /dashboard and below, from `dir` (the built dashboard by
 * default); false for any other request. GET and HEAD only.
 */
export function serveDashboard(request: Request, response: Response, dir = DASHBOARD_DIR): boolean {
  const url = request.url ?? "";
  const queryAt = url.indexOf("?");
  const path = queryAt < 0 ? url : url.slice(0, queryAt);
  if (path !== PREFIX && !path.startsWith(`${PREFIX}/`)) return false;
  if (request.method !== "GET" && request.method !== "HEAD") {
    answer(response, 405, "only GET and HEAD are served under /dashboard\n", { allow: "GET, HEAD" });
    return true;
  }
  // Relative URLs in the page (app.js, style.css) resolve against /dashboard/, not /.
  if (path === PREFIX) {
    answer(response, 308, "", { location: `${PREFIX}/${queryAt < 0 ? "" : url.slice(queryAt)}` });
    return true;
  }
  void serveFile(request, response, dir, path.slice(PREFIX.length + 1) || "index.html");
  return true;
}

async function serveFile(request: Request, response: Response, dir: string, encoded: string): Promise<void> {
  try {
    if (!(await isFile(join(dir, "index.html")))) {
      answer(response, 503, "the dashboard is not built: run npm run build:dashboard\n");
      return;
    }
    const file = resolveFile(dir, encoded);
    const type = file && CONTENT_TYPES[extname(file)];
    if (!file || !type || !(await isFile(file))) {
      answer(response, 404, "not found\n");
      return;
    }
    const body = await readFile(file);
    writeHead(response, 200, {
      ...SECURITY_HEADERS,
      "content-type": type,
      "content-length": String(body.length),
      // Revalidate each time: a rebuilt dashboard shows at the next load.
      "cache-control": "no-cache",
    });
    if (request.method === "HEAD") response.end();
    else response.end(body);
  } catch {
    if (!response.headersSent) answer(response, 500, "the dashboard file could not be read\n");
    else response.destroy();
  }
}

/**
 * The file `encoded` names inside `dir`, or undefined for anything that is not
 * a plain relative name: bad escapes, "..", ".", backslashes, NUL, and (checked
 * again after resolving) anything that would leave `dir`.
 */
function resolveFile(dir: string, encoded: string): string | undefined {
  let name: string;
  try {
    name = decodeURIComponent(encoded);
  } catch {
    return undefined;
  }
  if (!SAFE_PATH.test(name)) return undefined;
  const root = resolve(dir);
  const file = resolve(root, name);
  return file.startsWith(root + sep) ? file : undefined;
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() ?? false;
}

function answer(response: Response, status: number, text: string, headers: Record<string, string> = {}): void {
  writeHead(response, status, { ...SECURITY_HEADERS, "content-type": "text/plain; charset=utf-8", ...headers });
  response.end(text);
}
