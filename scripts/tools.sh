#!/usr/bin/env bash
# Provisions the command-line tools the tests drive as real clients, into
# .tools/ (reused when present): grpcurl and connectconformance (the Connect
# conformance runner, test/conformance.test.ts) via `go install` at pinned versions,
# curl, kcat, promtool and prometheus (Debian's prometheus package), redis-server and chromium (for the
# dashboard's browser test, driven by playwright-core) from Debian when
# missing. A tool that cannot be had is an error.
#
#   bash scripts/tools.sh       everything above (npm test)
#   bash scripts/tools.sh cli   only the tools a reader runs by hand from README.md (npm run tools):
#                               grpcurl and ghz into .tools/bin, kcat from Debian when missing
#                               (a kcat that cannot be had is only a warning here)
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-all}"
[[ $MODE == all || $MODE == cli ]] || { echo "usage: bash scripts/tools.sh [cli]" >&2; exit 2; }
GRPCURL_VERSION=v1.9.3
# Also the version test/conformance/proto is copied from (test/conformance/copy-protos.sh).
CONFORMANCE_VERSION=v1.0.7
TOOLS_BIN="$PWD/.tools/bin"
mkdir -p "$TOOLS_BIN"

if [[ ! -x "$TOOLS_BIN/grpcurl" || "$(cat .tools/grpcurl.version 2>/dev/null)" != "$GRPCURL_VERSION" ]]; then
  command -v go >/dev/null || { echo "tools: Go is needed to install grpcurl (go install)" >&2; exit 1; }
  echo "tools: installing grpcurl $GRPCURL_VERSION"
  GOBIN="$TOOLS_BIN" GOFLAGS=-mod=mod go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
  echo "$GRPCURL_VERSION" > .tools/grpcurl.version
fi

# ghz, for the bench (npm run bench; its smoke run is part of the tests): the version pinned in bench/lib/ghz.ts.
node --import tsx bench/install-ghz.ts >/dev/null

# Debian packages, installed as root; `apt-get update` runs once, before the first install.
# A package that cannot be installed fails the `... || apt_install` line that asked for it (set -e).
APT_UPDATED=0
apt_install() { # package
  if [[ $(id -u) -ne 0 ]]; then
    echo "tools: $1 is missing and installing it needs root (as root: apt-get update && apt-get install -y $1)" >&2
    return 1
  fi
  echo "tools: installing $1 from Debian"
  if [[ $APT_UPDATED == 0 ]]; then apt-get update -qq; APT_UPDATED=1; fi
  apt-get install -y -qq --no-install-recommends "$1" || { echo "tools: apt-get install -y $1 failed" >&2; return 1; }
}

# kcat: an independent Kafka client, for the tests that read and write the broker's topics directly
# (and README's kcat example).
if [[ $MODE == all ]]; then
  command -v kcat >/dev/null || apt_install kcat
else # cli: the last tool; say where they are, and stop
  command -v kcat >/dev/null || apt_install kcat || echo "tools: going on without kcat (only README's kcat example needs it)" >&2
  kcat_found="no kcat"
  command -v kcat >/dev/null && kcat_found="kcat $(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\).*/\1/p') at $(command -v kcat)"
  echo "tools: grpcurl $GRPCURL_VERSION and ghz $(cat .tools/ghz.version) in $TOOLS_BIN; $kcat_found"
  echo "tools: to run them by name: export PATH=\"$TOOLS_BIN:\$PATH\""
  exit 0
fi

if [[ ! -x "$TOOLS_BIN/connectconformance" || "$(cat .tools/connectconformance.version 2>/dev/null)" != "$CONFORMANCE_VERSION" ]]; then
  command -v go >/dev/null || { echo "tools: Go is needed to install connectconformance (go install)" >&2; exit 1; }
  echo "tools: installing connectconformance $CONFORMANCE_VERSION"
  GOBIN="$TOOLS_BIN" GOFLAGS=-mod=mod go install "connectrpc.com/conformance/cmd/connectconformance@$CONFORMANCE_VERSION"
  echo "$CONFORMANCE_VERSION" > .tools/connectconformance.version
fi

node --import tsx bench/install-kafkajs.ts >/dev/null # plain kafkajs 2.2.4 for the bench's baseline rows, into .tools/kafkajs (bench/lib/kafkajs-tool.ts), not a project dependency

command -v curl >/dev/null || apt_install curl
# promtool and prometheus, both from Debian's prometheus package: promtool checks the /metrics exposition and
# the shipped rules (ops/prometheus, with their unit tests); prometheus scrapes a real streamgate with those
# rules loaded and answers the Grafana dashboard's queries (test/ops-dashboard.test.ts).
{ command -v promtool >/dev/null && command -v prometheus >/dev/null; } || apt_install prometheus
# redis-server: the shared limits store (REDIS_URL) that test/support/redis-global-setup.ts starts.
command -v redis-server >/dev/null || apt_install redis-server
# chromium: the browser the dashboard test drives (playwright-core never downloads one).
[[ -x /usr/bin/chromium ]] || apt_install chromium
bash scripts/python-client.sh >/dev/null # the Python example client's virtualenv, .tools/python-venv (examples/python)
bash scripts/go-client.sh >/dev/null # the Go example client: its buf plugins and .tools/bin/streamgate-go-client (examples/go)
echo "tools: grpcurl $GRPCURL_VERSION, connectconformance $CONFORMANCE_VERSION, $(curl --version | head -1 | cut -d' ' -f1-2), kcat $(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\).*/\1/p'), $(promtool --version 2>&1 | head -1 | cut -d' ' -f1-3), redis-server $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'), ghz $(cat .tools/ghz.version), $(/usr/bin/chromium --version 2>/dev/null | cut -d' ' -f1-2)"
