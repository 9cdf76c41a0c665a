#!/usr/bin/env bash
# Starts chronica-hub, two table services (east, west) and a streaming node,
# makes a few updates, and shows that both tables agree. Everything binds
# 127.0.0.1 and stops on exit. Needs a built hub (cargo build --release -p
# chronica-hub) and, for the streaming node, the `websockets` package
# (PYTHON may name a venv's python that has it).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(cd ../.. && pwd)
HUB_BIN=${HUB_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/chronica-hub}
PYTHON=${PYTHON:-python3}
export HUB_TOKEN=demo-token HUB=http://127.0.0.1:7711
HUB_TRUST=demo-trust  # the hub's own; webhook nodes get secrets of their own
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT

CHRONICA_HUB_LOG=warn "$HUB_BIN" --listen 127.0.0.1:7711 --trust-token "$HUB_TRUST" --token "$HUB_TOKEN" \
    --allow-host 127.0.0.1 & pids+=($!)
for _ in $(seq 50); do curl -sf "$HUB/health" >/dev/null && break; sleep 0.1; done

"$PYTHON" table_service.py east 7712 & pids+=($!)
sleep 0.5
HUB=ws://127.0.0.1:7711 "$PYTHON" stream_node.py audit 6 & pids+=($!)
sleep 0.5
curl -sf -X PUT --data '{"qty": 3}' http://127.0.0.1:7712/table/apples
curl -sf -X PUT --data '{"qty": 5}' http://127.0.0.1:7712/table/pears

"$PYTHON" table_service.py west 7713 & pids+=($!)   # joins late: pulls east's state
sleep 1
curl -sf -X PUT --data '{"qty": 8}' http://127.0.0.1:7713/table/plums
sleep 0.5
echo "east: $(curl -sf http://127.0.0.1:7712/table)"
echo "west: $(curl -sf http://127.0.0.1:7713/table)"
curl -sf -H "Authorization: Bearer $HUB_TOKEN" "$HUB/v1/stats" | "$PYTHON" -c \
    'import json,sys; [print(n["uid"], n["kind"], n["stats"]) for n in json.load(sys.stdin)["nodes"]]'
