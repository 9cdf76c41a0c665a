#!/usr/bin/env bash
# W1 from Python: chronica with Python callbacks, emitting per event (emit)
# and in runs of RUN events per call (emit_many), against a pyzmq inproc
# PUB/SUB peer and a pure-Python queue fan-out peer, in the same run.
# Creates (or reuses) target/venv-bench, installs ./python and pyzmq into it,
# prints deliveries per second and the ratios, and appends the figures to
# docs/BENCHMARKS.md under "## Python (issue 4)".
# Then the EventBus workload (issue 5, python/bench/bus.py, the workload of
# core/benches/bus.rs): chronica.EventBus next to chronica.Director doing
# the same routing with Python callbacks, in the same process; prints events
# per second and the facade overhead, and appends them under
# "## EventBus (issue 5)".
# Environment: EVENTS (default 1000000), ZMQ_EVENTS (default EVENTS),
# BATCH_SIZE (default 64), RUN (events per emit_many call, default 64), BUS_EVENTS (bus workload emits, default 1000000),
# NO_RECORD=1 to skip docs/BENCHMARKS.md, RECORD="w1 bus" (the default) to
# choose which of the two results are written there.
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
ARGS=(--events "$EVENTS" --zmq-events "${ZMQ_EVENTS:-$EVENTS}" --batch-size "${BATCH_SIZE:-64}" --run "${RUN:-64}")
BUS_ARGS=(--events "${BUS_EVENTS:-1000000}")
RECORD=${RECORD:-w1 bus}
if [ -z "${NO_RECORD:-}" ] && [[ " $RECORD " == *" bus "* ]]; then
    BUS_ARGS+=(--markdown docs/BENCHMARKS.md)
fi
if [ -z "${NO_RECORD:-}" ] && [[ " $RECORD " == *" w1 "* ]]; then
    OUT=docs/BENCHMARKS.md
    touch "$OUT"
    if ! grep -q '^## Python (issue 4)' "$OUT"; then
        cat >> "$OUT" <<'MD'

## Python (issue 4)

W1 from Python (`make bench-python`, `python/bench/w1.py`): one producer,
registered as a 9th node and used as the source, emits events of 64 bytes
to 8 nodes whose Python callbacks count with `len(events)`, once with one
`emit` per event and once with `emit_many` of runs of 64. Peers in the
same run: pyzmq inproc PUB/SUB with 8 SUB threads, and a pure-Python fan-out
with one `queue.SimpleQueue` and thread per node. Figures are deliveries per
second (events x 8 over the wall time from the first emit to the last
delivery).
MD
    fi
    ARGS+=(--markdown "$OUT")
fi
"$PY" python/bench/w1.py "${ARGS[@]}"
echo
exec "$PY" python/bench/bus.py "${BUS_ARGS[@]}"
