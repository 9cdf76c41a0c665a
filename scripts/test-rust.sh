#!/usr/bin/env bash
# The Rust tests of the engine and of the C ABI crate (the Python crate is
# tested through Python by scripts/test-python.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release -p chronica -p chronica-ffi

# The fiber's model tests under loom (core/src/fiber/loom_tests.rs), in a
# build of their own: the cfg swaps the atomics the fiber is built with.
# A cfg typo would run nothing and pass, so the count is checked.
loom_log=$(mktemp)
trap 'rm -f "$loom_log"' EXIT
RUSTFLAGS="${RUSTFLAGS:-} --cfg chronica_loom" CARGO_TARGET_DIR=target/loom \
    cargo test --release -p chronica --lib fiber::loom_tests 2>&1 | tee "$loom_log"
if ! grep -Eq '^test result: ok\. [1-9][0-9]* passed' "$loom_log"; then
    echo "test-rust.sh: no loom model test ran" >&2
    exit 1
fi
