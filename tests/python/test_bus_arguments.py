"""Bad arguments to the Python API (docs/PYTHON.md, "Errors"): a wrong type
raises TypeError naming the parameter, a bad value InvalidArgumentError (a
ValueError) or the right ChronicaError subclass, and a refused call changes
nothing: no subscription, no node, nothing emitted, the bus still open.

Most cases are rows of a table: (call, bad argument, expected exception,
message fragment). The fragment is looked for in the message and in the
notes pyo3 adds ("while processing 'topic'")."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, Type

import pytest

import chronica

Bad = chronica.InvalidArgumentError


def _handler(event: Any) -> None:
    pass


async def _async_handler(event: Any) -> None:
    pass


class _AsyncCallable:
    """Callable whose ``__call__`` is a coroutine function: calling it only
    makes a coroutine, so as a bus handler it would never run."""

    async def __call__(self, event: Any) -> None:
        pass


class _Four:
    """An int-like value (``__index__``), as numpy's integers are."""

    def __index__(self) -> int:
        return 4


def _id(args: Any) -> str:
    """A test id for a row's arguments: callables and objects by type name."""

    def show(v: Any) -> str:
        if callable(v) or type(v).__repr__ is object.__repr__:
            return getattr(v, "__name__", type(v).__name__)
        return repr(v) if len(repr(v)) < 30 else f"{type(v).__name__}(...)"

    return ",".join(f"{k}={show(v)}" for k, v in args.items())


def _text(error: BaseException) -> str:
    return " ".join([str(error), *getattr(error, "__notes__", [])])


def _raises(call: Callable[[], Any], error: Type[BaseException], fragment: str) -> BaseException:
    with pytest.raises(error) as info:
        call()
    assert fragment in _text(info.value), _text(info.value)
    if error is TypeError:
        # A wrong type is not a bad value: not a ChronicaError, not a ValueError.
        assert not isinstance(info.value, (chronica.ChronicaError, ValueError)), repr(info.value)
    return info.value


@pytest.fixture
def bus() -> Iterator[chronica.EventBus]:
    with chronica.EventBus() as b:
        yield b


# -- on / on_batch ---------------------------------------------------------

# (bad argument(s), expected exception, message fragment); the call is one
# of SUBSCRIBE with topic "t" and a plain handler unless the row says other.
SUBSCRIBE_ROWS = [
    ({"topic": 5}, TypeError, "topic must be a str, got int"),
    ({"topic": b"t"}, TypeError, "topic must be a str, got bytes"),
    ({"topic": None}, TypeError, "topic must be a str, got NoneType"),
    ({"topic": ["t"]}, TypeError, "topic must be a str, got list"),
    ({"topic": ""}, Bad, "topic must be a non-empty pattern"),
    ({"topic": "a.>.b"}, Bad, ">"),
    ({"handler": 5}, TypeError, "handler must be callable, got int"),
    ({"handler": "print"}, TypeError, "handler must be callable, got str"),
    ({"handler": _async_handler}, Bad, "EventBus handlers are plain functions"),
    ({"handler": _AsyncCallable()}, Bad, "EventBus handlers are plain functions"),
    ({"group": 5}, TypeError, "group must be a str or None, got int"),
    ({"group": b"g"}, TypeError, "group must be a str or None, got bytes"),
    ({"group": ""}, Bad, "group must be a non-empty string or None"),
    ({"concurrency": "2"}, TypeError, "concurrency must be an int, got str"),
    ({"concurrency": 2.0}, TypeError, "concurrency must be an int, got float"),
    ({"concurrency": None}, TypeError, "concurrency must be an int, got NoneType"),
    ({"concurrency": True}, TypeError, "concurrency must be an int, got bool"),
    ({"concurrency": 0}, Bad, "concurrency must be an int from 1 to 64, got 0"),
    ({"concurrency": 65}, Bad, "concurrency must be an int from 1 to 64, got 65"),
    ({"concurrency": -(2**70)}, Bad, "concurrency must be an int from 1 to 64"),
    ({"buffer": "8"}, TypeError, "buffer must be an int or None, got str"),
    ({"buffer": 8.0}, TypeError, "buffer must be an int or None, got float"),
    ({"buffer": False}, TypeError, "buffer must be an int or None, got bool"),
    ({"buffer": 0}, Bad, "buffer must be an int of at least the concurrency, got 0"),
    ({"buffer": 2, "concurrency": 4}, Bad, "buffer must be an int of at least the concurrency, got 2"),
    ({"buffer": 2**63}, Bad, "out of range"),
    ({"dead_letter": 42}, TypeError, "dead_letter must be callable or None, got int"),
    ({"dead_letter": "log"}, TypeError, "dead_letter must be callable or None, got str"),
    ({"retry": "fast"}, TypeError, "retry must be a chronica.Retry, a dict, or None, got str"),
    ({"retry": {"initial": "0.5"}}, TypeError, "retry setting 'initial' must be a number"),
    ({"retry": {"initial": -1}}, Bad, "initial"),
]


def _direct(bus: chronica.EventBus, method: str, topic: Any, handler: Any, options: Dict[str, Any]) -> Any:
    return getattr(bus, method)(topic, handler, **options)


def _decorator(bus: chronica.EventBus, method: str, topic: Any, handler: Any, options: Dict[str, Any]) -> Any:
    return getattr(bus, method)(topic, **options)(handler)


SUBSCRIBE = {
    "on": lambda bus, *a: _direct(bus, "on", *a),
    "on_batch": lambda bus, *a: _direct(bus, "on_batch", *a),
    "@on": lambda bus, *a: _decorator(bus, "on", *a),
    "@on_batch": lambda bus, *a: _decorator(bus, "on_batch", *a),
}


@pytest.mark.parametrize("call", list(SUBSCRIBE))
@pytest.mark.parametrize("args, error, fragment", SUBSCRIBE_ROWS, ids=[_id(r[0]) for r in SUBSCRIBE_ROWS])
def test_subscribe_refuses(
    bus: chronica.EventBus, call: str, args: Dict[str, Any], error: Type[BaseException], fragment: str
) -> None:
    options = dict(args)
    topic = options.pop("topic", "t")
    handler = options.pop("handler", _handler)
    _raises(lambda: SUBSCRIBE[call](bus, topic, handler, options), error, fragment)
    assert bus.subscriptions == [] and bus.director.nodes() == []
    # The bus is still usable.
    sub = SUBSCRIBE[call](bus, "t", _handler, {})
    assert bus.director.nodes() == [sub.uid]


def test_subscribe_takes_int_like_counts_and_str_subclasses(bus: chronica.EventBus) -> None:
    """Like Director.register, the counts take any int-like value
    (``__index__``, numpy's ints), not bool; a str subclass is a str."""

    class Topic(str):
        pass

    sub = bus.on(Topic("t"), _handler, group=Topic("g"), concurrency=_Four(), buffer=_Four())
    assert bus.director.nodes() == [sub.uid]


def test_errors_hierarchy() -> None:
    """What the rows above rely on: a bad value is a ValueError and a
    ChronicaError, a decode error a bad value."""
    assert issubclass(Bad, ValueError) and issubclass(Bad, chronica.ChronicaError)
    assert issubclass(chronica.DecodeError, Bad)
    assert not issubclass(TypeError, chronica.ChronicaError)

