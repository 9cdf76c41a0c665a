"""chronica.EventBus (issue 5): wildcards, groups, concurrency with per-key
order, retry then dead letter with measured backoff, off during traffic,
serializers and their errors, refused options, decorator and context
manager use."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any, Dict, List

import pytest

import chronica
from conftest import settle, wait_for


class Box:
    """Thread-safe list of what handlers saw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: List[Any] = []

    def add(self, item: Any) -> None:
        with self.lock:
            self.items.append(item)

    def __len__(self) -> int:
        with self.lock:
            return len(self.items)

    def snapshot(self) -> List[Any]:
        with self.lock:
            return list(self.items)


def test_wildcards_and_decorator() -> None:
    with chronica.EventBus() as bus:
        one, rest = Box(), Box()

        @bus.on("orders.*")
        def first(event: chronica.Event) -> None:
            one.add(event.topic)

        second = bus.on("orders.>", lambda e: rest.add(e.topic))
        assert isinstance(first, chronica.Subscription) and first.uid.startswith("bus.sub.")
        assert first.uid != second.uid
        for t in ["orders.created", "orders.eu.created", "users.created", "orders"]:
            bus.emit(t, {"t": t})
        settle(bus.director, first.uid)
        settle(bus.director, second.uid)
        assert one.snapshot() == ["orders.created"]
        assert sorted(rest.snapshot()) == ["orders.created", "orders.eu.created"]
        assert first.handler.__name__ == "first" and callable(first)  # still a function
    assert bus.closed
    with pytest.raises(chronica.ClosedError):
        bus.emit("x", b"")


def test_group_takes_each_event_once() -> None:
    with chronica.EventBus() as bus:
        boxes = [Box() for _ in range(3)]
        subs = [bus.on("jobs", lambda e, b=b: b.add(bus.decode(e)), group="workers") for b in boxes]
        plain = Box()
        p = bus.on("jobs", lambda e: plain.add(e.id))
        for i in range(300):
            bus.emit("jobs", i, key=f"k{i % 7}" if i % 2 else None)
        for s in subs + [p]:
            settle(bus.director, s.uid)
        got = sorted(x for b in boxes for x in b.snapshot())
        assert got == list(range(300))
        assert all(len(b) > 0 for b in boxes)
        assert len(plain) == 300


def test_concurrency_in_parallel_with_order_per_key() -> None:
    with chronica.EventBus() as bus:
        lock = threading.Lock()
        state = {"now": 0, "peak": 0}
        order: Dict[str, List[int]] = defaultdict(list)

        def handler(event: chronica.Event) -> None:
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            time.sleep(0.003)
            value = bus.decode(event)
            with lock:
                order[value["k"]].append(value["seq"])
                state["now"] -= 1

        sub = bus.on("work", handler, concurrency=4)
        for seq in range(25):
            for k in range(8):
                bus.emit("work", {"k": f"key-{k}", "seq": seq}, key=f"key-{k}")
        settle(bus.director, sub.uid)
        assert state["peak"] >= 2
        assert len(order) == 8
        assert all(v == list(range(25)) for v in order.values())


def test_retry_then_dead_letter_with_backoff() -> None:
    with chronica.EventBus() as bus:
        times: List[float] = []
        letters = Box()

        def failing(event: chronica.Event) -> None:
            times.append(time.monotonic())
            raise RuntimeError("card declined")

        retry = {"backoff": "exponential", "initial": 0.04, "multiplier": 2.0, "max": 1.0, "jitter": 0.0,
                 "max_retries": 3}
        sub = bus.on("pay", failing, retry=retry, dead_letter=lambda e, text: letters.add((bus.decode(e), text)))
        bus.emit("pay", {"order": 1})
        wait_for(lambda: len(letters) == 1, what="dead letter")
        assert len(times) == 4
        gaps = [b - a for a, b in zip(times, times[1:])]
        for gap, nominal in zip(gaps, [0.04, 0.08, 0.16]):
            assert nominal - 0.005 <= gap <= nominal * 3 + 0.06, gaps
        (value, text), = letters.snapshot()
        assert value == {"order": 1} and "card declined" in text
        s = settle(bus.director, sub.uid)
        assert (s.dead_lettered, s.retries) == (1, 3)


def test_dead_letter_and_buffer_on_a_shared_director() -> None:
    with chronica.Director(retry=chronica.Retry(initial=0.01, jitter=0.0, max_retries=0)) as d:
        bus = chronica.EventBus(d)
        letters = Box()

        def failing(event: chronica.Event) -> None:
            raise RuntimeError("no")

        sub = bus.on("pay", failing, buffer=8, dead_letter=lambda e, text: letters.add((bus.decode(e), text)))
        bus.emit("pay", {"n": 1})
        wait_for(lambda: len(letters) == 1, what="dead letter")
        (value, text), = letters.snapshot()
        assert value == {"n": 1} and "no" in text


def test_register_queue_capacity_and_node_dead_letter() -> None:
    with chronica.Director(retry=chronica.Retry(initial=0.01, jitter=0.0, max_retries=0)) as d:
        d.register("held", lambda events: None, connected=False, queue_capacity=2)
        for _ in range(5):
            d.emit("t", b"x")
        s = d.stats("held")
        assert (s.dropped, s.pending) == (3, 3)  # two user events and the pull event wait
        got = Box()

        def failing(events: List[chronica.Event]) -> None:
            if any(e.kind == "user" for e in events):
                raise RuntimeError("down")

        d.register("bad", failing, on_dead_letter=lambda uid, events, text: got.add((uid, len(events), text)))
        d.emit_to("bad", "t", b"y")
        wait_for(lambda: len(got) == 1, what="node dead letter")
        (uid, n, text), = got.snapshot()
        assert uid == "bad" and n == 1 and "down" in text
        with pytest.raises(TypeError):
            d.register("worse", failing, on_dead_letter=42)
        with pytest.raises(ValueError):
            d.register("zero", failing, queue_capacity=0)


def test_linear_backoff_grows_by_the_initial_delay() -> None:
    with chronica.EventBus() as bus:
        times: List[float] = []
        letters = Box()

        def failing(event: chronica.Event) -> None:
            times.append(time.monotonic())
            raise RuntimeError("busy")

        retry = {"backoff": "linear", "initial": 0.04, "max": 1.0, "jitter": 0.0, "max_retries": 3}
        bus.on("pay", failing, retry=retry, dead_letter=lambda e, text: letters.add(text))
        bus.emit("pay", {"order": 2})
        wait_for(lambda: len(letters) == 1, what="dead letter")
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert len(gaps) == 3
        for gap, nominal in zip(gaps, [0.04, 0.08, 0.12]):
            assert nominal - 0.005 <= gap <= nominal * 3 + 0.06, gaps


def test_retry_backoff_kinds_and_bad_kind() -> None:
    assert chronica.Retry(backoff="linear").backoff == "linear"
    assert chronica.Retry().backoff == "exponential"
    with pytest.raises(ValueError):
        chronica.Retry(backoff="zigzag")


def test_constant_backoff_and_resume_inside_a_batch() -> None:
    with chronica.EventBus() as bus:
        calls = Box()
        letters = Box()

        def handler(event: chronica.Event) -> None:
            value = bus.decode(event)
            calls.add(value)
            if value == "poison":
                raise ValueError("bad event")

        retry = {"backoff": "constant", "initial": 0.01, "jitter": 0.0, "max_retries": 2}
        sub = bus.on("batch", handler, retry=retry, dead_letter=lambda e, t: letters.add((bus.decode(e), t)))
        settle(bus.director, sub.uid)
        bus.director.node_disconnected(sub.uid)
        for v in ["good", "poison", "after"]:
            bus.emit("batch", v)
        bus.director.node_connected(sub.uid)
        wait_for(lambda: len(letters) == 1 and calls.snapshot()[-1:] == ["after"], what="the dead letter, then 'after'")
        assert calls.snapshot() == ["good", "poison", "poison", "poison", "after"]
        # Only the event that failed: "after" was never attempted with it.
        assert letters.snapshot() == [("poison", "ValueError: bad event")]
        # Per event: the pull event, "good" and "after" delivered, "poison"
        # dead-lettered; its two re-attempts are the only retries.
        s = settle(bus.director, sub.uid)
        assert (s.delivered, s.dead_lettered, s.failures, s.retries) == (3, 1, 3, 2), s
        assert s.last_error == "ValueError: bad event"


def test_off_during_traffic_loses_nothing() -> None:
    with chronica.EventBus() as bus:
        a, b = Box(), Box()
        sa = bus.on("flow", lambda e: a.add(bus.decode(e)), group="g")
        sb = bus.on("flow", lambda e: b.add(bus.decode(e)), group="g")
        sent = [0]

        def emitter() -> None:
            for i in range(5000):
                bus.emit("flow", i)
                sent[0] = i + 1

        t = threading.Thread(target=emitter)
        t.start()
        wait_for(lambda: sent[0] > 500, what="traffic")
        last = bus.off(sa)
        assert last.balanced()
        assert last.accepted == last.delivered + last.dropped + last.dead_lettered + last.pending
        t.join()
        settle(bus.director, sb.uid)
        # Every event reaches the group exactly once, also while off runs.
        counts = defaultdict(int)
        for v in a.snapshot() + b.snapshot():
            counts[v] += 1
        assert [i for i in range(5000) if counts[i] != 1] == []
        with pytest.raises(chronica.UnknownNodeError):
            bus.off(sa)


def test_shared_director_with_plain_nodes() -> None:
    with chronica.Director() as d:
        plain = Box()
        d.register("plain", lambda events: [plain.add(e.topic) for e in events if e.kind == "user"],
                   topics=["orders.*"])
        bus = chronica.EventBus(d)
        seen = Box()
        sub = bus.on("orders.*", lambda e: seen.add(e.topic))
        bus.emit("orders.created", {"id": 1})
        d.emit("orders.paid", b"{}")
        settle(d, sub.uid)
        settle(d, "plain")
        assert sorted(seen.snapshot()) == ["orders.created", "orders.paid"]
        assert sorted(plain.snapshot()) == ["orders.created", "orders.paid"]
        bus.close()
        assert d.nodes() == ["plain"] and not d.closed


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_serializer_round_trip(serializer: str) -> None:
    with chronica.EventBus(serializer=serializer) as bus:
        got = Box()
        sub = bus.on("orders.created", lambda e: got.add(bus.decode(e, dict)))
        order = {"id": 42, "items": ["tea", "cake"], "total": 7.5, "note": None}
        bus.emit("orders.created", order)
        settle(bus.director, sub.uid)
        assert got.snapshot() == [order]


def test_custom_serializer_object() -> None:
    class Upper:
        content_type = "text/upper"

        def dumps(self, obj: Any) -> str:
            return str(obj).upper()

        def loads(self, data: bytes) -> str:
            return data.decode()

    with chronica.EventBus(serializer=Upper()) as bus:
        got = Box()
        sub = bus.on("t", lambda e: got.add(bus.decode(e)))
        bus.emit("t", "hello")
        settle(bus.director, sub.uid)
        assert got.snapshot() == ["HELLO"]


def test_a_module_as_serializer_is_labelled_after_the_module() -> None:
    """Serializers given as modules (``serializer=pickle``) are told apart:
    each module is labelled after itself (they all share the class
    ``module``), and the standard ``json`` module writes what a ``"json"``
    bus reads."""
    import json
    import pickle

    with chronica.Director() as d:
        by_pickle = chronica.EventBus(d, serializer=pickle)
        by_json_module = chronica.EventBus(d, serializer=json)
        by_json = chronica.EventBus(d)
        seen = Box()
        sub = by_json.on("t", seen.add)
        by_pickle.emit("t", {"id": 1})
        by_json_module.emit("t", {"id": 2})
        settle(d, sub.uid)
        pickled, jsoned = seen.snapshot()
        assert pickled.content_type == "application/x-pickle"
        with pytest.raises(chronica.SerializerMismatchError, match="application/x-pickle"):
            by_json.decode(pickled)
        assert by_pickle.decode(pickled) == {"id": 1}
        assert jsoned.content_type == "application/json"
        assert by_json.decode(jsoned) == {"id": 2}


def test_type_mismatch_names_topic_and_type() -> None:
    with chronica.EventBus() as bus:
        errors = Box()

        def handler(event: chronica.Event) -> None:
            try:
                bus.decode(event, dict)
            except chronica.DecodeError as e:
                errors.add(str(e))

        sub = bus.on(">", handler)
        bus.emit("orders.created", "just a string")
        bus.emit("raw.bytes", b"\xff not json")
        settle(bus.director, sub.uid)
        texts = errors.snapshot()
        assert len(texts) == 2
        assert "orders.created" in texts[0] and "dict" in texts[0] and "str" in texts[0]
        assert "raw.bytes" in texts[1]
        assert issubclass(chronica.DecodeError, chronica.ChronicaError)


def test_serializer_mismatch_is_detected() -> None:
    with chronica.Director() as d:
        producer = chronica.EventBus(d, serializer="msgpack")
        consumer = chronica.EventBus(d)
        errors = Box()

        def handler(event: chronica.Event) -> None:
            try:
                consumer.decode(event)
            except chronica.SerializerMismatchError as e:
                errors.add(str(e))

        sub = consumer.on("orders.*", handler)
        producer.emit("orders.paid", {"id": 1})
        settle(d, sub.uid)
        (text,) = errors.snapshot()
        assert "orders.paid" in text and "application/msgpack" in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concurrency": 0},
        {"concurrency": 65},
        {"buffer": 0},
        {"concurrency": 4, "buffer": 2},
        {"group": ""},
        {"retry": {"backoff": "zigzag"}},
        {"retry": {"multiplier": 0.5}},
        {"retry": {"jitter": 2.0}},
        {"retry": {"nope": 1}},
    ],
)
def test_bad_options_are_refused(kwargs: Dict[str, Any]) -> None:
    """Bad values; wrong types (TypeError) are in test_bus_arguments.py."""
    with chronica.EventBus() as bus:
        with pytest.raises(chronica.InvalidArgumentError):
            bus.on("t", lambda e: None, **kwargs)
        with pytest.raises(chronica.InvalidArgumentError):
            bus.on("a.>.b", lambda e: None)
        assert bus.subscriptions == [] and bus.director.nodes() == []


@pytest.mark.parametrize("key", ["initial", "max", "multiplier", "jitter"])
@pytest.mark.parametrize("value", ["fast", "0.5", b"1", None, [1], 1j])
def test_retry_dict_numbers_of_a_wrong_type_raise_type_error(key: str, value: Any) -> None:
    """A retry setting that is not a number is a TypeError naming the
    setting, as for chronica.Retry, not float()'s own error, and a numeric
    string is not taken for a number."""
    with chronica.EventBus() as bus:
        with pytest.raises(TypeError, match=f"retry setting '{key}' must be a number"):
            bus.on("t", lambda e: None, retry={key: value})
        with pytest.raises(TypeError):
            chronica.Retry(**{key: value})
        assert bus.subscriptions == [] and bus.director.nodes() == []


@pytest.mark.parametrize(
    "retry, error, text",
    [
        ({"initial": 10**400}, chronica.InvalidArgumentError, "retry setting 'initial' is out of range"),
        ({"max": -(10**400)}, chronica.InvalidArgumentError, "retry setting 'max' is out of range"),
        ({"initial": -1}, chronica.InvalidArgumentError, "initial must be"),
        ({"jitter": float("nan")}, chronica.InvalidArgumentError, "jitter"),
        ({"multiplier": float("inf")}, chronica.InvalidArgumentError, "multiplier"),
        ({"max_retries": -1}, chronica.InvalidArgumentError, "max_retries"),
        ({"max_retries": "3"}, TypeError, "retry setting 'max_retries' must be an int or None"),
        ({"max_retries": 1.5}, TypeError, "retry setting 'max_retries' must be an int or None"),
        ({"backoff": 5}, TypeError, "retry setting 'backoff' must be a str"),
        ({"backoff": "zigzag"}, chronica.InvalidArgumentError, "backoff"),
        ({1: 2, "x": 3}, chronica.InvalidArgumentError, "unknown retry settings"),
        ("fast", TypeError, "retry must be a chronica.Retry, a dict, or None"),
        (5, TypeError, "retry must be a chronica.Retry, a dict, or None"),
    ],
)
def test_retry_dict_errors_name_the_setting(retry: Any, error: type, text: str) -> None:
    """Bad values raise InvalidArgumentError (a ValueError), wrong types
    TypeError, each naming the setting; nothing is registered."""
    with chronica.EventBus() as bus:
        with pytest.raises(error) as info:
            bus.on("t", lambda e: None, retry=retry)
        assert text in str(info.value) or any(text in n for n in getattr(info.value, "__notes__", [])), info.value
        assert bus.subscriptions == [] and bus.director.nodes() == []


def test_retry_dict_takes_any_real_number() -> None:
    from decimal import Decimal
    from fractions import Fraction

    with chronica.EventBus() as bus:
        retry = {"initial": Decimal("0.05"), "max": Fraction(1, 2), "multiplier": 3, "jitter": 0, "max_retries": 2}
        sub = bus.on("t", lambda e: None, retry=retry)
        assert bus.director.nodes() == [sub.uid]


def test_bad_serializers_are_refused() -> None:
    with pytest.raises(chronica.InvalidArgumentError) as info:
        chronica.EventBus(serializer="yaml")
    assert isinstance(info.value, ValueError)
    with pytest.raises(TypeError):
        chronica.EventBus(serializer=object())


def test_on_batch_gets_lists() -> None:
    with chronica.EventBus() as bus:
        sizes = Box()
        sub = bus.on_batch("t", lambda events: sizes.add(len(events)))
        bus.director.node_disconnected(sub.uid)
        for i in range(5):
            bus.emit("t", i)
        bus.director.node_connected(sub.uid)
        settle(bus.director, sub.uid)
        assert sum(sizes.snapshot()) == 5 and max(sizes.snapshot()) > 1


def test_a_refused_close_leaves_the_bus_open():
    bus = chronica.EventBus()
    seen: List[Any] = []
    bus.on("t", lambda e: seen.append(e))
    with pytest.raises(chronica.InvalidArgumentError):
        bus.close(timeout=-1)
    assert not bus.closed and not bus.director.closed
    bus.emit("t", b"x")
    bus.close()
    assert bus.closed and bus.director.closed and len(seen) == 1


def test_an_unclosed_bus_is_collected_with_its_director():
    """The bus's own dead-letter hook must not keep it alive through its
    director (a cycle through Rust that the GC cannot see)."""
    import gc
    import weakref

    def make() -> "weakref.ref[chronica.Director]":
        bus = chronica.EventBus()
        bus.on("t", lambda e: None)
        return weakref.ref(bus.director)

    refs = [make() for _ in range(5)]
    gc.collect()
    assert [r() for r in refs] == [None] * 5


def test_event_unmarshal_decodes_with_the_serializers(director: chronica.Director) -> None:
    """``Event.unmarshal(serializer=None)`` (SPEC section 3, next to
    ``json()``): the serializer given, as EventBus takes it; without one,
    like Rust's ``EventExt::unmarshal``, the built-in one the content type
    names, JSON when there is none; the errors of ``EventBus.decode``."""
    import msgpack  # type: ignore[import-untyped, unused-ignore]

    class Upper:
        content_type = "text/upper"

        def dumps(self, obj: Any) -> str:
            return str(obj).upper()

        def loads(self, data: bytes) -> str:
            return data.decode().lower()

    got = Box()
    director.register("n", lambda events: [got.add(e) for e in events if e.kind == "user"])
    order = {"id": 7, "items": ["tea"], "note": None}
    director.emit("plain.json", order)  # JSON, no content type
    director.emit("labelled.json", b'{"id": 8}', content_type="application/json")
    director.emit("packed", msgpack.packb(order), content_type="application/msgpack")
    director.emit("upper", b"HELLO", content_type="text/upper")
    director.emit("broken", b"\xff not json")
    settle(director, "n")
    plain, labelled, packed, upper, broken = got.snapshot()

    assert plain.unmarshal() == order == plain.json()
    assert plain.unmarshal("json") == order
    assert labelled.unmarshal() == {"id": 8}
    assert packed.unmarshal() == order  # picked by its content type
    assert packed.unmarshal("msgpack") == order
    assert packed.unmarshal(serializer=chronica.EventBus(director, serializer="msgpack").serializer) == order
    assert upper.unmarshal(Upper()) == "hello"

    with pytest.raises(chronica.SerializerMismatchError) as mismatch:
        packed.unmarshal("json")
    assert "packed" in str(mismatch.value) and "application/msgpack" in str(mismatch.value)
    with pytest.raises(chronica.DecodeError) as unknown:
        upper.unmarshal()  # no built-in serializer for text/upper
    assert "text/upper" in str(unknown.value)
    with pytest.raises(chronica.DecodeError) as bad:
        broken.unmarshal()
    assert "broken" in str(bad.value) and isinstance(bad.value, ValueError)
    with pytest.raises(chronica.InvalidArgumentError):
        plain.unmarshal("yaml")
    with pytest.raises(TypeError):
        plain.unmarshal(object())


@pytest.mark.parametrize("method", ["on", "on_batch"])
def test_a_handler_returning_a_coroutine_fails_instead_of_counting_delivered(method: str) -> None:
    """A plain function that returns a coroutine (a decorator hiding an
    ``async def`` from the check ``on`` makes) did not handle the event:
    the bus never awaits it. The event fails (retried, then dead-lettered)
    with a last_error saying why, and the coroutine is closed unrun, so no
    "never awaited" RuntimeWarning either."""
    ran = Box()
    made = Box()

    async def body(arg: Any) -> None:
        ran.add(arg)

    def hidden(arg: Any) -> Any:  # what a careless decorator makes
        coro = body(arg)
        made.add(coro)
        return coro

    dead = Box()
    with chronica.EventBus() as bus:
        sub = getattr(bus, method)(
            "t",
            hidden,
            retry={"initial": 0.01, "max": 0.01, "jitter": 0.0, "max_retries": 1},
            dead_letter=lambda e, text: dead.add((e.payload, text)),
        )
        bus.emit("t", b"x")
        stats = settle(bus.director, sub.uid)
        # The root event pull_current_state is delivered; the user event not.
        assert stats.delivered == 1 and stats.dead_lettered == 1, stats
        wait_for(lambda: len(dead) == 1, what="the dead letter")
    assert stats.last_error is not None and "returned a coroutine" in stats.last_error, stats.last_error
    assert stats.last_error.startswith("TypeError: "), stats.last_error
    (payload, text) = dead.snapshot()[0]
    assert payload == b"x" and text == stats.last_error
    assert ran.snapshot() == []
    coros = made.snapshot()
    assert len(coros) == 2  # the attempt and its one retry
    assert all(c.cr_frame is None for c in coros)  # closed, never run


def _slow_batch(bus: chronica.EventBus, handled: Box) -> chronica.Subscription:
    """A handler taking 50 ms an event, given 40 events as one list (its
    node disconnected while they were emitted)."""

    def slow(event: chronica.Event) -> None:
        time.sleep(0.05)
        handled.add(event.id)

    sub = bus.on("slow", slow)
    settle(bus.director, sub.uid)
    bus.director.node_disconnected(sub.uid)
    for _ in range(40):
        bus.emit("slow", b"")
    bus.director.node_connected(sub.uid)
    return sub


def test_off_stops_a_handler_at_its_timeout_inside_a_list() -> None:
    """``off``'s timeout bounds the drain also inside a list of events: the
    dispatcher stops at the deadline, and what is left is dropped (no group
    to take it), not worked through for the whole list."""
    with chronica.EventBus() as bus:
        handled = Box()
        sub = _slow_batch(bus, handled)
        s = bus.off(sub, timeout=0.15)
        took = len(handled)
        assert took < 20, f"the handler went on past the deadline: {took} of 40"
        assert (s.delivered, s.dropped, s.pending, s.failures) == (1 + took, 40 - took, 0, 0), s


def test_close_of_a_sharing_bus_counts_only_what_was_left() -> None:
    """A close of a bus sharing its director returns what its subscriptions
    had not delivered when they stopped."""
    with chronica.Director() as d:
        bus = chronica.EventBus(d)
        handled = Box()
        _slow_batch(bus, handled)
        time.sleep(0.02)
        left = bus.close(timeout=0.15)
        took = len(handled)
        assert took < 20, f"the handler went on past the deadline: {took} of 40"
        assert left == 40 - took, f"handled {took}"
        assert not d.closed


def test_event_json_gives_the_decode_errors() -> None:
    """``Event.json()`` decodes as ``unmarshal("json")`` does: a mismatch
    with the event's content type and a payload that is not JSON are the
    bus's errors naming the topic, never a bare JSONDecodeError or
    UnicodeDecodeError."""
    with chronica.Director() as d:
        seen = Box()
        pulls = Box()
        d.register("n", lambda events: [(seen if e.kind == "user" else pulls).add(e) for e in events])
        d.emit("as.msgpack", b"\x81\xa1a\x01", content_type="application/msgpack")
        d.emit("not.json", b"\xff not json")
        d.emit("ok", b'{"a": 1}')
        wait_for(lambda: len(seen) == 3, what="three events")
        packed, broken, ok = seen.snapshot()
        with pytest.raises(chronica.SerializerMismatchError, match="as.msgpack"):
            packed.json()
        with pytest.raises(chronica.DecodeError, match="not.json"):
            broken.json()
        assert ok.json() == {"a": 1}
        assert pulls.snapshot()[0].json() == {"peers": []}
