"""Bad arguments to the Python API (docs/PYTHON.md, "Errors"): a wrong type
raises TypeError naming the parameter, a bad value InvalidArgumentError (a
ValueError) or the right ChronicaError subclass, and a refused call changes
nothing: no subscription, no node, nothing emitted, the bus still open.

Most cases are rows of a table: (call, bad argument, expected exception,
message fragment). The fragment is looked for in the message and in the
notes pyo3 adds ("while processing 'topic'")."""

from __future__ import annotations

import asyncio
import math
from typing import Any, Callable, Dict, Iterator, List, Type

import pytest

import chronica
from conftest import Recorder, settle

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
        text = repr(v)
        if callable(v) or " at 0x" in text:
            return str(getattr(v, "__name__", type(v).__name__))
        return text if len(text) < 30 else f"{type(v).__name__}(...)"

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
    ({"buffer": 2**31}, Bad, "buffer must be an int of at most 2147483647, got 2147483648"),
    ({"buffer": 2**63}, Bad, "buffer must be an int of at most 2147483647, got 9223372036854775808"),
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

    four: Any = _Four()
    sub = bus.on(Topic("t"), _handler, group=Topic("g"), concurrency=four, buffer=four)
    assert bus.director.nodes() == [sub.uid]


# -- off / stats / close ---------------------------------------------------

BAD_TIMEOUTS = [
    ("1", TypeError, "timeout must be a number, got str"),
    (None, TypeError, "timeout must be a number, got NoneType"),
    (1j, TypeError, "timeout must be a number, got complex"),
    (-1, Bad, "timeout must be a finite number of seconds >= 0, got -1"),
    (-0.5, Bad, "timeout must be a finite number of seconds >= 0, got -0.5"),
    (math.nan, Bad, "timeout must be a finite number of seconds >= 0, got nan"),
    (math.inf, Bad, "timeout must be a finite number of seconds >= 0, got inf"),
    (10**400, Bad, "timeout is out of range for a float"),
    (2.0**64, Bad, "timeout must be less than 2**64 seconds, got 1.8446744073709552e+19"),
    (2**64, Bad, "timeout must be less than 2**64 seconds, got 18446744073709551616"),
    (1e300, Bad, "timeout must be less than 2**64 seconds, got 1e+300"),
]
TIMEOUT_IDS = [_id({"timeout": r[0]}) for r in BAD_TIMEOUTS]


@pytest.mark.parametrize("timeout, error, fragment", BAD_TIMEOUTS, ids=TIMEOUT_IDS)
def test_off_refuses_a_bad_timeout_and_keeps_the_subscription(
    bus: chronica.EventBus, timeout: Any, error: Type[BaseException], fragment: str
) -> None:
    sub = bus.on("t", _handler)
    _raises(lambda: bus.off(sub, timeout=timeout), error, fragment)
    assert bus.subscriptions == [sub] and bus.director.nodes() == [sub.uid]
    bus.off(sub, timeout=0)
    assert bus.subscriptions == []


@pytest.mark.parametrize("value", [2**31, 2**40, 2**63, 2**64])
def test_a_buffer_too_large_is_refused_under_its_own_name(bus: chronica.EventBus, value: int) -> None:
    """The buffer becomes the node's queue_capacity; a value the engine
    refuses was reported as a bad queue_capacity, an argument the caller
    never gave. The bus checks the range itself and names ``buffer``."""
    with pytest.raises(Bad) as info:
        bus.on("t", _handler, buffer=value)
    assert f"buffer must be an int of at most {2**31 - 1}, got {value}" in str(info.value)
    assert "queue_capacity" not in _text(info.value), _text(info.value)
    assert bus.subscriptions == [] and bus.director.nodes() == []


def test_the_bus_s_limits_are_the_engine_s(bus: chronica.EventBus) -> None:
    """``MAX_BUFFER`` and ``MAX_CONCURRENCY`` are read from the engine
    (``chronica::MAX_CAPACITY``, ``chronica::MAX_CONCURRENCY``) rather than
    copied: the largest buffer the bus takes is the largest capacity the
    engine takes, and one more is refused by both."""
    from chronica import _bus, _chronica

    assert _bus.MAX_BUFFER == _chronica.MAX_CAPACITY == 2**31 - 1
    assert _bus.MAX_CONCURRENCY == _chronica.MAX_CONCURRENCY == 64
    chronica.Director(queue_capacity=_chronica.MAX_CAPACITY).close()
    with pytest.raises(Bad, match="queue_capacity"):
        chronica.Director(queue_capacity=_chronica.MAX_CAPACITY + 1)
    sub = bus.on("t", _handler, buffer=_bus.MAX_BUFFER, concurrency=_bus.MAX_CONCURRENCY)
    bus.off(sub, timeout=0)
    with pytest.raises(Bad, match="buffer"):
        bus.on("t", _handler, buffer=_bus.MAX_BUFFER + 1)


def test_the_largest_timeouts_are_taken_by_off_and_close(director: chronica.Director) -> None:
    """Just below 2**64 seconds fits a Duration: taken, as Director.close
    takes it (test_timeouts.py checks the same bound there)."""
    largest = 2.0**64 - 2048
    bus = chronica.EventBus(director)
    sub = bus.on("t", _handler)
    bus.emit("t", b"x")
    settle(director, sub.uid)
    last = bus.off(sub, timeout=largest)
    assert last.pending == 0 and last.delivered == last.accepted, last
    bus.on("t", _handler)
    assert bus.close(timeout=largest) == 0
    with chronica.EventBus() as own:
        own.on("t", _handler)
        assert own.close(timeout=largest) == 0


@pytest.mark.parametrize("method", ["off", "stats"])
@pytest.mark.parametrize("subscription", ["bus.sub.1", None, 1])
def test_off_and_stats_need_a_subscription(bus: chronica.EventBus, method: str, subscription: Any) -> None:
    sub = bus.on("t", _handler)
    _raises(
        lambda: getattr(bus, method)(subscription),
        TypeError,
        f"subscription must be a chronica.Subscription, got {type(subscription).__name__}",
    )
    assert bus.subscriptions == [sub] and bus.director.nodes() == [sub.uid]


def test_off_of_an_ended_or_foreign_subscription_is_an_unknown_node(bus: chronica.EventBus) -> None:
    sub = bus.on("t", _handler)
    bus.off(sub)
    _raises(lambda: bus.off(sub), chronica.UnknownNodeError, sub.uid)
    with chronica.EventBus() as other:
        foreign = other.on("t", _handler)
        _raises(lambda: bus.off(foreign), chronica.UnknownNodeError, foreign.uid)
        assert other.subscriptions == [foreign]


@pytest.mark.parametrize("shared", [False, True], ids=["own director", "shared director"])
@pytest.mark.parametrize("timeout, error, fragment", BAD_TIMEOUTS, ids=TIMEOUT_IDS)
def test_a_close_with_a_bad_timeout_changes_nothing(
    director: chronica.Director, shared: bool, timeout: Any, error: Type[BaseException], fragment: str
) -> None:
    """Both kinds of bus refuse the same timeouts with the same errors; the
    bus stays open with its subscriptions (a sharing bus used to mark
    itself closed before failing, and to take a negative timeout)."""
    bus = chronica.EventBus(director) if shared else chronica.EventBus()
    sub = bus.on("t", _handler)
    _raises(lambda: bus.close(timeout=timeout), error, fragment)
    assert not bus.closed and not bus.director.closed
    assert bus.subscriptions == [sub] and sub.uid in bus.director.nodes()
    bus.emit("t", b"x")
    assert bus.close() == 0 and bus.closed


# -- emit / decode ---------------------------------------------------------


class _CountingSerializer:
    content_type = "application/x-counting"

    def __init__(self) -> None:
        self.dumped = 0

    def dumps(self, value: Any) -> bytes:
        self.dumped += 1
        return repr(value).encode()

    def loads(self, data: bytes) -> Any:
        return data


EMIT_ROWS = [
    ({"topic": 5}, TypeError, "topic must be a str, got int"),
    ({"topic": b"t"}, TypeError, "topic must be a str, got bytes"),
    ({"topic": None}, TypeError, "topic must be a str, got NoneType"),
    ({"key": 3.5}, TypeError, "key must be bytes or str, not float"),
    ({"key": 7}, TypeError, "key must be bytes or str, not int"),
]


@pytest.mark.parametrize("args, error, fragment", EMIT_ROWS, ids=[_id(r[0]) for r in EMIT_ROWS])
def test_emit_refuses(args: Dict[str, Any], error: Type[BaseException], fragment: str) -> None:
    serializer = _CountingSerializer()
    with chronica.EventBus(serializer=serializer) as bus:
        seen: List[bytes] = []
        sub = bus.on("t", lambda e: seen.append(e.payload))
        options = dict(args)
        topic = options.pop("topic", "t")
        _raises(lambda: bus.emit(topic, {"v": 1}, **options), error, fragment)
        _raises(lambda: bus.emit(topic, b"raw", **options), error, fragment)
        if "topic" in args:
            assert serializer.dumped == 0  # refused before encoding
        bus.emit("t", b"ok")
        settle(bus.director, sub.uid)
        assert seen == [b"ok"]  # nothing of the refused emits went out


def test_decode_refuses_wrong_types(director: chronica.Director) -> None:
    bus = chronica.EventBus(director)
    seen = Recorder()
    director.register("seen", seen)
    bus.emit("t", {"v": 1})
    (event,) = seen.wait_user(1)
    not_events: List[Any] = [None, b'{"v": 1}']
    for value in not_events:
        _raises(lambda: bus.decode(value), TypeError, f"event must be a chronica.Event, got {type(value).__name__}")
    for expected in (5, "dict", (dict, list)):
        _raises(
            lambda: bus.decode(event, expected),  # type: ignore[arg-type]
            TypeError,
            f"expected_type must be a type or None, got {type(expected).__name__}",
        )
    assert bus.decode(event, dict) == {"v": 1}
    with pytest.raises(chronica.DecodeError):
        bus.decode(event, list)
    settle(director, "seen")


def test_decode_takes_an_object_shaped_like_an_event() -> None:
    """Handlers are tested with stand-in events (Event cannot be built from
    Python): decode checks the attributes it reads, not the class."""

    class FakeEvent:
        topic = "t"
        payload = b'{"v": 1}'
        content_type = None

    with chronica.EventBus() as bus:
        assert bus.decode(FakeEvent(), dict) == {"v": 1}  # type: ignore[arg-type]


# -- the constructor -------------------------------------------------------

CONSTRUCTOR_ROWS: List[Any] = [
    ({"director": 5}, TypeError, "director must be a chronica.Director or None, got int"),
    ({"director": "memory://x"}, TypeError, "director must be a chronica.Director or None, got str"),
    ({"serializer": 5}, TypeError, "serializer must be"),
    ({"serializer": b"json"}, TypeError, "got bytes"),
    ({"serializer": object()}, TypeError, "callable dumps() and loads()"),
    ({"serializer": "yaml"}, Bad, "unknown serializer 'yaml'"),
    ({"queue_capacity": "big"}, TypeError, "queue_capacity"),
    ({"queue_capacity": 0}, Bad, "queue_capacity"),
    ({"nope": 1}, TypeError, "nope"),
    ({"on_dead_letter": _handler}, Bad, "give dead-letter handlers to on(..., dead_letter=...)"),
]


@pytest.mark.parametrize("kwargs, error, fragment", CONSTRUCTOR_ROWS, ids=[_id(r[0]) for r in CONSTRUCTOR_ROWS])
def test_constructor_refuses(kwargs: Dict[str, Any], error: Type[BaseException], fragment: str) -> None:
    _raises(lambda: chronica.EventBus(**kwargs), error, fragment)


def test_director_options_with_a_director_are_refused(director: chronica.Director) -> None:
    _raises(lambda: chronica.EventBus(director, queue_capacity=8), Bad, "director options are only for")
    assert director.nodes() == [] and not director.closed


def test_a_distributed_is_not_a_director() -> None:
    """EventBus runs over a Director only (off and stats need
    ``Director.stats(uid)``, which Distributed calls ``node_stats``)."""
    with chronica.Distributed("memory://bus-arguments", trust_token="t") as fabric:
        _raises(lambda: chronica.EventBus(fabric), TypeError, "got Distributed")  # type: ignore[arg-type]
        assert fabric.nodes() == []


# -- Director / Distributed: register's loop= -------------------------------


@pytest.mark.parametrize("callback", [Recorder(), _async_handler], ids=["plain", "async"])
@pytest.mark.parametrize("loop", [5, "loop", object()])
def test_register_refuses_a_loop_that_is_not_an_event_loop(
    director: chronica.Director, callback: Any, loop: Any
) -> None:
    """A plain callback used to ignore a ``loop=`` of any type."""
    _raises(
        lambda: director.register("a", callback, loop=loop),
        TypeError,
        f"loop must be an asyncio event loop or None, got {type(loop).__name__}",
    )
    assert director.nodes() == []
    with chronica.Distributed("memory://bus-arguments-loop", trust_token="t") as fabric:
        _raises(lambda: fabric.register("a", callback, loop=loop), TypeError, "loop must be an asyncio event loop")
        assert fabric.nodes() == []


def test_register_takes_a_loop_for_a_plain_callback(director: chronica.Director) -> None:
    loop = asyncio.new_event_loop()
    try:
        director.register("a", Recorder(), loop=loop)
        assert director.nodes() == ["a"]
    finally:
        director.unregister("a")
        loop.close()


def test_errors_hierarchy() -> None:
    """What the rows above rely on: a bad value is a ValueError and a
    ChronicaError, a decode error a bad value."""
    assert issubclass(Bad, ValueError) and issubclass(Bad, chronica.ChronicaError)
    assert issubclass(chronica.DecodeError, Bad)
    assert not issubclass(TypeError, chronica.ChronicaError)

