#!/usr/bin/env bash
# make bench-distributed: W1 across two processes through Kafka, NATS
# JetStream and Redis Streams, against each broker's raw client in the same
# run (core/benches/distributed.rs). Builds the bench first, starts the
# brokers with scripts/brokers.sh, and stops them on exit whatever happened.
#
#   scripts/bench-distributed.sh [BROKER...]     (default: kafka nats redis)
# Environment: EVENTS (default 1000000; e.g. EVENTS=200000 for a quick run),
# CASE_TIMEOUT_S (default 900), CARGO (default cargo).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO="${CARGO:-cargo}"
export EVENTS="${EVENTS:-1000000}"
brokers=("$@")
((${#brokers[@]})) || brokers=(kafka nats redis)

bench=("$CARGO" bench -p chronica --features kafka,nats,redis --bench distributed)
# Compile before any broker starts: on a small machine the two would compete.
"${bench[@]}" --no-run

started=0
cleanup() {
    if ((started)); then scripts/brokers.sh down "${brokers[@]}" || true; fi
}
trap cleanup EXIT INT TERM
started=1
scripts/brokers.sh up "${brokers[@]}"
eval "$(scripts/brokers.sh env | sed 's/^/export /')"

echo "== $(date '+%Y-%m-%d %H:%M'), load average $(cut -d' ' -f1-3 /proc/loadavg), EVENTS=$EVENTS"
"${bench[@]}" -- "${brokers[@]}"
