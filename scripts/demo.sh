#!/usr/bin/env bash
# make demo: the main job on the embedded default, first through the Rust
# API, then through the C API (libchronica installed into a local prefix).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Rust host (examples/rust/demo.rs) =="
cargo run --quiet --release -p chronica --example demo

echo
echo "== C host (examples/c/host.c) against an installed libchronica =="
prefix="$PWD/target/demo-prefix"
scripts/install.sh "$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
mkdir -p target/demo
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror -o target/demo/host examples/c/host.c \
    $(pkg-config --cflags --libs chronica) -Wl,-rpath,"$prefix/lib"
target/demo/host
