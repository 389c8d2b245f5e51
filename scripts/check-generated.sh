#!/usr/bin/env bash
# Fails when proto/ does not pass `buf lint`, gen/ is not what `npm run generate` makes, or
# examples/python/gen or examples/go/gen is not what `bash scripts/{python,go}-client.sh generate` makes.
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
bash scripts/python-client.sh check # examples/python/gen, with the pinned grpcio-tools
bash scripts/go-client.sh check # examples/go/gen, with the pinned protoc-gen-go and protoc-gen-go-grpc
echo "proto lint and gen/ are up to date"
