#!/usr/bin/env bash
# Re-copies the conformance service's .proto files from the Go module
# connectrpc.com/conformance (Apache-2.0) at the version scripts/tools.sh installs
# the runner at (CONFORMANCE_VERSION), into test/conformance/proto; then run
# `npm run generate` and commit test/conformance/proto and gen/connectrpc.
# Only the files a conformance server needs: the service, the server's
# start-up messages, and the enums they share (not the client's or the suite's).
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^CONFORMANCE_VERSION=//p' scripts/tools.sh)
[[ -n $version ]] || { echo "copy-protos: no CONFORMANCE_VERSION in scripts/tools.sh" >&2; exit 1; }
dir=$(go mod download -json "connectrpc.com/conformance@$version" | node -e '
  let text = ""; process.stdin.on("data", (chunk) => (text += chunk)).on("end", () => console.log(JSON.parse(text).Dir));')
target=test/conformance/proto/connectrpc/conformance/v1
rm -rf test/conformance/proto
mkdir -p "$target"
for file in config.proto service.proto server_compat.proto; do
  # The module cache's files are read-only: copies of our own are not.
  install -m 644 "$dir/proto/connectrpc/conformance/v1/$file" "$target/$file"
done
echo "copy-protos: copied connectrpc.com/conformance@$version protos into $target"
