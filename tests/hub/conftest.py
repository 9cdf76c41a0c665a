"""Fixtures: a fresh chronica-hub per test and webhook receivers."""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from hubkit import Hub, Receiver  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"


@pytest.fixture(scope="session")
def hub_bin() -> str:
    path = os.environ.get("CHRONICA_HUB_BIN", str(ROOT / "target" / "debug" / "chronica-hub"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"no chronica-hub binary at {path} (run scripts/test-hub.sh)")
    return path


@pytest.fixture
def hub(hub_bin, tmp_path):
    h = Hub(hub_bin, log_path=str(tmp_path / "hub.log"))
    yield h
    h.stop()


@pytest.fixture
def receivers():
    """Makes webhook receivers (exactly-once ones unless told otherwise);
    at teardown closes them and raises what any of their server threads
    recorded."""
    made: list[Receiver] = []

    def make(exactly_once: bool = True) -> Receiver:
        r = Receiver(exactly_once)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
    for r in made:
        r.check()
