#!/usr/bin/env bash
# make bench-c: W1 (SPEC section 6) through the C API, next to the Rust API
# W1 (core/benches/w1.rs, case "chronica") and a libzmq peer (inproc PUB,
# 8 SUB threads, HWM 0), all in the same run. Each is run BENCH_ROUNDS times
# (default 3), interleaved, and the median rate is reported.
# Targets (issue 3): C >= 90% of Rust; C >= 30x the libzmq peer. The
# headline C figure uses the SPEC's chronica_director_emit (one copy of the
# payload per emit); an extra line shows chronica_director_emit_payload
# (the payload copied once into a chronica_payload and shared, as the Rust
# W1 shares one Bytes), which is not the headline. Another extra line
# shows chronica_director_emit_many with runs of 64 messages per call
# (each payload still copied, as by chronica_director_emit; 64 is the
# batch of the crossbeam peer in core/benches/w1.rs), with its ratios to
# the Rust and libzmq figures.
# Then the EventBus workload (issue 5, ffi/bench/bus_c.c, the workload of
# core/benches/bus.rs): chronica_bus_* next to chronica_director_* doing the
# same routing, in the same process, BENCH_ROUNDS times; the median rates
# and the facade overhead are reported (target: at most 15%).
# BUS_EVENTS (default 1000000) changes the bus workload's emit count.
set -euo pipefail
source "$(dirname "$0")/lib-c.sh"
cd "$ROOT"

ROUNDS=${BENCH_ROUNDS:-3}
BUILD=$TARGET/c-bench
mkdir -p "$BUILD"

ensure_packages libzmq3-dev pkg-config
build_release
step "building the W1 programs"
gcc -std=c11 -O2 -Wall -Wextra -Wpedantic -Werror -pthread -Iinclude ffi/bench/w1_c.c -o "$BUILD/w1_c" \
    "$LIBDIR/libchronica.a" $NATIVE_STATIC_LIBS
gcc -std=c11 -O2 -Wall -Wextra -Wpedantic -Werror -pthread ffi/bench/w1_zmq.c -o "$BUILD/w1_zmq" \
    $(pkg-config --cflags --libs libzmq)
gcc -std=c11 -O2 -Wall -Wextra -Wpedantic -Werror -pthread -Iinclude ffi/bench/bus_c.c -o "$BUILD/bus_c" \
    "$LIBDIR/libchronica.a" $NATIVE_STATIC_LIBS
"$CARGO" bench -q -p chronica --bench w1 --no-run 2>/dev/null || true

# rate LINE: deliveries per second from "RESULT name deliveries seconds kib"
rate() { awk '{printf "%.0f %s\n", $3 / $4, $5}'; }
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

declare -A RATES KIB
for ((r = 1; r <= ROUNDS; r++)); do
    step "round $r of $ROUNDS"
    line=$("$BUILD/w1_c" | grep '^RESULT')
    read -r v k < <(rate <<<"$line"); RATES[c]+="$v "; KIB[c]=$k
    echo "  C API    $v deliveries/s"
    line=$("$BUILD/w1_c" payload | grep '^RESULT')
    read -r v k < <(rate <<<"$line"); RATES[cpay]+="$v "; KIB[cpay]=$k
    echo "  C API, emit_payload $v deliveries/s (extra)"
    line=$("$BUILD/w1_c" many | grep '^RESULT')
    read -r v k < <(rate <<<"$line"); RATES[cmany]+="$v "; KIB[cmany]=$k
    echo "  C API, emit_many of 64 $v deliveries/s (extra)"
    if line=$("$CARGO" bench -q -p chronica --bench w1 -- chronica 2>/dev/null | grep '^RESULT chronica '); then
        read -r v k < <(rate <<<"$line"); RATES[rust]+="$v "; KIB[rust]=$k
        echo "  Rust API $v deliveries/s"
    else
        echo "  Rust API W1 (core/benches/w1.rs, case chronica) not available"
    fi
    line=$("$BUILD/w1_zmq" | grep '^RESULT')
    read -r v k < <(rate <<<"$line"); RATES[zmq]+="$v "; KIB[zmq]=$k
    echo "  libzmq   $v deliveries/s"
done

med() { tr ' ' '\n' <<<"${RATES[$1]:-}" | grep -v '^$' | median; }
C=$(med c)
CP=$(med cpay)
CM=$(med cmany)
Z=$(med zmq)
R=$(med rust || true)
echo
printf '%-10s %14s %10s\n' "W1 (median of $ROUNDS)" "deliveries/s" "peak MiB"
printf '%-10s %14s %10.1f\n' "C API" "$C" "$(awk "BEGIN{print ${KIB[c]}/1024}")"
printf '%-10s %14s %10.1f  (extra: chronica_director_emit_payload)\n' "C payload" "$CP" "$(awk "BEGIN{print ${KIB[cpay]}/1024}")"
printf '%-10s %14s %10.1f  (extra: chronica_director_emit_many, runs of 64)\n' "C emit_many" "$CM" "$(awk "BEGIN{print ${KIB[cmany]}/1024}")"
[[ -n $R ]] && printf '%-10s %14s %10.1f\n' "Rust API" "$R" "$(awk "BEGIN{print ${KIB[rust]}/1024}")"
printf '%-10s %14s %10.1f\n' "libzmq" "$Z" "$(awk "BEGIN{print ${KIB[zmq]}/1024}")"
[[ -n $R ]] && awk "BEGIN{printf \"ratio C / Rust   = %.2f (target >= 0.90)\n\", $C / $R}"
awk "BEGIN{printf \"ratio C / libzmq = %.1fx (target >= 30x)\n\", $C / $Z}"
[[ -n $R ]] && awk "BEGIN{printf \"extra: C emit_payload / Rust = %.2f\n\", $CP / $R}"
[[ -n $R ]] && awk "BEGIN{printf \"extra: C emit_many / Rust = %.2f\n\", $CM / $R}"
awk "BEGIN{printf \"extra: C emit_many / libzmq = %.1fx\n\", $CM / $Z}"
awk "BEGIN{printf \"extra: C emit_many / C emit = %.2f\n\", $CM / $C}"

# The EventBus workload (issue 5): raw director, bus, bus with a content type.
echo
step "EventBus workload through the C API (${BUS_EVENTS:-1000000} emits, $ROUNDS rounds)"
declare -A BSECS
for ((r = 1; r <= ROUNDS; r++)); do
    step "bus round $r of $ROUNDS"
    out=$("$BUILD/bus_c")
    grep -v '^RESULT' <<<"$out"
    while read -r _ k n s; do
        BSECS[$k]+="$s "
        BUS_N=$n
    done < <(grep '^RESULT' <<<"$out")
done
# bmed CASE: the median seconds of that case over the rounds
bmed() { tr ' ' '\n' <<<"${BSECS[$1]}" | grep -v '^$' | median; }
RAW=$(bmed raw)
echo
printf '%-28s %12s %14s %9s\n' "bus, C (median of $ROUNDS)" "emits/s" "deliveries/s" "vs raw"
for k in raw bus bus-ct; do
    case $k in
        raw) name="raw director (C)" ;;
        bus) name="bus, emit (bytes)" ;;
        bus-ct) name="bus, emit_with (json ct)" ;;
    esac
    awk -v name="$name" -v n="$BUS_N" -v s="$(bmed "$k")" -v raw="$RAW" \
        'BEGIN{printf "%-28s %12.0f %14.0f %+8.1f%%\n", name, n / s, 6 * n / s, (s / raw - 1) * 100}'
done
awk -v s="$(bmed bus)" -v raw="$RAW" \
    'BEGIN{printf "facade overhead, C: %+.1f%% (target <= 15%%)\n", (s / raw - 1) * 100}'
