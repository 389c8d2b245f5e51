/**
 * The shipped Prometheus rules (ops/prometheus/streamgate-rules.yml) pass
 * `promtool check rules` and their unit tests (`promtool test rules
 * ops/prometheus/streamgate-rules.test.yml`); every alert carries a severity,
 * a summary, a description and a runbook link to README's "Alerts", and has
 * at least one test case where it fires and one where it does not; every
 * recording rule's value is tested.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { requirePrometheusTool } from "./support/prometheus.js";

const DIR = fileURLToPath(new URL("../ops/prometheus/", import.meta.url));
const RULES = join(DIR, "streamgate-rules.yml");
const TESTS = join(DIR, "streamgate-rules.test.yml");

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile {
  groups: Array<{ name: string; rules: Rule[] }>;
}
interface TestFile {
  rule_files: string[];
  tests: Array<{
    name?: string;
    alert_rule_test?: Array<{ alertname: string; eval_time: string; exp_alerts?: unknown[] }>;
    promql_expr_test?: Array<{ expr: string; exp_samples?: unknown[] }>;
  }>;
}

const rules = parse(readFileSync(RULES, "utf8")) as RuleFile;
const tests = parse(readFileSync(TESTS, "utf8")) as TestFile;
const allRules = rules.groups.flatMap((group) => group.rules);
const alerts = allRules.filter((rule) => rule.alert !== undefined);
const records = allRules.filter((rule) => rule.record !== undefined);
const alertCases = tests.tests.flatMap((test) => test.alert_rule_test ?? []);
const exprCases = tests.tests.flatMap((test) => test.promql_expr_test ?? []);

/** Runs promtool with `args` in ops/prometheus; its output is in the assertion's message when it fails. */
function promtool(...args: string[]): { status: number | null; output: string } {
  requirePrometheusTool("promtool");
  const run = spawnSync("promtool", args, { cwd: DIR, encoding: "utf8", timeout: 60_000 });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe("Prometheus rules", () => {
  it("pass promtool check rules", () => {
    const { status, output } = promtool("check", "rules", RULES);
    expect(status, output).toBe(0);
    expect(output).toContain("SUCCESS");
  });

  it("pass their promtool unit tests", () => {
    const { status, output } = promtool("test", "rules", TESTS);
    expect(status, output).toBe(0);
    expect(output).toContain("SUCCESS");
  });

  it("test the rules file they ship with", () => {
    expect(tests.rule_files).toEqual(["streamgate-rules.yml"]);
  });

  it("give every alert a severity, a summary, a description and the README runbook", () => {
    expect(alerts.length).toBeGreaterThan(0);
    for (const alert of alerts) {
      expect(alert.labels?.severity, alert.alert).toMatch(/^(critical|warning|info)$/);
      expect(alert.annotations?.summary, alert.alert).toBeTruthy();
      expect(alert.annotations?.description, alert.alert).toBeTruthy();
      expect(alert.annotations?.runbook, alert.alert).toBe("README.md#alerts");
    }
  });

  it("have a test case where each alert fires and one where it does not", () => {
    const missing: string[] = [];
    for (const { alert } of alerts) {
      const cases = alertCases.filter((c) => c.alertname === alert);
      if (!cases.some((c) => (c.exp_alerts ?? []).length > 0)) missing.push(`${alert}: no firing case`);
      if (!cases.some((c) => (c.exp_alerts ?? []).length === 0))
        missing.push(`${alert}: no case where it does not fire`);
    }
    expect(missing).toEqual([]);
    // And no case names an alert the rules do not have (it would pass without testing anything).
    const names = new Set(alerts.map((alert) => alert.alert));
    expect(alertCases.map((c) => c.alertname).filter((name) => !names.has(name))).toEqual([]);
  });

  it("test the value of every recording rule", () => {
    const untested = records
      .map((rule) => rule.record!)
      .filter(
        (name) =>
          !exprCases.some(
            (c) => (c.exp_samples ?? []).length > 0 && new RegExp(`(^|[^\\w:])${name}([^\\w:]|$)`).test(c.expr),
          ),
      );
    expect(untested).toEqual([]);
  });

  it("aggregate by the labels they keep, never by what they drop (so a worker label changes nothing)", () => {
    for (const rule of allRules) {
      expect(rule.expr, rule.record ?? rule.alert).not.toMatch(/\bwithout\s*\(/);
      // Every sum, min, max, count or avg names the labels it keeps.
      for (const match of rule.expr.matchAll(/\b(sum|min|max|count|avg)\s*(by\s*\([^)]*\)\s*)?\(/g)) {
        expect(match[2], `${rule.record ?? rule.alert}: ${match[0]}`).toBeDefined();
      }
    }
  });
});
