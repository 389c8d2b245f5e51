/** The bounded map behind dedup memory and compiled programs: by count, or by weight. */
import { expect, it } from "vitest";
import { Lru } from "../src/common/lru.js";

it("forgets the least recently set entry past its capacity", () => {
  const lru = new Lru<string, number>(2);
  lru.set("a", 1);
  lru.set("b", 2);
  lru.set("a", 3); // set again: now the most recent
  lru.set("c", 4);
  expect([lru.has("a"), lru.has("b"), lru.has("c")]).toEqual([true, false, true]);
});

it("bounds entries by their weight when given one, and keeps no entry heavier than the whole", () => {
  const lru = new Lru<string, string>(10, (value) => value.length);
  lru.set("a", "xxxx");
  lru.set("b", "xxxx");
  lru.set("c", "xxxx"); // 12 > 10: "a" goes
  expect([lru.has("a"), lru.has("b"), lru.has("c")]).toEqual([false, true, true]);
  lru.set("b", "x"); // replaced: its old weight is given back
  lru.set("d", "xxxx");
  expect([lru.has("b"), lru.has("c"), lru.has("d")]).toEqual([true, true, true]);
  lru.set("huge", "x".repeat(11));
  expect([lru.has("huge")]).toEqual([false]);
  lru.set("e", "xxxxxxxxxx");
  expect(lru.get("e")).toBe("xxxxxxxxxx");
});
