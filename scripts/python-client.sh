#!/usr/bin/env bash
# The Python example client (examples/python): a virtualenv at .tools/python-venv
# with the pinned packages of examples/python/requirements.txt (from PyPI, made
# once and reused while the requirements and the Python are the same), and a
# check that the committed stubs in examples/python/gen import with them.
#
#   bash scripts/python-client.sh            provision (idempotent); prints the venv's python
#   bash scripts/python-client.sh generate   provision, then regenerate examples/python/gen with buf
#   bash scripts/python-client.sh check      provision, then fail when examples/python/gen is stale
#
# The stubs come from proto/ through buf with local plugins only:
# examples/python/plugins/protoc-gen-grpc-tools runs grpcio-tools' generators.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
EXAMPLE="$ROOT/examples/python"
VENV="$ROOT/.tools/python-venv"
PY="$VENV/bin/python"
REQUIREMENTS="$EXAMPLE/requirements.txt"
STAMP="$VENV/.provisioned"
BUF="$ROOT/node_modules/.bin/buf"

die() { echo "python-client: $*" >&2; exit 1; }

command -v python3 >/dev/null || die "Python 3.10 or newer is needed (no 'python3' on PATH; Debian: apt-get install -y python3 python3-venv)"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
  die "Python 3.10 or newer is needed (found $(python3 --version 2>&1))"

# What the venv was made from: a change of either remakes it.
wanted="$(python3 --version 2>&1) $(realpath "$(command -v python3)") $(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"

provision() {
  if [[ -x "$PY" && "$(cat "$STAMP" 2>/dev/null)" == "$wanted" ]]; then return 0; fi
  python3 -c 'import venv, ensurepip' 2>/dev/null ||
    die "Python's venv module (with ensurepip) is missing (Debian: apt-get install -y python3-venv)"
  echo "python-client: making $VENV with $(python3 --version 2>&1) and examples/python/requirements.txt" >&2
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  if ! PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 "$PY" -m pip install -q -r "$REQUIREMENTS" >&2; then
    rm -rf "$VENV"
    die "pip install -r examples/python/requirements.txt failed"
  fi
  echo "$wanted" >"$STAMP"
}

# One provisioning at a time (tools.sh and a developer may run it together).
mkdir -p "$ROOT/.tools"
(
  if command -v flock >/dev/null; then flock 9; fi
  provision
) 9>"$ROOT/.tools/python-venv.lock"

# The committed stubs must import with the pinned packages (the generated code checks the versions).
imports_ok() {
  PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$EXAMPLE/gen" "$PY" -c \
    'import grpc, streamgate.v1.stream_service_pb2_grpc' || die "examples/python/gen does not import with the venv's packages"
}

# buf generate from examples/python, with the venv first on PATH (the plugin runs with its python).
generate() { # [extra buf flags]
  [[ -x "$BUF" ]] || die "buf is missing: run 'npm install' (@bufbuild/buf)"
  (cd "$EXAMPLE" && PATH="$VENV/bin:$PATH" PYTHONDONTWRITEBYTECODE=1 "$BUF" generate --template buf.gen.yaml "$@")
}

case "${1:-}" in
  "")
    imports_ok
    echo "$PY" ;;
  generate)
    generate
    imports_ok
    echo "python-client: regenerated examples/python/gen" ;;
  check)
    fresh="$(mktemp -d)"
    trap 'rm -rf "$fresh"' EXIT
    generate --output "$fresh"
    if ! diff -r -x __pycache__ "$EXAMPLE/gen" "$fresh/gen" >/dev/null; then
      echo "examples/python/gen is stale: run 'bash scripts/python-client.sh generate' and commit it" >&2
      diff -r -x __pycache__ "$EXAMPLE/gen" "$fresh/gen" | head -40 >&2
      exit 1
    fi
    echo "examples/python/gen is up to date" ;;
  *) echo "usage: bash scripts/python-client.sh [generate|check]" >&2; exit 2 ;;
esac
