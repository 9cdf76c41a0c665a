#!/usr/bin/env bash
# The hub benchmark: starts chronica-hub on 127.0.0.1, then runs
# hub/examples/hub_bench.rs, which starts 8 minimal webhook receivers and
# measures, in one run, direct posting by a plain HTTP client, the hub's
# end-to-end rate for 100,000 events of 64 bytes, and emit-to-receipt
# latency at a steady 10,000 events/s. Figures go to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$PWD/$TARGET_DIR" ;; esac
EVENTS=${EVENTS:-100000}
BATCH=${BATCH:-256}

"$CARGO" build --release -p chronica-hub --bin chronica-hub --example hub_bench

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TOKEN=bench-token
LOG=$(mktemp -t chronica-hub-bench.XXXXXX.log)
CHRONICA_HUB_LOG=warn "$TARGET_DIR/release/chronica-hub" --listen "127.0.0.1:$PORT" \
    --trust-token bench-trust --token "$TOKEN" --allow-host 127.0.0.1 \
    --batch-size "$BATCH" --body-limit 16777216 >"$LOG" 2>&1 &
HUB=$!
trap 'kill "$HUB" 2>/dev/null; wait "$HUB" 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
    sleep 0.1
done

echo "== chronica-hub bench: $EVENTS events of 64 bytes, 8 webhook nodes, batch size $BATCH, $(nproc) cores"
"$TARGET_DIR/release/examples/hub_bench" --hub "http://127.0.0.1:$PORT" --token "$TOKEN" \
    --events "$EVENTS" --nodes 8 --rate 10000 --steady-secs 5
