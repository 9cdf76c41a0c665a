"""Registering lets other Python threads run (docs/PYTHON.md, "Callbacks,
threads and the GIL"): ``register`` spawns the node's delivery threads and
takes the director's membership lock with the GIL released.

No lock a registration takes is held by a thread that waits for the GIL
(delivery threads take the GIL with no engine lock held), so holding it
was a stall, not a deadlock: every other Python thread, delivery threads
running callbacks included, waited for each whole registration. The test
shows the stall without timing anything: with a switch interval far
longer than the test, the main thread gives the GIL up only where it
releases it itself, so a thread that wants the GIL runs during a
registration only if the registration releases it."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, Iterator

import pytest

import chronica
from conftest import fresh_distributed, wait_for


def _noop(events: Any) -> None:
    pass


@pytest.fixture
def spinner() -> Iterator[Callable[[], int]]:
    """A thread that counts, sleeping briefly between counts, so that it
    wants the GIL back all the time; yields a reader of its count. The
    switch interval is set very long only while the thread runs."""
    count = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            count[0] += 1
            time.sleep(0.0001)  # lets the GIL go, and wants it back at once

    old = sys.getswitchinterval()
    t = threading.Thread(target=spin, daemon=True)
    t.start()
    wait_for(lambda: count[0] > 0, what="the spinner to start")
    sys.setswitchinterval(1000.0)
    try:
        yield lambda: count[0]
    finally:
        sys.setswitchinterval(old)
        stop.set()
        t.join()


# (what registers, how to make what it registers on, how to register node
# i, how to end it): the nodes are ended as they go, so that the threads of
# at most one are alive; ending one lets the GIL go too, but outside the
# window the test looks at.
CASES = {
    "Director.register": (
        chronica.Director,
        lambda d, i: d.register(f"n{i}", _noop, concurrency=32),
        lambda d, i, _: d.unregister(f"n{i}"),
    ),
    "Distributed.register": (
        fresh_distributed,
        lambda f, i: f.register(f"n{i}", _noop, concurrency=32),
        lambda f, i, _: f.unregister(f"n{i}"),
    ),
    "EventBus.on": (
        chronica.EventBus,
        lambda bus, i: bus.on("t", lambda e: None, concurrency=32),
        lambda bus, i, sub: bus.off(sub, timeout=0),
    ),
}


@pytest.mark.parametrize("what", list(CASES))
def test_other_threads_run_while_a_node_registers(spinner: Callable[[], int], what: str) -> None:
    """Whether the spinner gets the GIL during one registration depends on
    the scheduler (it must wake before the registration ends), so up to
    200 are tried; with the GIL held none ever lets it run."""
    make, register, end = CASES[what]
    target: Any = make()
    try:
        for i in range(200):
            before = spinner()
            node = register(target, i)
            ran = spinner() != before
            end(target, i, node)
            if ran:
                return
        raise AssertionError("no other thread ran during 200 registrations: register held the GIL")
    finally:
        target.close()
