#!/usr/bin/env bash
# Builds the Python module `chronica` into a fresh virtualenv with pip (the
# maturin build backend comes from PyPI by itself), checks the type stubs
# against the compiled module with mypy.stubtest, and runs the pytest suite
# in tests/python. The last line printed is pytest's own summary.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=target/venv-test

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"

# Release build without debug info: quicker to link, same code.
export CARGO_PROFILE_RELEASE_DEBUG=${CARGO_PROFILE_RELEASE_DEBUG:-0}
# The wheel scripts/test-distributed.sh installs too (with the Kafka
# adapter): built once here, so that `make test`'s second pip install finds
# cargo's work done instead of rebuilding the module for other features.
export MATURIN_PEP517_ARGS="${MATURIN_PEP517_ARGS---features chronica/kafka}"
echo "== pip install ./python (maturin, release build${MATURIN_PEP517_ARGS:+, $MATURIN_PEP517_ARGS})"
"$PY" -m pip install --quiet --disable-pip-version-check ./python
# msgpack: the EventBus "msgpack" serializer (an optional dependency).
"$PY" -m pip install --quiet --disable-pip-version-check pytest mypy msgpack

echo "== stubtest"
(cd tests/python && ../../"$PY" -m mypy.stubtest chronica --allowlist stubtest-allowlist.txt)

echo "== pytest tests/python"
exec "$PY" -m pytest tests/python -q -p no:cacheprovider
