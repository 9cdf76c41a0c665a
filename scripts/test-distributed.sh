#!/usr/bin/env bash
# The distributed suite: starts the brokers (scripts/brokers.sh up), runs
# the Rust tests of core/tests/distributed against Kafka, NATS and Redis
# (one at a time: the fault tests kill and restart the broker), then the
# host tests of tests/distributed (pytest: two Python processes, and a C
# host with a Python host, on each broker), and stops the brokers on exit,
# whatever happened.
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

# The hosts of tests/distributed, in two languages:
# * the Python module in a virtualenv, a release build like the one
#   scripts/test-python.sh makes, plus the Kafka adapter when kafka is in
#   $FEATURES: python/Cargo.toml enables only nats and redis (librdkafka
#   would add minutes to every pip install), so the build asks cargo for
#   the core crate's `kafka` feature (maturin passes MATURIN_PEP517_ARGS on);
# * the C peer against a debug libchronica with the adapters of $FEATURES
#   (it shares core's build with the Rust tests above). The library is
#   copied, not linked to: target/debug is shared with other builds.
# nats-py is the foreign NATS client of the tests (redis-cli and Kafka's
# console tools come with the brokers).
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="$TARGET/venv-distributed"
HOSTS="$TARGET/distributed-hosts"
rm -rf "$VENV" "$HOSTS"
mkdir -p "$HOSTS/lib"
"${PYTHON:-python3}" -m venv "$VENV"
export CARGO_PROFILE_RELEASE_DEBUG=${CARGO_PROFILE_RELEASE_DEBUG:-0}
maturin_args=""
[[ ",$FEATURES," == *,kafka,* ]] && maturin_args="--features chronica/kafka"
echo "== pip install ./python ${maturin_args:+($maturin_args)}"
MATURIN_PEP517_ARGS="$maturin_args" \
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check ./python
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check pytest nats-py
"$CARGO" build -p chronica-ffi --features "$FEATURES"
cp "$TARGET/debug/libchronica.so" "$HOSTS/lib/libchronica.so"
soname=$(objdump -p "$HOSTS/lib/libchronica.so" | awk '/SONAME/ {print $2}')
[[ -z $soname || $soname == libchronica.so ]] || ln -sfn libchronica.so "$HOSTS/lib/$soname"
# The C peer runs under AddressSanitizer and UndefinedBehaviorSanitizer
# (with leak checking), as the C suite's programs do; the example as users
# build it.
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g)
for c in tests/distributed/c_peer.c examples/c/distributed_host.c; do
    flags=()
    [[ $c == *c_peer.c ]] && flags=("${SAN[@]}")
    "${CC:-gcc}" -std=c11 -Wall -Wextra -Wpedantic -Werror -O1 -pthread "${flags[@]}" -Iinclude "$c" \
        -o "$HOSTS/$(basename "$c" .c)" -L"$HOSTS/lib" -lchronica -Wl,-rpath,"$HOSTS/lib"
done
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$ROOT/tests/distributed/lsan.supp

brokers=()
for f in ${FEATURES//,/ }; do brokers+=("$f"); done
started=1
scripts/brokers.sh up "${brokers[@]}"
eval "$(scripts/brokers.sh env | sed 's/^/export /')"

rc=0
"$CARGO" test -p chronica --features "$FEATURES" --test distributed "$@" -- --test-threads=1 || rc=$?

echo "== host tests (tests/distributed)"
CHRONICA_BROKERS="$FEATURES" CHRONICA_C_PEER="$HOSTS/c_peer" CHRONICA_C_EXAMPLE="$HOSTS/distributed_host" \
    CHRONICA_KAFKA_LIBS="${CHRONICA_BROKERS_CACHE:-$ROOT/target/brokers}/kafka-${KAFKA_VERSION:-3.9.1}/libs" \
    "$VENV/bin/python" -m pytest tests/distributed -q -p no:cacheprovider || rc=$?
exit "$rc"
