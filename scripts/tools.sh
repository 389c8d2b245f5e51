#!/usr/bin/env bash
# Provisions the command-line tools the tests drive as real clients, into
# .tools/ (reused when present): grpcurl via `go install` at a pinned version,
# curl, kcat, promtool (Debian's prometheus), redis-server and chromium (for the
# dashboard's browser test, driven by playwright-core) from Debian when
# missing. A tool that cannot be had is an error.
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

# ghz, for the bench (its smoke run is part of the tests): the version pinned in bench/lib/ghz.ts.
node --import tsx bench/install-ghz.ts >/dev/null

# Debian packages, installed as root; `apt-get update` runs once, before the first install.
APT_UPDATED=0
apt_install() { # package
  if [[ $(id -u) -ne 0 ]]; then
    echo "tools: $1 is missing and installing it needs root (as root: apt-get update && apt-get install -y $1)" >&2
    exit 1
  fi
  echo "tools: installing $1 from Debian"
  if [[ $APT_UPDATED == 0 ]]; then apt-get update -qq; APT_UPDATED=1; fi
  apt-get install -y -qq --no-install-recommends "$1" || { echo "tools: apt-get install -y $1 failed" >&2; exit 1; }
}

command -v curl >/dev/null || apt_install curl
# kcat: an independent Kafka client, for the tests that read and write the broker's topics directly.
command -v kcat >/dev/null || apt_install kcat
# promtool: Prometheus's own check of the /metrics exposition.
command -v promtool >/dev/null || apt_install prometheus
# redis-server: the shared limits store (REDIS_URL) that test/support/redis-global-setup.ts starts.
command -v redis-server >/dev/null || apt_install redis-server
# chromium: the browser the dashboard test drives (playwright-core never downloads one).
[[ -x /usr/bin/chromium ]] || apt_install chromium
bash scripts/python-client.sh >/dev/null # the Python example client's virtualenv, .tools/python-venv (examples/python)
bash scripts/go-client.sh >/dev/null # the Go example client: its buf plugins and .tools/bin/streamgate-go-client (examples/go)
echo "tools: grpcurl $GRPCURL_VERSION, $(curl --version | head -1 | cut -d' ' -f1-2), kcat $(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\).*/\1/p'), $(promtool --version 2>&1 | head -1 | cut -d' ' -f1-3), redis-server $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'), ghz $(cat .tools/ghz.version), $(/usr/bin/chromium --version 2>/dev/null | cut -d' ' -f1-2)"
