#!/usr/bin/env bash
# The Rust tests of the engine and of the C ABI crate (the Python crate is
# tested through Python by scripts/test-python.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release -p chronica -p chronica-ffi
