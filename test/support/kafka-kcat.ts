/**
 * Reads Kafka topics with kcat, an independent (librdkafka, C) Kafka client,
 * to see the records exactly as a non-Node consumer does.
 */
import { execFile } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/** A record as `kcat -J` prints it. */
export interface KcatRecord {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  /** The value as text (bytes that are not UTF-8 are not kept: see {@link kcatValueBytes}). */
  payload: string | null;
  /** Header names and values, in order. */
  headers: Record<string, string>;
}

/** The path of kcat on PATH, or an error that says how to install it (a missing kcat fails the test). */
export function kcatPath(): string {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const candidate = join(dir, "kcat");
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  throw new Error(
    "kcat is not installed (Debian package kcat): run `bash scripts/tools.sh`, or as root `apt-get update && apt-get install -y kcat`",
  );
}

function runKcat(args: string[]): Promise<Buffer> {
  const kcat = kcatPath();
  return new Promise((resolve, reject) => {
    execFile(
      kcat,
      args,
      { encoding: "buffer", timeout: 20_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`kcat ${args.join(" ")} failed: ${error.message}\n${stderr.toString()}`));
        else resolve(stdout);
      },
    );
  });
}

/** Every record of `topic` (all partitions, from the beginning to the current end), as kcat -J reads them. */
export async function kcatReadTopic(brokers: string, topic: string): Promise<KcatRecord[]> {
  const out = await runKcat(["-C", "-b", brokers, "-t", topic, "-o", "beginning", "-e", "-q", "-J"]);
  return out
    .toString("utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => {
      const raw = JSON.parse(line) as Omit<KcatRecord, "headers"> & { headers?: string[] };
      const headers: Record<string, string> = {};
      const list = raw.headers ?? [];
      for (let i = 0; i + 1 < list.length; i += 2) headers[list[i]!] = list[i + 1]!;
      return {
        topic: raw.topic,
        partition: raw.partition,
        offset: raw.offset,
        key: raw.key,
        payload: raw.payload,
        headers,
      };
    });
}

/** The exact value bytes of one record, read with kcat's `%s` format (no JSON escaping). */
export function kcatValueBytes(brokers: string, topic: string, partition: number, offset: number): Promise<Buffer> {
  return runKcat([
    "-C",
    "-b",
    brokers,
    "-t",
    topic,
    "-p",
    String(partition),
    "-o",
    String(offset),
    "-c",
    "1",
    "-e",
    "-q",
    "-f",
    "%s",
  ]);
}

/** The partition and offset a cursor ("i-1-7", "r-0-3") names. */
export function position(cursor: string): { partition: number; offset: number } {
  const [, partition, offset] = cursor.split("-");
  return { partition: Number(partition), offset: Number(offset) };
}

/** The record at a cursor's position among `records`. */
export function recordAt(records: KcatRecord[], cursor: string): KcatRecord {
  const { partition, offset } = position(cursor);
  const found = records.find((record) => record.partition === partition && record.offset === offset);
  if (!found) throw new Error(`no record at ${cursor} among ${JSON.stringify(records)}`);
  return found;
}
