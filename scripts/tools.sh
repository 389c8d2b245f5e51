#!/usr/bin/env bash
# Provisions the command-line tools the tests drive as real clients, into
# .tools/ (reused when present): grpcurl via `go install` at a pinned version,
# curl from Debian when missing. A tool that cannot be had is an error.
set -euo pipefail
cd "$(dirname "$0")/.."
GRPCURL_VERSION=v1.9.3
TOOLS_BIN="$PWD/.tools/bin"
mkdir -p "$TOOLS_BIN"

if [[ ! -x "$TOOLS_BIN/grpcurl" || "$(cat .tools/grpcurl.version 2>/dev/null)" != "$GRPCURL_VERSION" ]]; then
  command -v go >/dev/null || { echo "tools: Go is needed to install grpcurl (go install)" >&2; exit 1; }
  echo "tools: installing grpcurl $GRPCURL_VERSION"
  GOBIN="$TOOLS_BIN" GOFLAGS=-mod=mod go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
  echo "$GRPCURL_VERSION" > .tools/grpcurl.version
fi

if ! command -v curl >/dev/null; then
  echo "tools: installing curl"
  if [[ $(id -u) -eq 0 ]]; then apt-get update -qq && apt-get install -y -qq curl; else sudo apt-get update -qq && sudo apt-get install -y -qq curl; fi
fi
echo "tools: grpcurl $GRPCURL_VERSION, $(curl --version | head -1 | cut -d' ' -f1-2)"
