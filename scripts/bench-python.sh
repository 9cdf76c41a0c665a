#!/usr/bin/env bash
# W1 from Python: chronica with Python callbacks against a pyzmq inproc
# PUB/SUB peer and a pure-Python queue fan-out peer, in the same run.
# Creates (or reuses) target/venv-bench, installs ./python and pyzmq into it,
# prints deliveries per second and the ratios, and appends the figures to
# docs/BENCHMARKS.md under "## Python (issue 4)".
# Environment: EVENTS (default 1000000), ZMQ_EVENTS (default EVENTS),
# BATCH_SIZE (default 64), NO_RECORD=1 to skip docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=target/venv-bench
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
export CARGO_PROFILE_RELEASE_DEBUG=${CARGO_PROFILE_RELEASE_DEBUG:-0}
"$PY" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps ./python
"$PY" -m pip install --quiet --disable-pip-version-check pyzmq

EVENTS=${EVENTS:-1000000}
ARGS=(--events "$EVENTS" --zmq-events "${ZMQ_EVENTS:-$EVENTS}" --batch-size "${BATCH_SIZE:-64}")
if [ -z "${NO_RECORD:-}" ]; then
    OUT=docs/BENCHMARKS.md
    touch "$OUT"
    if ! grep -q '^## Python (issue 4)' "$OUT"; then
        cat >> "$OUT" <<'MD'

## Python (issue 4)

W1 from Python (`make bench-python`, `python/bench/w1.py`): one producer,
registered as a 9th node and used as the source, emits events of 64 bytes
to 8 nodes whose Python callbacks count with `len(events)`. Peers in the
same run: pyzmq inproc PUB/SUB with 8 SUB threads, and a pure-Python fan-out
with one `queue.SimpleQueue` and thread per node. Figures are deliveries per
second (events x 8 over the wall time from the first emit to the last
delivery).
MD
    fi
    ARGS+=(--markdown "$OUT")
fi
exec "$PY" python/bench/w1.py "${ARGS[@]}"
