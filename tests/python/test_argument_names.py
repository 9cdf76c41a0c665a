"""The numeric arguments of the compiled API (docs/PYTHON.md, "Errors"):
a bool where a count or a float goes is a TypeError, and every error of a
numeric argument names the argument in its message.

pyo3 names the argument of a failed conversion only in a note ("while
processing 'queue_capacity'"), and only on Python 3.11+, where notes
exist; so these tests read ``str(error)`` alone, which is what every
supported Python shows."""

from __future__ import annotations

from typing import Any, Callable, List, Tuple

import pytest

import chronica
from conftest import Recorder, build_distributed

Bad = chronica.InvalidArgumentError
Call = Callable[[str, Any], Any]


# (what, how to call it with the argument, the argument's name)
INT_ARGUMENTS: List[Tuple[str, Call, str]] = [
    *[("Director", lambda n, v: chronica.Director(**{n: v}), n) for n in ("queue_capacity", "root_capacity", "batch_size")],
    *[
        ("Distributed", build_distributed, n)
        for n in ("dedup_capacity", "outbox_capacity", "max_in_flight", "queue_capacity", "root_capacity", "batch_size")
    ],
    ("EventBus", lambda n, v: chronica.EventBus(**{n: v}), "queue_capacity"),
    ("Retry", lambda n, v: chronica.Retry(**{n: v}), "max_retries"),
]
REGISTER_INTS = ["concurrency", "queue_capacity", "root_capacity"]

FLOAT_ARGUMENTS: List[Tuple[str, Call, str]] = [
    ("Director", lambda n, v: chronica.Director(**{n: v}), "block_timeout"),
    *[("Retry", lambda n, v: chronica.Retry(**{n: v}), n) for n in ("initial", "max", "multiplier", "jitter")],
    *[
        ("Distributed", build_distributed, n)
        for n in ("dedup_window", "connect_timeout", "group_watch_interval", "block_timeout")
    ],
]


def _message(call: Callable[[], Any], error: type) -> str:
    with pytest.raises(error) as info:
        call()
    if error is TypeError:
        assert not isinstance(info.value, (chronica.ChronicaError, ValueError)), repr(info.value)
    return str(info.value)


def _ids(rows: List[Tuple[str, Call, str]]) -> List[str]:
    return [f"{what}-{name}" for what, _, name in rows]


# -- bools are not counts --------------------------------------------------


@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize("what, call, name", INT_ARGUMENTS, ids=_ids(INT_ARGUMENTS))
def test_a_bool_is_not_a_count(what: str, call: Call, name: str, value: bool) -> None:
    """``Retry(max_retries=True)`` made max_retries=1: bool is an int
    subclass, but a bool where a count goes is a mistake."""
    text = _message(lambda: call(name, value), TypeError)
    assert text.startswith(f"{name} must be an int") and text.endswith("got bool"), text


@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize("name", REGISTER_INTS)
@pytest.mark.parametrize("kind", ["Director", "Distributed"])
def test_register_refuses_bool_counts(
    director: chronica.Director, fabric: chronica.Distributed, kind: str, name: str, value: bool
) -> None:
    target: Any = director if kind == "Director" else fabric
    text = _message(lambda: target.register("a", Recorder(), **{name: value}), TypeError)
    assert text.startswith(f"{name} must be an int") and text.endswith("got bool"), text
    assert target.nodes() == []


def test_a_bool_is_not_a_retry_count_in_a_bus_retry_dict() -> None:
    with chronica.EventBus() as bus:
        text = _message(lambda: bus.on("t", lambda e: None, retry={"max_retries": True}), TypeError)
        assert text == "retry setting 'max_retries' must be an int or None, got bool"
        assert bus.subscriptions == [] and bus.director.nodes() == []


def test_ints_and_int_likes_are_still_taken(director: chronica.Director) -> None:
    class Four:
        def __index__(self) -> int:
            return 4

    assert chronica.Retry(max_retries=Four()).max_retries == 4  # type: ignore[arg-type]
    assert chronica.Retry(max_retries=0).max_retries == 0
    director.register("a", Recorder(), concurrency=Four(), queue_capacity=Four())  # type: ignore[arg-type]
    assert director.nodes() == ["a"]
    chronica.Director(queue_capacity=Four(), batch_size=Four()).close()  # type: ignore[arg-type]


# -- every numeric error names its argument in the message ------------------


@pytest.mark.parametrize("value", ["8", 8.0, None])
@pytest.mark.parametrize("what, call, name", INT_ARGUMENTS, ids=_ids(INT_ARGUMENTS))
def test_a_count_of_a_wrong_type_is_named(what: str, call: Call, name: str, value: Any) -> None:
    if value is None and name == "max_retries":
        return  # None is max_retries' default: retry forever
    text = _message(lambda: call(name, value), TypeError)
    assert text.startswith(f"{name} must be an int") and text.endswith(f"got {type(value).__name__}"), text


@pytest.mark.parametrize("value", [2**64, -(2**70)])
@pytest.mark.parametrize("what, call, name", INT_ARGUMENTS, ids=_ids(INT_ARGUMENTS))
def test_a_count_out_of_range_is_named(what: str, call: Call, name: str, value: int) -> None:
    assert name in _message(lambda: call(name, value), Bad)


@pytest.mark.parametrize("value", ["8", None, True])
@pytest.mark.parametrize("name", REGISTER_INTS)
def test_register_names_its_counts(director: chronica.Director, name: str, value: Any) -> None:
    if value is None and name in ("queue_capacity", "root_capacity"):
        return  # None is its default: the director's capacity
    text = _message(lambda: director.register("a", Recorder(), **{name: value}), TypeError)
    assert text.startswith(f"{name} must be an int"), text
    assert name in _message(lambda: director.register("a", Recorder(), **{name: 2**64}), Bad)
    assert director.nodes() == []


@pytest.mark.parametrize("value", ["1.5", None, [1]])
@pytest.mark.parametrize("what, call, name", FLOAT_ARGUMENTS, ids=_ids(FLOAT_ARGUMENTS))
def test_a_number_of_a_wrong_type_is_named(what: str, call: Call, name: str, value: Any) -> None:
    text = _message(lambda: call(name, value), TypeError)
    assert text == f"{name} must be a number, got {type(value).__name__}", text


@pytest.mark.parametrize("what, call, name", FLOAT_ARGUMENTS, ids=_ids(FLOAT_ARGUMENTS))
def test_a_number_too_large_for_a_float_is_named(what: str, call: Call, name: str) -> None:
    assert _message(lambda: call(name, 10**400), Bad) == f"{name} is out of range for a float"


def test_close_and_flush_name_their_timeout(director: chronica.Director, fabric: chronica.Distributed) -> None:
    for close in (director.close, fabric.flush, fabric.close):
        assert _message(lambda: close("5"), TypeError) == "timeout must be a number, got str"  # type: ignore[arg-type]
        assert _message(lambda: close(10**400), Bad) == "timeout is out of range for a float"
    assert not director.closed and not fabric.closed


# -- bools are not numbers either -------------------------------------------


class _Targets:
    """What the float-taking methods are called on: a director, a fabric,
    and a bus sharing the director with one subscription."""

    def __init__(self, director: chronica.Director, fabric: chronica.Distributed) -> None:
        self.director, self.fabric = director, fabric
        self.bus = chronica.EventBus(director)
        self.sub = self.bus.on("t", lambda e: None)


FloatCall = Callable[[_Targets, str, Any], Any]
RETRY_FLOATS = ("initial", "max", "multiplier", "jitter")

# (where, how to call it with argument ``name`` = the value, the argument's
# name, how its message names it): every float parameter of the public API
# (and of the exit hooks), compiled or Python.
FLOAT_PARAMETERS: List[Tuple[str, FloatCall, str, str]] = [
    ("Director", lambda t, n, v: chronica.Director(**{n: v}), "block_timeout", "block_timeout"),
    ("Director.close", lambda t, n, v: t.director.close(**{n: v}), "timeout", "timeout"),
    *[("Retry", lambda t, n, v: chronica.Retry(**{n: v}), n, n) for n in RETRY_FLOATS],
    *[
        ("Distributed", lambda t, n, v: build_distributed(n, v), n, n)
        for n in ("dedup_window", "connect_timeout", "group_watch_interval", "block_timeout")
    ],
    ("Distributed", lambda t, n, v: build_distributed(n, v), "root_max_age", "root_max_age"),
    ("Distributed.flush", lambda t, n, v: t.fabric.flush(**{n: v}), "timeout", "timeout"),
    ("Distributed.close", lambda t, n, v: t.fabric.close(**{n: v}), "timeout", "timeout"),
    ("EventBus.off", lambda t, n, v: t.bus.off(t.sub, **{n: v}), "timeout", "timeout"),
    ("EventBus.close", lambda t, n, v: t.bus.close(**{n: v}), "timeout", "timeout"),
    *[
        ("EventBus.on", lambda t, n, v: t.bus.on("t", lambda e: None, retry={n: v}), n, f"retry setting {n!r}")
        for n in RETRY_FLOATS
    ],
    ("_close_all", lambda t, n, v: chronica._close_all(**{n: v}), "timeout", "timeout"),
    ("_close_all_distributed", lambda t, n, v: chronica._close_all_distributed(**{n: v}), "timeout", "timeout"),
]


@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize(
    "what, call, name, named", FLOAT_PARAMETERS, ids=[f"{w}-{n}" for w, _, n, _ in FLOAT_PARAMETERS]
)
def test_a_bool_is_not_a_number(
    director: chronica.Director,
    fabric: chronica.Distributed,
    what: str,
    call: FloatCall,
    name: str,
    named: str,
    value: bool,
) -> None:
    """A float argument used to take a bool as 1.0 or 0.0 (``close(True)``
    waited a second, ``Retry(jitter=True)`` spread delays by 100 %): a flag
    in the wrong place, refused as a count refuses one, before anything
    changes."""
    t = _Targets(director, fabric)
    text = _message(lambda: call(t, name, value), TypeError)
    want = "a number or None" if name == "root_max_age" else "a number"
    assert text == f"{named} must be {want}, got bool", text
    assert not director.closed and not fabric.closed and not t.bus.closed
    assert t.bus.subscriptions == [t.sub] and director.nodes() == [t.sub.uid]


@pytest.mark.parametrize("value", [1, 1.0])
@pytest.mark.parametrize("name", RETRY_FLOATS)
def test_ints_and_floats_are_still_numbers(name: str, value: Any) -> None:
    assert getattr(chronica.Retry(**{name: value}), name) == 1.0
