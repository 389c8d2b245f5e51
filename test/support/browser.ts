/**
 * Headless Chromium for browser tests: Debian's /usr/bin/chromium driven by
 * playwright-core (which downloads no browser of its own), and a recorder of
 * what a page should never produce (console errors and warnings, uncaught
 * errors, failed requests).
 */
import { existsSync } from "node:fs";
import { type Browser, chromium, type Page } from "playwright-core";

/** Debian's Chromium, as scripts/tools.sh installs it. */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/**
 * Launches headless Chromium with a fresh profile (playwright's default
 * temporary user-data directory), without the sandbox (tests may run as root
 * in a container), GPU, QUIC or any of Chromium's own background traffic.
 * A missing Chromium fails the test with how to install it; it never skips.
 */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`chromium is not installed (scripts/tools.sh installs Debian's chromium): no ${CHROMIUM_PATH}`);
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/**
 * Records, from now on, what a healthy page never produces: console messages
 * of type error or warning, uncaught errors (pageerror) and requests that
 * failed (network errors; HTTP error statuses are answers, not failures, and
 * a call the page aborts itself, net::ERR_ABORTED, is not one either). Returns the list, one line each, which grows as they happen.
 */
export function recordPageProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on("console", (message) => {
    const type = message.type();
    if (type !== "error" && type !== "warning") return;
    const { url, lineNumber } = message.location();
    problems.push(`console ${type}: ${message.text()}${url ? ` (${url}:${lineNumber})` : ""}`);
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.stack ?? error.message}`));
  page.on("requestfailed", (request) => {
    const reason = request.failure()?.errorText ?? "unknown";
    // The page cancelling its own call (a watch stopped) is not a failure.
    if (reason === "net::ERR_ABORTED") return;
    problems.push(`request failed: ${request.method()} ${request.url()}: ${reason}`);
  });
  return problems;
}
