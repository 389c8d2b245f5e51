#!/usr/bin/env bash
# The Go client example (examples/go): installs its code generators and builds it.
#
#   bash scripts/go-client.sh            install the plugins if needed, build .tools/bin/streamgate-go-client
#   bash scripts/go-client.sh generate   regenerate examples/go/gen from proto/ (commit the result)
#   bash scripts/go-client.sh check      fail when examples/go/gen is not what `generate` makes
#
# protoc-gen-go and protoc-gen-go-grpc are installed with `go install` at pinned
# versions into .tools/bin (reused when the versions match) and run by buf
# (node_modules/.bin) as local plugins: no remote plugin, no network when
# generating. The build fetches the modules in examples/go/go.sum from the Go
# module proxy once (Go's module cache keeps them). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
GO_MIN_MINOR=26 # examples/go/go.mod says go 1.26.0 (grpc-go v1.85 needs it)
ROOT="$PWD"
TOOLS_BIN="$ROOT/.tools/bin"
mode="${1:-build}"

die() { echo "go-client: $*" >&2; exit 1; }

command -v go >/dev/null || die "Go 1.$GO_MIN_MINOR or later is needed and 'go' is not on PATH: install a Go toolchain first"
# Never let go fetch a newer toolchain behind our back: an old Go is an error that says so.
export GOTOOLCHAIN=local
go_version=$(go env GOVERSION)
[[ $go_version =~ ^go1\.([0-9]+) ]] || die "cannot read the Go version ($go_version)"
((BASH_REMATCH[1] >= GO_MIN_MINOR)) || die "Go 1.$GO_MIN_MINOR or later is needed, found $go_version"
[[ -x node_modules/.bin/buf ]] || die "buf is missing: run 'npm install' (@bufbuild/buf)"

mkdir -p "$TOOLS_BIN"
plugins="protoc-gen-go $PROTOC_GEN_GO_VERSION protoc-gen-go-grpc $PROTOC_GEN_GO_GRPC_VERSION"
if [[ ! -x "$TOOLS_BIN/protoc-gen-go" || ! -x "$TOOLS_BIN/protoc-gen-go-grpc" || "$(cat .tools/go-plugins.version 2>/dev/null)" != "$plugins" ]]; then
  echo "go-client: installing $plugins"
  GOBIN="$TOOLS_BIN" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
  GOBIN="$TOOLS_BIN" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
  echo "$plugins" > .tools/go-plugins.version
fi

# buf finds the local plugins on PATH; it runs from examples/go, where its buf.gen.yaml is.
generate() { # [output dir]
  (cd examples/go && PATH="$TOOLS_BIN:$PATH" "$ROOT/node_modules/.bin/buf" generate --template buf.gen.yaml ${1:+--output "$1"})
}

case "$mode" in
  build)
    (cd examples/go && go build -buildvcs=false -o "$TOOLS_BIN/streamgate-go-client" .)
    echo "go-client: built .tools/bin/streamgate-go-client ($go_version, $plugins)"
    ;;
  generate)
    generate
    echo "go-client: regenerated examples/go/gen"
    ;;
  check)
    fresh=$(mktemp -d)
    trap 'rm -rf "$fresh"' EXIT
    generate "$fresh"
    if ! diff -r examples/go/gen "$fresh/gen" >/dev/null; then
      echo "examples/go/gen is stale: run 'bash scripts/go-client.sh generate' and commit it" >&2
      diff -r examples/go/gen "$fresh/gen" | head -40 >&2
      exit 1
    fi
    echo "examples/go/gen is up to date"
    ;;
  *) die "unknown mode '$mode' (build, generate or check)" ;;
esac
