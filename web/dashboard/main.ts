/**
 * The dashboard: asks for a key, then shows AdminService.WatchStats live
 * (figures, charts, leaderboard), the limits form and a results viewer. A key
 * the server refuses (unauthenticated) is forgotten and asked for again.
 */
import { Code } from "@connectrpc/connect";
import type { Stats } from "../../gen/streamgate/v1/admin_service_pb.js";
import { RollingChart } from "./charts.js";
import { createClients } from "./client.js";
import { byId } from "./dom.js";
import type { ShownError } from "./errors.js";
import { Leaderboard } from "./leaderboard.js";
import { LimitsForm } from "./limits-form.js";
import { ResultsViewer } from "./results-viewer.js";
import { forgetKey, readKey, storeKey } from "./session-key.js";
import { type FeedStatus, runStatsFeed } from "./stats-feed.js";
import { StatsView } from "./stats-view.js";

const keySection = byId("key-section", HTMLElement);
const keyForm = byId("key-form", HTMLFormElement);
const keyInput = byId("key-input", HTMLInputElement);
const keyMessage = byId("key-message", HTMLElement);
const forgetButton = byId("forget-key", HTMLButtonElement);
const dashboard = byId("dashboard", HTMLElement);
const status = byId("status", HTMLElement);

const clients = createClients(readKey);
const statsView = new StatsView();
const leaderboard = new Leaderboard(byId("leaderboard", HTMLTableElement));
const limitsForm = new LimitsForm(clients.admin);
const results = new ResultsViewer(clients.streams, (error) => signOut(error));

/** Created once the dashboard is first shown, so that they get its real width. */
let charts: { requests: RollingChart; latency: RollingChart; tokens: RollingChart } | undefined;
/** Aborted when the key is forgotten or refused: ends the session's calls. */
let session: AbortController | undefined;

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (key === "") return;
  keyInput.value = "";
  storeKey(key);
  startSession();
});
forgetButton.addEventListener("click", () => signOut());

if (readKey() === undefined) showKeyForm();
else startSession();

/** Shows the key form, with `message` (why the last key was refused) when given. */
function showKeyForm(message = ""): void {
  dashboard.hidden = true;
  forgetButton.hidden = true;
  keySection.hidden = false;
  keyMessage.textContent = message;
  keyMessage.hidden = message === "";
  setStatus("no key", "idle");
  keyInput.focus();
}

/** Starts the calls of a session with the stored key. */
function startSession(): void {
  session?.abort();
  const current = new AbortController();
  session = current;
  keySection.hidden = true;
  dashboard.hidden = false;
  forgetButton.hidden = false;
  charts ??= createCharts();
  void limitsForm.load(current.signal).then((error) => {
    if (error?.code === Code.Unauthenticated && session === current) signOut(error);
  });
  void runStatsFeed(
    clients.admin,
    {
      stats: (stats) => {
        if (session === current) showStats(stats);
      },
      status: (feed) => {
        if (session !== current) return;
        showFeedStatus(feed);
        if (feed.state === "failed" && feed.error.code === Code.Unauthenticated) signOut(feed.error);
      },
    },
    current.signal,
  );
}

/** Ends the session: its calls stop, the key is forgotten, the page shows nothing of it. */
function signOut(refusal?: ShownError): void {
  session?.abort();
  session = undefined;
  forgetKey();
  results.clear();
  limitsForm.clear();
  statsView.clear();
  leaderboard.clear();
  if (charts) for (const chart of Object.values(charts)) chart.clear();
  showKeyForm(refusal ? `The server refused the key (${refusal.text}).` : "");
}

function showStats(stats: Stats): void {
  statsView.show(stats);
  leaderboard.show(stats);
  limitsForm.follow(stats.limits);
  if (!charts || !stats.time) return;
  const time = Number(stats.time.seconds) + stats.time.nanos / 1e9;
  charts.requests.push(time, [stats.allowedPerSecond, stats.blockedPerSecond]);
  charts.latency.push(time, [stats.latencyP50Ms, stats.latencyP95Ms, stats.latencyP99Ms]);
  charts.tokens.push(time, [stats.globalTokens ?? null, stats.globalBurst ?? null]);
}

function showFeedStatus(feed: FeedStatus): void {
  switch (feed.state) {
    case "connecting":
      setStatus("connecting…", "pending");
      break;
    case "live":
      setStatus("live", "live");
      break;
    case "reconnecting":
      setStatus("reconnecting…", "pending", feed.error.text);
      break;
    case "failed":
      setStatus(feed.error.text, "error");
      break;
  }
}

function setStatus(text: string, state: string, detail = ""): void {
  if (status.textContent !== text) status.textContent = text;
  status.dataset.state = state;
  status.title = detail;
}

function createCharts(): NonNullable<typeof charts> {
  return {
    requests: new RollingChart(
      byId("chart-requests", HTMLElement),
      [
        { label: "allowed", color: "#2e7d32" },
        { label: "blocked", color: "#c62828" },
      ],
      "requests / s",
    ),
    latency: new RollingChart(
      byId("chart-latency", HTMLElement),
      [
        { label: "p50", color: "#1565c0", decimals: 2 },
        { label: "p95", color: "#ef6c00", decimals: 2 },
        { label: "p99", color: "#ad1457", decimals: 2 },
      ],
      "ms",
    ),
    tokens: new RollingChart(
      byId("chart-tokens", HTMLElement),
      [
        { label: "tokens", color: "#00838f" },
        { label: "burst", color: "#757575", dash: [6, 4], decimals: 0 },
      ],
      "tokens",
    ),
  };
}
