#!/usr/bin/env bash
# make test-c: the C ABI checks.
#   1. the ffi crate's Rust tests (every export runs through the boundary,
#      the version constant agrees with Cargo.toml, statuses);
#   2. include/chronica.h is exactly what the pinned cbindgen generates
#      (run with --update-header to rewrite it), and its version agrees;
#   3. the C tests and the C++ wrapper test, compiled with
#      -Wall -Wextra -Wpedantic -Werror, under AddressSanitizer +
#      UndefinedBehaviorSanitizer (against libchronica.a) and under valgrind
#      memcheck (against libchronica.so): 0 errors, 0 bytes definitely or
#      indirectly lost;
#   4. the C examples: compiled, and run under valgrind where no broker
#      is needed;
#   5. the install test: make install into a temporary prefix, then build
#      and run the examples against it with pkg-config and with CMake, and
#      check that both name every native library rustc reports for a
#      static link of libchronica.a, and that pkg-config still serves a
#      build when it reaches chronica.pc through symlinks.
set -euo pipefail
source "$(dirname "$0")/lib-c.sh"
cd "$ROOT"

UPDATE_HEADER=0
[[ ${1:-} == --update-header ]] && UPDATE_HEADER=1

BUILD=$TARGET/c-tests
mkdir -p "$BUILD"
PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); printf 'ok   %s\n' "$1"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL %s\n' "$1"; }
# run NAME CMD...: runs a check, records the outcome, never stops the script.
run() {
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}

ensure_packages valgrind pkg-config cmake g++
ensure_cbindgen

step "ffi crate tests"
run "cargo test -p chronica-ffi" "$CARGO" test -q -p chronica-ffi

build_release

step "header"
generate_header "$BUILD/chronica.h"
if [[ $UPDATE_HEADER == 1 ]]; then
    cp "$BUILD/chronica.h" include/chronica.h
    echo "include/chronica.h updated"
fi
run "include/chronica.h matches cbindgen $CBINDGEN_VERSION" diff -u include/chronica.h "$BUILD/chronica.h"

check_version() {
    local v n want
    v=$(workspace_version)
    n=$(sed -n 's/^#define CHRONICA_VERSION_NUMBER \(.*\)$/\1/p' include/chronica.h)
    IFS=. read -r a b c <<<"$v"
    want=$(((a << 16) | (b << 8) | c))
    grep -q "^#define CHRONICA_VERSION \"$v\"" include/chronica.h || { echo "CHRONICA_VERSION is not \"$v\""; return 1; }
    [[ $((n)) == "$want" ]] || { echo "CHRONICA_VERSION_NUMBER $n is not $want ($v)"; return 1; }
}
run "header version agrees with Cargo.toml" check_version

CWARN=(-Wall -Wextra -Wpedantic -Werror)
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
STATIC_LIBS=("$LIBDIR/libchronica.a" $NATIVE_STATIC_LIBS)
# The shared library is found by its soname through this directory.
SODIR=$BUILD/lib
mkdir -p "$SODIR"
SONAME=$(objdump -p "$LIBDIR/libchronica.so" | awk '/SONAME/ {print $2}')
ln -sfn "$LIBDIR/libchronica.so" "$SODIR/${SONAME:-libchronica.so}"
ln -sfn "$LIBDIR/libchronica.so" "$SODIR/libchronica.so"
SHARED_LIBS=(-L"$SODIR" -lchronica -Wl,-rpath,"$SODIR")

export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# --child-silent-after-fork: test_fork.c's child deliberately never frees
# the director it inherited (its threads are not there); only the parent's
# report counts.
VALGRIND=(valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite,indirect --fair-sched=yes --child-silent-after-fork=yes)

# run_program NAME BIN...: runs a test program, shows its output, and
# requires its last line to read "N passed, 0 failed".
run_program() {
    local name=$1 out rc=0
    shift
    out=$("$@" 2>&1) || rc=$?
    printf '%s\n' "$out" | tail -n 20
    if [[ $rc == 0 ]] && printf '%s\n' "$out" | tail -n 1 | grep -Eq '^[0-9]+ passed, 0 failed$'; then
        pass "$name"
    else
        fail "$name (exit $rc)"
    fi
}

step "C tests"
for t in tests/c/test_*.c; do
    name=$(basename "$t" .c)
    if gcc -std=c11 "${CWARN[@]}" -g -O1 -pthread "${SAN[@]}" -Iinclude "$t" -o "$BUILD/$name-asan" "${STATIC_LIBS[@]}" &&
        gcc -std=c11 "${CWARN[@]}" -g -O1 -pthread -Iinclude "$t" -o "$BUILD/$name" "${SHARED_LIBS[@]}"; then
        run_program "$name (ASan+UBSan, static)" "$BUILD/$name-asan"
        run_program "$name (valgrind, shared)" "${VALGRIND[@]}" "$BUILD/$name"
    else
        fail "$name: compile"
    fi
done

step "C examples"
# Every example compiles with the warnings as errors, runs under valgrind
# and must exit 0 (distributed_host on its default memory:// broker; the
# broker suite runs it over real brokers).
for e in examples/c/*.c; do
    name=example-$(basename "$e" .c)
    if ! gcc -std=c11 "${CWARN[@]}" -O1 -pthread -Iinclude "$e" -o "$BUILD/$name" "${SHARED_LIBS[@]}"; then
        fail "$name: compile"
    else
        run "$name runs" "${VALGRIND[@]}" "$BUILD/$name"
    fi
done

step "C++ wrapper test"
for t in tests/cpp/test_*.cpp; do
    name=$(basename "$t" .cpp)
    if g++ -std=c++17 "${CWARN[@]}" -g -O1 -pthread "${SAN[@]}" -Iinclude "$t" -o "$BUILD/$name-asan" "${STATIC_LIBS[@]}" &&
        g++ -std=c++17 "${CWARN[@]}" -g -O1 -pthread -Iinclude "$t" -o "$BUILD/$name" "${SHARED_LIBS[@]}"; then
        run_program "$name (ASan+UBSan, static)" "$BUILD/$name-asan"
        run_program "$name (valgrind, shared)" "${VALGRIND[@]}" "$BUILD/$name"
    else
        fail "$name: compile"
    fi
done

step "install test"
PREFIX_DIR=$(mktemp -d)
trap 'rm -rf "$PREFIX_DIR"' EXIT
install_test() {
    local p=$PREFIX_DIR/prefix b=$PREFIX_DIR/build
    CHRONICA_SKIP_BUILD=1 scripts/install.sh "$p" >/dev/null || return 1
    mkdir -p "$b"
    export PKG_CONFIG_PATH=$p/lib/pkgconfig
    [[ $(pkg-config --modversion chronica) == "$(workspace_version)" ]] || { echo "pkg-config version"; return 1; }
    # pkg-config, shared and static
    gcc -std=c11 "${CWARN[@]}" examples/c/host.c -o "$b/host-pc" $(pkg-config --cflags --libs chronica) \
        -Wl,-rpath,"$p/lib" || return 1
    gcc -std=c11 "${CWARN[@]}" examples/c/host.c -o "$b/host-pc-static" $(pkg-config --cflags chronica) \
        "$p/lib/libchronica.a" $(pkg-config --libs-only-l --static chronica | sed 's/-lchronica//') || return 1
    g++ -std=c++17 "${CWARN[@]}" examples/cpp/host.cpp -o "$b/host-pc-cpp" $(pkg-config --cflags --libs chronica) \
        -Wl,-rpath,"$p/lib" || return 1
    "$b/host-pc" | grep -q "^closed, 0 undelivered" || { echo "host-pc output"; return 1; }
    "$b/host-pc-cpp" | grep -q "^closed, 0 undelivered" || { echo "host-pc-cpp output"; return 1; }
    "$b/host-pc-static" | grep -q "^ledger: 3 orders, total 242" || { echo "host-pc-static output"; return 1; }
    # CMake find_package(chronica) -> chronica::chronica
    cmake -S examples/c -B "$b/cmake-c" -DCMAKE_PREFIX_PATH="$p" >/dev/null || return 1
    cmake --build "$b/cmake-c" >/dev/null || return 1
    "$b/cmake-c/host" | grep -q "^closed, 0 undelivered" || { echo "cmake C host output"; return 1; }
    "$b/cmake-c/host_static" | grep -q "^closed, 0 undelivered" || { echo "cmake static host output"; return 1; }
    cmake -S examples/cpp -B "$b/cmake-cpp" -DCMAKE_PREFIX_PATH="$p" >/dev/null || return 1
    cmake --build "$b/cmake-cpp" >/dev/null || return 1
    "$b/cmake-cpp/host" | grep -q "^closed, 0 undelivered" || { echo "cmake C++ host output"; return 1; }
    readelf -d "$b/cmake-c/host" | grep -q "NEEDED.*libchronica.so.0" || { echo "soname not used"; return 1; }
    static_libs_check "$b" || return 1
    pc_symlink_check "$p" "$b" || return 1
}

# chronica.pc finds the prefix from its own directory (${pcfiledir}): a
# host still builds and runs when PKG_CONFIG_PATH reaches the file through
# a symlinked prefix, a symlinked pkgconfig directory, or a farm of
# symlinks to every installed file (GNU Stow's layout).
pc_symlink_check() {
    local p=$1 b=$2 links=$PREFIX_DIR/links dir libdir
    mkdir -p "$links"
    ln -sfn "$p" "$links/prefix"
    ln -sfn "$p/lib/pkgconfig" "$links/pkgconfig"
    rm -rf "$links/farm" && cp -rs "$p" "$links/farm"
    for dir in "$links/prefix/lib/pkgconfig" "$links/pkgconfig" "$links/farm/lib/pkgconfig"; do
        [[ $(PKG_CONFIG_PATH=$dir pkg-config --modversion chronica) == "$(workspace_version)" ]] ||
            { echo "pkg-config through $dir: version"; return 1; }
        libdir=$(PKG_CONFIG_PATH=$dir pkg-config --variable=libdir chronica)
        gcc -std=c11 "${CWARN[@]}" examples/c/host.c -o "$b/host-linked" \
            $(PKG_CONFIG_PATH=$dir pkg-config --cflags --libs chronica) -Wl,-rpath,"$libdir" ||
            { echo "pkg-config through $dir: build"; return 1; }
        "$b/host-linked" | grep -q "^closed, 0 undelivered" || { echo "pkg-config through $dir: run"; return 1; }
    done
}

# Every native library rustc reports for linking libchronica.a reaches a
# static link through chronica.pc and through the CMake package (whose link
# command for host_static the install test's build left in link.txt).
static_libs_check() {
    local b=$1 report lib pc cmake_link
    report=$("$CARGO" rustc -q -p chronica-ffi --lib --release -- --print native-static-libs 2>&1 |
        sed -n 's/^note: native-static-libs: *//p' | tail -n 1)
    [[ -n $report ]] || { echo "rustc printed no native-static-libs line"; return 1; }
    pc=" $(pkg-config --static --libs chronica) "
    cmake_link=" $(tr '\n' ' ' <"$b/cmake-c/CMakeFiles/host_static.dir/link.txt") "
    for lib in $report; do
        [[ $pc == *" $lib "* ]] || { echo "chronica.pc lacks $lib (rustc: $report)"; return 1; }
        [[ $cmake_link == *" $lib "* ]] || { echo "the CMake package lacks $lib (rustc: $report)"; return 1; }
    done
}
run "install: pkg-config and CMake builds of the examples" install_test

echo "c-abi: $PASSED passed, $FAILED failed"
[[ $FAILED == 0 ]]
