/**
 * README's "Architecture" stays true as src/ changes: its table names every
 * folder of src/ (and src/main.ts) and nothing else, and every file the path
 * of a record names exists.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { expect, it } from "vitest";

const root = new URL("../", import.meta.url);
const readme = readFileSync(new URL("README.md", root), "utf8");
const section = readme.slice(
  readme.indexOf("## Architecture"),
  readme.indexOf("\n## ", readme.indexOf("## Architecture") + 1),
);

it("names every folder of src/ in its table, and only those", () => {
  const rows = [...section.matchAll(/^\| `src\/([^`]+)` \|/gm)].map((match) => match[1]!);
  const folders = readdirSync(new URL("src/", root), { withFileTypes: true })
    .map((entry) => (entry.isDirectory() ? `${entry.name}/` : entry.name))
    .filter((name) => name.endsWith("/") || name === "main.ts");
  expect(rows.sort()).toEqual(folders.sort());
});

it("names only files that exist on the path of a record", () => {
  const path = section.slice(section.indexOf("One record, from the port"));
  const files = [...path.matchAll(/`([a-z-]+\/[a-z0-9/-]+\.ts)`/g)].map((match) => match[1]!);
  expect(files.length).toBeGreaterThan(20);
  expect(files.filter((file) => !existsSync(new URL(`src/${file}`, root)))).toEqual([]);
});
