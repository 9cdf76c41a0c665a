#!/usr/bin/env bash
# End-to-end tests of chronica-hub (tests/hub): builds the binary (a debug
# build: it behaves as the release one, the tests took the same time with
# it, and it compiles in about half the time, which `make test`'s 30-minute
# budget needs; `make bench-hub` measures the release binary), runs the hub
# crate's unit tests, installs Debian's chromium when missing
# (for the status-page test), makes the Python venv target/venv-hub with
# pytest, websockets and PyYAML (test_openapi.py reads
# docs/hub-openapi.yaml), starts NATS (scripts/brokers.sh) for the two-hub
# tests, and runs pytest. The last line printed is pytest's own summary. Every server binds 127.0.0.1 on a port the kernel picks.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
PYTHON=${PYTHON:-python3}
VENV=target/venv-hub
TARGET_DIR=${CARGO_TARGET_DIR:-target}

echo "== cargo build -p chronica-hub"
"$CARGO" build -p chronica-hub
echo "== cargo test -p chronica-hub (unit tests)"
"$CARGO" test -p chronica-hub --quiet

if ! command -v chromium >/dev/null 2>&1; then
    echo "== apt-get install chromium (for the status-page test)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check pytest 'websockets>=13' pyyaml

mkdir -p artifacts
echo "== pytest tests/hub"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$PWD/$TARGET_DIR" ;; esac
export CHRONICA_HUB_BIN="$TARGET_DIR/debug/chronica-hub"
# The distributed tests run two hubs on one NATS JetStream broker.
echo "== scripts/brokers.sh up nats"
scripts/brokers.sh up nats
trap 'scripts/brokers.sh down nats >/dev/null 2>&1 || true' EXIT
eval "$(scripts/brokers.sh env | grep '^CHRONICA_NATS_URL=' | sed 's/^/export /')"
status=0
"$VENV/bin/python" -m pytest tests/hub -q -p no:cacheprovider "$@" || status=$?
exit "$status"
