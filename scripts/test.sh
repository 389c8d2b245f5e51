#!/usr/bin/env bash
# The whole test suite, as `npm test` runs it: provisioning, contract checks,
# type checks, then every vitest test against real servers (and a real Kafka
# broker and a real redis-server, which vitest's globalSetup starts unless
# KAFKA_BROKERS / REDIS_URL name them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/tools.sh
# The Kafka jars up front (a first-time Maven download shows here, not inside vitest's globalSetup).
if [[ -z "${KAFKA_BROKERS:-}" ]]; then bash scripts/kafka.sh fetch; fi
bash scripts/check-generated.sh
npm run --silent typecheck
# One linter and formatter for the whole tree (biome.jsonc); `npm run format` fixes what it can.
npm run --silent lint
# The dashboard as `npm install` builds it (its browser test and file-serving test load dist/dashboard).
npm run --silent build:dashboard
mkdir -p test-artifacts
status=0
npx --no-install vitest run --reporter=default --reporter=json --outputFile.json=test-artifacts/vitest.json "$@" || status=$?
# One plain closing line, whatever the reporter printed above it.
node -e '
  const r = JSON.parse(require("fs").readFileSync("test-artifacts/vitest.json", "utf8"));
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed` + (r.numPendingTests ? `, ${r.numPendingTests} skipped` : ""));
' || true
exit "$status"
