// Builds the dashboard (web/dashboard/) into dist/dashboard/, which the server
// serves at /dashboard: esbuild bundles main.ts with its imports (the generated
// code, connect-web, uPlot) into app.js; the HTML and the CSS are copied. No
// network: everything comes from node_modules. Run by `npm install` (prepare),
// `npm run build` and `npm run build:dashboard`.
import { copyFile, mkdir, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const source = join(root, "web", "dashboard");
const out = join(root, "dist", "dashboard");
const started = performance.now();

function fail(message) {
  process.stderr.write(`build-dashboard: ${message}\n`);
  process.exit(1);
}

/**
 * A build tool missing: an error, except at `npm install` (prepare) without
 * dev dependencies (`--omit=dev`), which must still install the service: it
 * then runs without the dashboard, and /dashboard/ says how to build it.
 */
function missing(message) {
  if (process.env.npm_lifecycle_event === "prepare") {
    process.stderr.write(`build-dashboard: ${message}; the dashboard is not built\n`);
    process.exit(0);
  }
  fail(message);
}

let esbuild;
try {
  esbuild = await import("esbuild");
} catch (error) {
  missing(`esbuild is not installed (a dev dependency: run npm install): ${error.message}`);
}
let uplotCss;
try {
  uplotCss = createRequire(import.meta.url).resolve("uplot/dist/uPlot.min.css");
} catch (error) {
  missing(`uplot is not installed (a dev dependency: run npm install): ${error.message}`);
}

// Bundled in memory first, so that a failed build leaves the last good one in place.
let bundle;
try {
  bundle = await esbuild.build({
    entryPoints: [join(source, "main.ts")],
    outfile: join(out, "app.js"),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    sourcemap: true,
    logLevel: "silent",
    absWorkingDir: root,
    write: false,
  });
} catch (error) {
  // esbuild's errors carry file, line and text; print them as esbuild would.
  const messages = error.errors ?? [];
  if (messages.length > 0) {
    const formatted = await esbuild.formatMessages(messages, { kind: "error", color: process.stderr.isTTY });
    process.stderr.write(formatted.join(""));
  }
  fail(`bundling web/dashboard/main.ts failed${messages.length > 0 ? "" : `: ${error.message}`}`);
}

// A fresh directory: a file removed from the sources must not stay servable.
await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await Promise.all([
  ...bundle.outputFiles.map((file) => writeFile(file.path, file.contents)),
  copyFile(join(source, "index.html"), join(out, "index.html")),
  copyFile(join(source, "style.css"), join(out, "style.css")),
  copyFile(uplotCss, join(out, "uPlot.min.css")),
]).catch((error) => fail(`writing dist/dashboard failed: ${error.message}`));

const ms = Math.round(performance.now() - started);
console.log(`dashboard built in dist/dashboard (${ms} ms)`);
