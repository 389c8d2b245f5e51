/**
 * The dashboard in headless Chromium (Debian's, driven by playwright-core)
 * against a real server, with the traffic simulator as a user runs it: the
 * page asks for a key and goes live with an admin key; while the simulator
 * runs, the figures, the leaderboard (one row per API key, with the
 * simulator's own counts) and the requests chart move; a per-client limit
 * lowered in the form is saved on the server and takes effect: the same
 * burst that was let through whole is then refused beyond the new bucket; the
 * results viewer shows a stream's results, newest first, gets new ones pushed
 * and closes its watch on Stop; a
 * screenshot of the page under that burst is saved as
 * test-artifacts/dashboard.png; and the page logged no console error or
 * warning, threw nothing and had no request fail throughout.
 * Needs `npm run build:dashboard` to have run.
 */
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Summary } from "../simulator/summary.js";
import { DASHBOARD_DIR } from "../src/observe/dashboard.js";
import { launchChromium, recordPageProblems } from "./support/browser.js";
import { finished, PROJECT_DIR, type RunResult, spawnTool } from "./support/clients-cli.js";
import { adminClient, startTestServer, streamClient, type TestServer } from "./support/server.js";

/** Three client keys, by name: the simulator's client i uses the i-th. */
const KEYS = {
  "sim-a": "dash-key-a-0123456789abcdef",
  "sim-b": "dash-key-b-0123456789abcdef",
  "sim-c": "dash-key-c-0123456789abcdef",
};
const NAMES = Object.keys(KEYS);
const ADMIN_KEY = "dash-admin-key-0123456789abcdef";

/** The per-client limit the server starts with: more than a client of the bursts below ever sends (88 calls). */
const START_LIMIT = 100;
/**
 * The global bucket: deep enough never to refuse a call here (no run sends
 * more than 267 calls), refilled slowly enough that its level dips under the
 * bursts, which the dashboard shows.
 */
const GLOBAL_LIMIT = { rate: 50, burst: 400 };
/** The per-client limit set in the form. */
const NEW_LIMIT = { rate: 2, burst: 2 };

/**
 * The burst run before and after the change: 120 calls/s for 1 s of every 2,
 * 12/s otherwise, for 4 s, over 3 clients. Even between bursts a client sends
 * more than the new limit refills, so blocked calls show for the whole run.
 */
const BURST = ["--pattern", "burst", "--rps", "120", "--period", "2", "--duration", "4"];

/** The line colours of the requests chart (web/dashboard/main.ts). */
const ALLOWED_COLOR = [0x2e, 0x7d, 0x32] as const;
const BLOCKED_COLOR = [0xc6, 0x28, 0x28] as const;

const SCREENSHOT = join(PROJECT_DIR, "test-artifacts", "dashboard.png");

/** Bounds of the polls on the page: generous, the machine is shared. */
const POLL = { timeout: 30_000, interval: 100 };

let server: TestServer;
let browser: Browser | undefined;
let page: Page;
/** What the page should never produce, recorded from its first load. */
let problems: string[] = [];
/** Simulators still running, stopped in afterAll should a test fail first. */
const simulators = new Set<ChildProcess>();

beforeAll(async () => {
  if (!existsSync(join(DASHBOARD_DIR, "index.html"))) {
    throw new Error(`${DASHBOARD_DIR} is not built: run npm run build:dashboard before this test`);
  }
  server = await startTestServer({
    API_KEYS: Object.entries(KEYS)
      .map(([name, key]) => `${name}:${key}`)
      .join(","),
    ADMIN_API_KEYS: `ops:${ADMIN_KEY}`,
    CLIENT_RATE_LIMIT_RPS: String(START_LIMIT),
    CLIENT_RATE_LIMIT_BURST: String(START_LIMIT),
    RATE_LIMIT_RPS: String(GLOBAL_LIMIT.rate),
    RATE_LIMIT_BURST: String(GLOBAL_LIMIT.burst),
  });
  browser = await launchChromium();
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  page = await context.newPage();
  problems = recordPageProblems(page);
}, 120_000);

afterAll(async () => {
  for (const child of simulators) child.kill();
  await browser?.close();
  await server?.close();
});

/** Starts the simulator as `npm run simulate` does, with the three keys, three clients and a JSON summary. */
function simulate(args: string[]): Promise<RunResult> {
  const child = spawnTool(process.execPath, [
    "--import",
    "tsx",
    "simulator/main.ts",
    "--url",
    server.baseUrl,
    "--keys",
    Object.values(KEYS).join(","),
    "--clients",
    "3",
    "--json",
    ...args,
  ]);
  child.stdin!.end();
  simulators.add(child);
  child.once("close", () => simulators.delete(child));
  return finished(child, 90_000);
}

/** The summary of a simulator run that exited 0. */
function summaryOf(result: RunResult): Summary {
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as Summary;
}

/** The text of the element `#id`. */
async function text(id: string): Promise<string> {
  return (await page.locator(`#${id}`).textContent()) ?? "";
}

/** The figure `#id` as a number (NaN while it shows "—"). */
async function figure(id: string): Promise<number> {
  return Number(await text(id));
}

/** The clients of the leaderboard's rows (their data-client), sorted. */
async function leaderboardClients(): Promise<string[]> {
  const rows = await page.locator("#leaderboard tbody tr[data-client]").all();
  return (await Promise.all(rows.map((row) => row.getAttribute("data-client")))).map(String).sort();
}

/** The leaderboard's row of `client`: [client, tenant, allowed, blocked, tokens] as shown. */
function leaderboardRow(client: string): Promise<string[]> {
  return page.locator(`#leaderboard tbody tr[data-client="${client}"] td`).allTextContents();
}

/** The DOM as {@link lineReach} uses it: these tests compile without the DOM library, and it runs in the page. */
declare const document: {
  querySelector(selector: string): { getBoundingClientRect(): { top: number; height: number; width: number } } | null;
  createElement(tag: "canvas"): PageCanvas;
};
interface PageCanvas {
  width: number;
  height: number;
  getBoundingClientRect(): { top: number; height: number; width: number };
  getContext(kind: "2d"): {
    drawImage(from: PageCanvas, x: number, y: number): void;
    getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
  } | null;
}

/**
 * How high the line of colour `rgb` reaches in the uPlot chart `#chart`, read
 * from the canvas's pixels: as a share of the plot's height, 0 for the zero
 * line, about 0.87 for the highest value shown (the y axis runs from 0 to 1.15
 * times it), null when no pixel has that colour. Run in the page. It reads a
 * copy of the canvas, since repeated readbacks of the chart's own canvas make
 * Chromium warn on the console.
 */
function lineReach({ chart, rgb }: { chart: string; rgb: readonly number[] }): number | null {
  const canvas = document.querySelector(`#${chart} canvas`) as PageCanvas | null;
  const plot = document.querySelector(`#${chart} .u-over`);
  if (!canvas || !plot) return null;
  const copy = document.createElement("canvas");
  copy.width = canvas.width;
  copy.height = canvas.height;
  const context = copy.getContext("2d")!;
  context.drawImage(canvas, 0, 0);
  const { data } = context.getImageData(0, 0, copy.width, copy.height);
  const box = canvas.getBoundingClientRect();
  const area = plot.getBoundingClientRect();
  const scale = canvas.width / box.width; // device pixels per CSS pixel
  const plotBottom = (area.top - box.top + area.height) * scale;
  const plotHeight = area.height * scale;
  for (let y = 0; y < copy.height; y++) {
    for (let x = 0; x < copy.width; x++) {
      const at = (y * copy.width + x) * 4;
      const near = [0, 1, 2].every((c) => Math.abs(data[at + c]! - rgb[c]!) <= 12) && data[at + 3]! > 200;
      if (near) return (plotBottom - y) / plotHeight;
    }
  }
  return null;
}

/** How high the requests chart's line of `rgb` reaches (see {@link lineReach}). */
function requestsLineReach(rgb: readonly number[]): Promise<number | null> {
  return page.evaluate(lineReach, { chart: "chart-requests", rgb });
}

describe("the dashboard in Chromium, with the simulator running", { timeout: 120_000 }, () => {
  it("asks for a key, then goes live with an admin key and shows the limits in force", async () => {
    await page.goto(`${server.baseUrl}/dashboard/`);
    await page.locator("#key-input").waitFor({ state: "visible" });
    expect(await page.locator("#dashboard").isHidden()).toBe(true);
    expect(await text("status")).toBe("no key");

    await page.locator("#key-input").fill(ADMIN_KEY);
    await page.locator("#key-form button[type=submit]").click();
    await expect.poll(() => text("status"), POLL).toBe("live");
    expect(await page.locator("#key-section").isHidden()).toBe(true);
    // The form, filled from GetLimits: the buckets of the environment.
    await expect.poll(() => page.locator("#client-rate").inputValue(), POLL).toBe(String(START_LIMIT));
    expect(await page.locator("#client-burst").inputValue()).toBe(String(START_LIMIT));
    expect(await page.locator("#global-rate").inputValue()).toBe(String(GLOBAL_LIMIT.rate));
    expect(await page.locator("#global-burst").inputValue()).toBe(String(GLOBAL_LIMIT.burst));
    // The global bucket's figures: full, as nothing was sent yet.
    expect(await text("stats-global-burst")).toBe(String(GLOBAL_LIMIT.burst));
    expect(await figure("global-tokens")).toBe(GLOBAL_LIMIT.burst);
  });

  it("shows figures, leaderboard rows and a chart that move while the simulator runs", async () => {
    // Nothing was sent yet: once drawn, the requests chart's lines lie on zero (the blocked one, drawn last, on top).
    await expect.poll(() => requestsLineReach(BLOCKED_COLOR), POLL).not.toBeNull();
    expect(await requestsLineReach(BLOCKED_COLOR)).toBeLessThan(0.1);
    expect((await requestsLineReach(ALLOWED_COLOR)) ?? 0).toBeLessThan(0.1);
    const run = simulate(["--pattern", "steady", "--rps", "30", "--duration", "4"]);

    await expect.poll(() => figure("allowed-rate"), POLL).toBeGreaterThan(0);
    await expect.poll(leaderboardClients, POLL).toEqual(NAMES);
    // Live updates: the snapshot time changes at least twice.
    const times = new Set<string>();
    await expect
      .poll(async () => {
        times.add(await text("stats-time"));
        return times.size;
      }, POLL)
      .toBeGreaterThanOrEqual(3);
    // The allowed line rose off zero, to the top of its scale.
    await expect.poll(() => requestsLineReach(ALLOWED_COLOR), POLL).toBeGreaterThan(0.5);

    const summary = summaryOf(await run);
    expect(summary.allowed).toBeGreaterThan(0);
    expect(summary.blocked).toBe(0);
    // Each key's row ends with the simulator's own counts for it (plus the StartStream that opened its stream).
    // Each key is a tenant of its own, named by the key's name.
    for (const [i, client] of summary.perClient.entries()) {
      await expect
        .poll(() => leaderboardRow(NAMES[i]!).then((cells) => cells.slice(0, 4)), POLL)
        .toEqual([NAMES[i], NAMES[i], String(client.allowed + 1), "0"]);
    }
  });

  it("follows one stream's results in the viewer, live, and closes the watch on Stop", async () => {
    const streamId = "viewer-1";
    // A client's stream, in its tenant (named by the key): the admin session watches it by naming that tenant.
    const client = streamClient(server, "grpc", KEYS["sim-a"]);
    await client.startStream({ streamId });
    const send = (n: number) =>
      client.sendData({ streamId, payload: { case: "data", value: fromJson(ValueSchema, { n }) } });
    for (const n of [1, 2]) await send(n);

    await page.locator("#results-stream-id").fill(streamId);
    await page.locator("#results-tenant").fill("sim-a");
    await page.locator("#results-from").selectOption("earliest");
    await page.locator("#results-start").click();
    const payloads = () => page.locator("#results-list li .payload").allTextContents();
    // The two results so far, newest first.
    await expect.poll(payloads, POLL).toEqual(['{"n":2}', '{"n":1}']);
    // One sent now is pushed to the open watch.
    await send(3);
    await expect.poll(payloads, POLL).toEqual(['{"n":3}', '{"n":2}', '{"n":1}']);
    const cursors = await page
      .locator("#results-list li")
      .evaluateAll((items) => items.map((item) => item.getAttribute("data-cursor")));
    expect(new Set(cursors).size).toBe(3);
    // The figures come once a second: the open watch shows in the next one.
    await expect.poll(() => figure("active-watchers"), POLL).toBe(1);

    await page.locator("#results-stop").click();
    await expect.poll(() => figure("active-watchers"), POLL).toBe(0);
  });

  it("applies a per-client limit changed in the form: the same burst is then refused sooner", async () => {
    // Every call of this burst is let through: no client sends more than its bucket holds, nor all clients more than the global one.
    const before = summaryOf(await simulate(BURST));
    expect(before.sent).toBeGreaterThan(0);
    expect(before.blocked).toBe(0);

    await page.locator("#client-rate").fill(String(NEW_LIMIT.rate));
    await page.locator("#client-burst").fill(String(NEW_LIMIT.burst));
    await page.locator("#limits-submit").click();
    await expect.poll(() => text("limits-status"), POLL).toBe("saved: per_client");
    // The server has it, and the global bucket as it was (only per_client was sent); the form shows what the server answered.
    const { limits } = await adminClient(server, "grpc", ADMIN_KEY).getLimits({});
    expect(limits?.perClient).toMatchObject({ ratePerSecond: NEW_LIMIT.rate, burst: NEW_LIMIT.burst });
    expect(limits?.global).toMatchObject({ ratePerSecond: GLOBAL_LIMIT.rate, burst: GLOBAL_LIMIT.burst });
    expect(await page.locator("#client-rate").inputValue()).toBe(String(NEW_LIMIT.rate));
    expect(await page.locator("#client-burst").inputValue()).toBe(String(NEW_LIMIT.burst));

    const run = simulate(BURST);
    // Under the burst: blocked calls in the figures, and high in the chart (so a snapshot covered much of a
    // burst, whose refusals are close to the chart's highest value); the screenshot shows that moment.
    await expect
      .poll(
        async () => (await figure("blocked-rate")) > 0 && ((await requestsLineReach(BLOCKED_COLOR)) ?? 0) > 0.25,
        POLL,
      )
      .toBe(true);
    mkdirSync(join(PROJECT_DIR, "test-artifacts"), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    const after = summaryOf(await run);
    expect(after.sent).toBe(before.sent);
    expect(after.blocked).toBeGreaterThan(0);
    expect(after.blocked).toBeGreaterThan(before.blocked);
    // No client got more than its new bucket holds plus what it refills over the run (one more for the clocks' skew).
    for (const client of after.perClient) {
      expect(client.blocked).toBeGreaterThan(0);
      expect(client.allowed).toBeLessThanOrEqual(NEW_LIMIT.burst + NEW_LIMIT.rate * after.elapsed + 1);
    }
    expect(existsSync(SCREENSHOT)).toBe(true);
  });

  it("logged no console error or warning, threw nothing and had no request fail", () => {
    expect(problems, problems.join("\n")).toEqual([]);
  });
});
