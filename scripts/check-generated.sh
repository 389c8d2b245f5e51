#!/usr/bin/env bash
# Fails when proto/ does not pass `buf lint` or gen/ is not what `npm run generate` makes.
set -euo pipefail
cd "$(dirname "$0")/.."
npx --no-install buf lint
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
npx --no-install buf generate --output "$fresh"
if ! diff -r gen "$fresh/gen" >/dev/null; then
  echo "gen/ is stale: run 'npm run generate' and commit gen/" >&2
  diff -r gen "$fresh/gen" | head -40 >&2
  exit 1
fi
echo "proto lint and gen/ are up to date"
