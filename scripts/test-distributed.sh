#!/usr/bin/env bash
# The distributed suite: starts the brokers (scripts/brokers.sh up), runs
# the Rust tests of core/tests/distributed against Kafka, NATS and Redis
# (one at a time: the fault tests kill and restart the broker), and stops
# the brokers on exit, whatever happened.
#
#   scripts/test-distributed.sh [extra cargo test args]
# Environment: CARGO (default cargo), FEATURES (default kafka,nats,redis).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO="${CARGO:-cargo}"
FEATURES="${FEATURES:-kafka,nats,redis}"

started=0
cleanup() {
    if ((started)); then scripts/brokers.sh down || true; fi
}
trap cleanup EXIT INT TERM

# Build first, so broker start-up and compilation do not overlap on a
# small machine and a build error is reported before any broker starts.
"$CARGO" test -p chronica --features "$FEATURES" --test distributed --no-run

brokers=()
for f in ${FEATURES//,/ }; do brokers+=("$f"); done
started=1
scripts/brokers.sh up "${brokers[@]}"
eval "$(scripts/brokers.sh env | sed 's/^/export /')"

"$CARGO" test -p chronica --features "$FEATURES" --test distributed "$@" -- --test-threads=1
