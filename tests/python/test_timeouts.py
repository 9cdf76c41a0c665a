"""Timeouts and other durations in seconds: every function that takes one
draws the same line (docs/PYTHON.md, "Errors"). Below 2**64 seconds a
value fits the engine's Duration and is taken; from there on it is
InvalidArgumentError naming the argument, and a refused close closes
nothing. The bus's ``off`` and ``close`` are checked against the same
values in test_bus_arguments.py."""

from __future__ import annotations

from typing import Any, Callable, Dict

import pytest

import chronica
from conftest import build_distributed

Bad = chronica.InvalidArgumentError


def _message(call: Callable[[], Any]) -> str:
    with pytest.raises(Bad) as info:
        call()
    return str(info.value)


TOO_LONG = [2.0**64, 2**64, 1e300]


@pytest.mark.parametrize("value", TOO_LONG)
def test_every_timeout_refuses_what_a_duration_cannot_hold(
    director: chronica.Director, fabric: chronica.Distributed, value: Any
) -> None:
    """Director.close, Distributed's waits and settings, and the bus's off
    and close (test_bus_arguments.py) draw the same line: below 2**64
    seconds is taken, from there on InvalidArgumentError naming the
    argument, and a refused close closes nothing."""
    calls: Dict[str, Callable[[], Any]] = {
        "timeout": lambda: director.close(value),
        "block_timeout": lambda: chronica.Director(block_timeout=value),
        "initial": lambda: chronica.Retry(initial=value, max=value),
        "dedup_window": lambda: build_distributed("dedup_window", value),
        "connect_timeout": lambda: build_distributed("connect_timeout", value),
        "group_watch_interval": lambda: build_distributed("group_watch_interval", value),
    }
    for name, call in calls.items():
        text = _message(call)
        assert text.startswith(f"{name} must be less than 2**64 seconds, got "), text
    for wait in (fabric.flush, fabric.close):
        text = _message(lambda: wait(value))
        assert text.startswith("timeout must be less than 2**64 seconds, got "), text
    assert not director.closed and not fabric.closed


def test_the_largest_timeouts_are_taken(director: chronica.Director, fabric: chronica.Distributed) -> None:
    largest = 2.0**64 - 2048  # the largest float below 2**64
    chronica.Director(block_timeout=largest).close()
    assert fabric.flush(largest)
    assert fabric.close(largest) == 0
    assert director.close(largest) == 0
