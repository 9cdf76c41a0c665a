"""Shared helpers for the chronica tests: a thread-safe event recorder and
polling with a generous deadline (no timed speed assertions anywhere)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Iterator, List

import pytest

import chronica

DEADLINE = 20.0


def wait_for(predicate: Callable[[], bool], timeout: float = DEADLINE, what: str = "condition") -> None:
    """Polls ``predicate`` until it is true or fails the test at ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def settle(d: chronica.Director, uid: str, timeout: float = DEADLINE) -> chronica.NodeStats:
    """Waits until node ``uid`` has nothing pending and returns its stats."""
    wait_for(lambda: d.stats(uid).pending == 0, timeout, f"{uid} to drain")
    return d.stats(uid)


def fresh_distributed(**kwargs: Any) -> chronica.Distributed:
    """A Distributed on a memory hub of its own (no other instance)."""
    return chronica.Distributed(f"memory://solo-{uuid.uuid4().hex}", trust_token="t", **kwargs)


def build_distributed(name: str, value: Any) -> None:
    """Builds (and closes) a Distributed with setting ``name`` = ``value``."""
    fresh_distributed(**{name: value}).close()


@pytest.fixture
def fabric() -> Iterator[chronica.Distributed]:
    """A Distributed alone on its hub, closed after the test if still open."""
    f = fresh_distributed()
    yield f
    if not f.closed:
        f.close()


class Recorder:
    """A callback that records every event it receives (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: List[chronica.Event] = []
        self.calls = 0

    def __call__(self, events: List[chronica.Event]) -> None:
        with self.lock:
            self.calls += 1
            self.events.extend(events)

    def user(self) -> List[chronica.Event]:
        with self.lock:
            return [e for e in self.events if e.kind == "user"]

    def root(self) -> List[chronica.Event]:
        with self.lock:
            return [e for e in self.events if e.kind == "root"]

    def payloads(self) -> List[bytes]:
        return [e.payload for e in self.user()]

    def wait_user(self, n: int, timeout: float = DEADLINE) -> List[chronica.Event]:
        wait_for(lambda: len(self.user()) >= n, timeout, f"{n} user events")
        return self.user()


@pytest.fixture
def director() -> Iterator[chronica.Director]:
    """A director with a short retry policy, closed after the test."""
    d = chronica.Director(retry=chronica.Retry(initial=0.01, max=0.05, jitter=0.0))
    yield d
    if not d.closed:
        d.close(5.0)


@pytest.fixture
def recorder_factory() -> Callable[[], Recorder]:
    return Recorder
