"""A sharing EventBus garbage-collected without ``close`` ends its
subscriptions, with a short drain, as the Rust bus's drop does (docs/BUS.md,
"The Python bus's lifetime guarantees"). It used to leave them registered,
their handlers called, until the director closed.

The ending runs on a thread of its own: the collection happens wherever the
last reference goes (a delivery thread inside a callback, a thread holding
a lock a handler waits for) and must not wait there. Handlers are held with
``threading`` primitives; nothing asserts a duration.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import weakref
from typing import Any, Callable, List, Tuple

import pytest

import chronica
from conftest import DEADLINE, Recorder, wait_for


def _bus_nodes(d: chronica.Director) -> List[str]:
    return [uid for uid in d.nodes() if uid.startswith("bus.sub.")]


def _gone(d: chronica.Director) -> None:
    wait_for(lambda: _bus_nodes(d) == [], what="the collected bus's subscriptions to end")


class Handler:
    """A bus handler that records its events (a class, so that a weak
    reference tells when the engine has let it go)."""

    def __init__(self) -> None:
        self.events: List[bytes] = []

    def __call__(self, event: chronica.Event) -> None:
        self.events.append(event.payload)


def test_a_collected_sharing_bus_ends_its_subscriptions() -> None:
    """The director keeps its plain node and loses the bus's, and lets the
    handler go."""
    with chronica.Director() as d:
        plain = Recorder()
        d.register("plain", plain)
        bus = chronica.EventBus(d)
        handler = Handler()
        bus.on("t", handler)
        bus.on("t", lambda e: None, group="g", concurrency=2)
        bus.emit("t", b"before")
        assert len(_bus_nodes(d)) == 2
        alive = weakref.ref(handler)
        del bus, handler
        gc.collect()
        _gone(d)
        assert d.nodes() == ["plain"]
        wait_for(lambda: alive() is None, what="the handler to be let go")
        d.emit("t", b"after")
        assert plain.wait_user(2)[-1].payload == b"after"


def test_events_accepted_before_the_collection_are_not_lost() -> None:
    """A handler in the middle of a backlog when its bus goes finishes it
    within the drain (500 ms, ample for three events that take no time);
    what a drain cut short leaves is reported to ``on_drop``, never lost
    silently."""
    entered, release = threading.Event(), threading.Event()
    got: List[bytes] = []
    dropped: List[Any] = []

    def handler(event: chronica.Event) -> None:
        entered.set()
        assert release.wait(DEADLINE)
        got.append(event.payload)

    with chronica.Director(on_drop=lambda uid, event, reason: dropped.append(event.payload)) as d:
        bus = chronica.EventBus(d)
        bus.on("t", handler)
        for i in range(3):
            bus.emit("t", b"%d" % i)
        assert entered.wait(DEADLINE)
        del bus
        gc.collect()
        release.set()
        _gone(d)
        # The node leaves the routes as its drain starts; the drain then
        # ends on its own.
        wait_for(lambda: len(got) + len(dropped) == 3, what="the drain to settle every event")
        assert sorted(got + dropped) == [b"0", b"1", b"2"], (got, dropped)
        assert got == [b"0", b"1", b"2"][: len(got)]


def test_a_bus_collected_inside_a_callback_of_its_director() -> None:
    """The last reference goes on a delivery thread, inside a plain node's
    callback: the callback returns at once and the subscriptions end."""
    returned = threading.Event()
    with chronica.Director() as d:
        holder = [chronica.EventBus(d)]
        holder[0].on("t", lambda e: None)

        def drop_the_bus(events: List[chronica.Event]) -> None:
            if any(e.topic == "drop" for e in events):
                holder.clear()
                gc.collect()
                returned.set()

        d.register("dropper", drop_the_bus, topics="drop")
        d.emit("drop", b"")
        assert returned.wait(DEADLINE)
        _gone(d)
        assert d.nodes() == ["dropper"]


def test_a_bus_collected_inside_its_own_handler() -> None:
    """The last reference goes inside the bus's own handler, which the
    drain would wait for: the ending waits on its own thread, and the
    subscription ends once the handler has returned."""
    returned = threading.Event()
    with chronica.Director() as d:
        holder = [chronica.EventBus(d)]

        def handler(event: chronica.Event) -> None:
            holder.clear()
            gc.collect()
            returned.set()

        holder[0].on("t", handler)
        holder[0].emit("t", b"x")
        assert returned.wait(DEADLINE)
        _gone(d)
        assert d.nodes() == []


def test_a_bus_collected_by_a_thread_holding_a_lock_its_handler_waits_for() -> None:
    """Ending the subscriptions where the bus was collected would wait for
    the handler, which waits for a lock the collecting thread holds: a
    deadlock, with or without the GIL. The collection returns at once; the
    subscription ends once the lock is released."""
    lock = threading.Lock()
    entered = threading.Event()

    def handler(event: chronica.Event) -> None:
        entered.set()
        with lock:
            pass

    with chronica.Director() as d:
        bus = chronica.EventBus(d)
        bus.on("t", handler)
        with lock:
            bus.emit("t", b"x")
            assert entered.wait(DEADLINE)
            del bus
            gc.collect()  # returns: nothing waits for the handler here
        _gone(d)


def test_a_collected_bus_leaves_a_closed_director_and_a_closed_bus_alone() -> None:
    """Nothing to end: the director's close, or the bus's, has ended them."""
    d = chronica.Director()
    bus = chronica.EventBus(d)
    bus.on("t", lambda e: None)
    d.close(timeout=5.0)
    del bus
    gc.collect()
    with chronica.Director() as d:
        d.register("plain", Recorder())
        bus = chronica.EventBus(d)
        bus.on("t", lambda e: None)
        assert bus.close(timeout=1.0) == 0
        del bus
        gc.collect()
        assert d.nodes() == ["plain"]


def test_a_collected_bus_that_made_its_director_closes_it() -> None:
    """Unchanged: the director it made closes itself when collected."""
    bus = chronica.EventBus()
    director = weakref.ref(bus.director)
    bus.on("t", lambda e: None)
    del bus
    gc.collect()
    assert director() is None


EVENTS = 200

Record = Callable[[chronica.Event], None]


class BusOwner:
    """Holds a bus whose handler is one of its bound methods:
    owner -> bus -> subscription (and node) -> bound method -> owner."""

    def __init__(self, bus: chronica.EventBus, record: Record) -> None:
        self.bus = bus
        self.record = record
        self.sub = bus.on("t", self.handle)

    def handle(self, event: chronica.Event) -> None:
        self.record(event)
        assert self.bus.subscriptions


def bus_in_a_cycle(shares: bool, cycle: str, record: Record) -> Tuple[chronica.EventBus, chronica.Subscription]:
    """A bus (with a director of its own, or sharing one that nothing else
    references) whose handler references it; a function of its own, so
    that the test's ``del`` of the bus leaves the closure's reference."""
    # One event a batch, so that the handler's pause below adds up.
    bus = chronica.EventBus(chronica.Director(batch_size=1)) if shares else chronica.EventBus(batch_size=1)
    if cycle == "bound_method":
        owner = BusOwner(bus, record)
        return bus, owner.sub

    def handler(event: chronica.Event) -> None:
        record(event)
        assert bus.subscriptions  # the cycle: bus -> its subscription -> handler -> bus

    return bus, bus.on("t", handler)


def ended(tids: "set[int]") -> bool:
    """Whether none of these threads (native ids) runs any more."""
    return not any(os.path.exists(f"/proc/self/task/{t}") for t in tids)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc")
@pytest.mark.parametrize("shares", [False, True], ids=["own_director", "shared_director"])
@pytest.mark.parametrize("cycle", ["closure", "bound_method"])
def test_a_bus_its_handler_references_is_collected_and_closes_first(shares: bool, cycle: str) -> None:
    """The bus's list held its subscriptions (and the director it shares)
    where the cycle collector could not see them: a bus referenced from
    its own handler was never collected, its director's threads running
    until exit. It is now collected with its director (one of its own, or
    a shared one nothing else references), which closes before the
    collector clears anything: the events waiting are delivered, in order,
    to handlers still whole, and the threads end."""
    got: List[int] = []
    tids: "set[int]" = set()

    def record(event: chronica.Event) -> None:
        # A pause: the emits outrun it, so that events wait when the
        # collection starts (their drain takes 0.2 s).
        time.sleep(0.001)
        tids.add(threading.get_native_id())
        got.append(int.from_bytes(event.payload, "big"))

    bus, sub = bus_in_a_cycle(shares, cycle, record)
    gone = [weakref.ref(bus), weakref.ref(bus.director)]
    # The root event delivered and returned: a handler in flight references
    # the cycle from its thread's stack, which keeps it alive (rightly).
    wait_for(lambda: bus.stats(sub).delivered == 1, what="the root event")
    # The GIL stays with this thread from the first emit to the
    # collection (a switch interval longer than the test), so no handler
    # is in flight when it starts and every event is still waiting.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(60)
    try:
        for i in range(EVENTS):
            bus.emit("t", i.to_bytes(2, "big"))
        del bus, sub
        gc.collect()
    finally:
        sys.setswitchinterval(interval)
    assert [g() for g in gone] == [None, None]
    assert got == list(range(EVENTS))
    wait_for(lambda: ended(tids), what="the delivery thread to end")
