/**
 * Installs the bench's pinned ghz into .tools/bin unless it is there already
 * (scripts/tools.sh runs this, so the test command's bench smoke run finds it).
 */
import { ensureGhz } from "./lib/ghz.js";

process.stdout.write(`${await ensureGhz()}\n`);
