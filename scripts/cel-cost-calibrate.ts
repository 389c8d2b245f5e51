/**
 * Times CEL evaluations that exhaust the cost budget, and typical ones, on this
 * machine: `COST=30000 npx tsx scripts/cel-cost-calibrate.ts` (worst of 30 runs after 20 warm-ups).
 */
import { type CelRecord, celToJson, compileCel, passes } from "../src/processing/cel.js";

const limits = { maxExpressionLength: 4096, maxCost: Number(process.env.COST ?? 30000) };
const lit = `[${Array.from({ length: 300 }, (_, i) => i).join(",")}]`;
const attack = `${lit}.all(a, ${lit}.all(b, ${lit}.all(c, a + b + c >= 0)))`;
console.log("attack length", attack.length);
try {
  compileCel(attack, "filter", limits);
  console.log("attack ACCEPTED");
} catch (e) {
  console.log("attack refused:", (e as Error).message);
}
const items = Array.from({ length: 3000 }, (_, i) => i); // ~24KB-ish record
const big: CelRecord = {
  data: { items, temp: 25 },
  raw: new Uint8Array(0),
  headers: new Map([["k", "v"]]),
  eventId: "",
  streamId: "s",
};
console.log("record bytes", JSON.stringify(big.data).length);
const small: CelRecord = {
  data: { temp: 25, items: [1, 2, 3] },
  raw: new Uint8Array(0),
  headers: new Map([["k", "v"]]),
  eventId: "",
  streamId: "s",
};
function time(name: string, source: string, record: CelRecord, transform = false) {
  let program;
  try {
    program = compileCel(source, "filter", limits);
  } catch (e) {
    console.log(name, "refused:", (e as Error).message);
    return;
  }
  for (let i = 0; i < 20; i++) {
    try {
      transform ? celToJson(program(record)) : passes(program, record);
    } catch {}
  }
  const runs = 30;
  let worst = 0;
  let outcome = "";
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    try {
      outcome = JSON.stringify(transform ? celToJson(program(record)) : passes(program, record)).slice(0, 40);
    } catch (e) {
      outcome = (e as Error).message.slice(0, 60);
    }
    const took = performance.now() - t;
    times.push(took);
    worst = Math.max(worst, took);
  }
  times.sort((a, b) => a - b);
  console.log(name.padEnd(20), "median ms", times[runs >> 1]!.toFixed(3), "worst ms", worst.toFixed(3), outcome);
}
time("typical filter", `data.temp > 20 && headers["k"] == "v"`, small);
time("typical transform", `{"t": data.temp * 2.0, "hot": data.temp > 30, "k": headers["k"]}`, small, true);
time("map small", `data.items.map(x, x * 2.0)`, small, true);
time("quadratic all", `data.items.all(x, data.items.all(y, x + y >= 0))`, big);
time("quadratic exists", `data.items.exists(x, data.items.exists(y, x == y + 100000.0))`, big);
time("map 3000", `data.items.map(x, x * 2.0)`, big, true);
time("filter+map 3000", `data.items.filter(x, x > 1500.0).map(x, {"v": x})`, big, true);
time("in-loop eq", `data.items.all(x, data == data)`, big);
time("string concat", `data.items.map(x, string(x)).join(",").size() > 0`, big);
time(
  "replace amp",
  `data.items.map(x, string(x)).join(",").replace("", data.items.map(x, string(x)).join(",")).size() > 0`,
  big,
);
time("redos matches", `data.items.map(x, string(x)).join("a").matches("(a+)+$") || true`, big);
time("list lit in loop", `data.items.all(x, x in ${lit})`, big);
time("or absorbs", `data.items.all(x, data.items.all(y, x + y >= 0)) || true`, big);
time("map keys", `data.items.map(x, {string(x): x}).size() > 0`, big);
