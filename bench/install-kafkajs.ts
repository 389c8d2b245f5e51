/**
 * Installs the bench's pinned kafkajs (its baseline rows' client) into
 * .tools/kafkajs unless it is there already (scripts/tools.sh runs this, so
 * the test command's bench smoke run finds it). Not a project dependency.
 */
import { ensureKafkajs } from "./lib/kafkajs-tool.js";

process.stdout.write(`${await ensureKafkajs()}\n`);
