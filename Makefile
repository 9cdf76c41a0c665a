# Chronica: the two commands are `make demo` and `make test`.
# Each part of the project has its own script under scripts/; this file
# only wires them together.

SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all build demo test test-rust test-c test-python test-distributed test-hub \
        bench bench-rust bench-scale bench-c bench-python bench-hub bench-distributed lint fmt install clean

all: build

build:
	$(CARGO) build --release --workspace

demo:
	scripts/demo.sh

test: lint test-rust test-c test-python test-hub test-distributed

test-rust:
	scripts/test-rust.sh

test-c:
	scripts/test-c.sh

test-python:
	scripts/test-python.sh

test-hub:
	scripts/test-hub.sh

test-distributed:
	scripts/test-distributed.sh

bench: bench-rust bench-scale bench-c bench-python

bench-rust:
	$(CARGO) bench -p chronica --bench w1 --bench bus

# Registration, unregistration, bus off and a topic emit with 10,000 nodes.
bench-scale:
	$(CARGO) bench -p chronica --bench scale

bench-c:
	scripts/bench-c.sh

bench-python:
	scripts/bench-python.sh

bench-hub:
	scripts/bench-hub.sh

bench-distributed:
	scripts/bench-distributed.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	# Two runs: the C ABI crate's library is also named `chronica`.
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --exclude chronica-ffi --no-deps --all-features
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc -p chronica-ffi --no-deps

fmt:
	$(CARGO) fmt --all

install:
	scripts/install.sh "$(PREFIX)"

clean:
	$(CARGO) clean
	rm -rf build artifacts .venv-test
