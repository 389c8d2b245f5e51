#!/usr/bin/env bash
# The whole test suite, as `npm test` runs it: provisioning, contract checks,
# type checks, then every vitest test against real servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/tools.sh
bash scripts/check-generated.sh
npx --no-install tsc -p tsconfig.json --noEmit
npx --no-install vitest run "$@"
