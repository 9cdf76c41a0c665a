"""An EventBus subscription's lifetime against races and against its node
being ended straight on the director: the guarantees of the Rust bus
(docs/BUS.md, "Model"), which the Python bus lacked until it used the
engine's registration identity and the list of ``chronica._BusList``.

Handlers are held with ``threading.Event``; nothing asserts a duration.
"""

from __future__ import annotations

import threading
from typing import Any, List, Optional

import pytest

import chronica
from conftest import DEADLINE, wait_for


def _bus_nodes(d: chronica.Director) -> List[str]:
    return [uid for uid in d.nodes() if uid.startswith("bus.sub.")]


class Held:
    """A handler that reports each call on ``entered`` and waits for
    ``release``; ``running`` counts calls in flight."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = 0

    def __call__(self, event: chronica.Event) -> None:
        with self.lock:
            self.running += 1
        try:
            self.entered.set()
            assert self.release.wait(DEADLINE), "never released"
        finally:
            with self.lock:
                self.running -= 1


# -- (1) on racing close ---------------------------------------------------


class _Blocking:
    """A number whose ``__float__`` waits: it holds an ``on`` inside its
    argument checks, after the bus's open check and before it registers."""

    def __init__(self, entered: threading.Event, release: threading.Event) -> None:
        self.entered, self.release = entered, release

    def __float__(self) -> float:
        self.entered.set()
        assert self.release.wait(DEADLINE)
        return 0.1


def test_an_on_overtaken_by_close_registers_nothing() -> None:
    """An ``on`` that passed the bus's open check before a close and
    registers after it is refused with ClosedError, leaving nothing
    registered. It used to register its node after the close had returned,
    a subscription of a closed bus alive until the director closed."""
    with chronica.Director() as d:
        bus = chronica.EventBus(d)
        entered, release = threading.Event(), threading.Event()
        result: List[Any] = []

        def subscribe() -> None:
            try:
                result.append(bus.on("t", lambda e: None, retry={"initial": _Blocking(entered, release)}))
            except BaseException as e:  # noqa: BLE001 - recorded for the assert
                result.append(e)

        t = threading.Thread(target=subscribe)
        t.start()
        assert entered.wait(DEADLINE)
        assert bus.close(timeout=1.0) == 0
        release.set()
        t.join(DEADLINE)
        assert isinstance(result[0], chronica.ClosedError), result
        assert _bus_nodes(d) == [], "a subscription was registered after the bus close"
        assert bus.subscriptions == []


def test_a_bus_close_during_on_s_registration_ends_the_subscription() -> None:
    """A close while ``on`` is inside the director's registration (here in
    the drop hook of its own join notice, its node registered by then) does
    not wait for that ``on`` and ends the subscription before returning;
    ``on`` then returns a subscription that has already ended."""
    entered, release = threading.Event(), threading.Event()

    def on_drop(uid: str, event: chronica.Event, reason: str) -> None:
        if event.topic == chronica.NODE_JOINED:
            entered.set()
            assert release.wait(DEADLINE)

    with chronica.Director(membership_events=True, root_capacity=1, on_drop=on_drop) as d:
        # Never takes its root lane, full with its own pull: every notice
        # to it is dropped, in the registering call.
        d.register("obs", lambda events: None, connected=False)
        bus = chronica.EventBus(d)
        result: List[Any] = []
        t = threading.Thread(target=lambda: result.append(bus.on("t", lambda e: None)))
        t.start()
        assert entered.wait(DEADLINE)
        assert bus.close(timeout=5.0) == 0
        left = _bus_nodes(d)
        release.set()
        t.join(DEADLINE)
        assert left == [], "a subscription outlived the bus close"
        assert isinstance(result[0], chronica.Subscription), result
        assert bus.subscriptions == []
        with pytest.raises(chronica.ClosedError):
            bus.off(result[0])


@pytest.mark.parametrize("round_", range(20))
def test_on_racing_a_bus_close_leaves_nothing_registered(round_: int) -> None:
    """``on`` from three threads racing the close: each call succeeds (and
    the close ends its subscription) or raises ClosedError; once the close
    has returned no node of the bus is registered."""
    with chronica.Director() as d:
        bus = chronica.EventBus(d)
        ok = [0]
        errors: List[BaseException] = []
        lock = threading.Lock()

        def subscribe() -> None:
            while True:
                try:
                    bus.on("t", lambda e: None)
                except chronica.ClosedError:
                    return
                except BaseException as e:  # noqa: BLE001
                    errors.append(e)
                    return
                with lock:
                    ok[0] += 1

        threads = [threading.Thread(target=subscribe) for _ in range(3)]
        for t in threads:
            t.start()
        wait_for(lambda: ok[0] >= 2 + round_ % 5, what="some subscriptions")
        bus.close(timeout=5.0)
        left = _bus_nodes(d)
        for t in threads:
            t.join(DEADLINE)
        assert errors == []
        assert left == [], f"registered after the bus close: {left}"
        assert _bus_nodes(d) == []
        assert bus.subscriptions == []


# -- (2) identity, and (4) subscriptions ended behind the bus's back ------------


def test_a_subscription_ended_on_the_director_leaves_the_bus() -> None:
    """A subscription whose node is unregistered straight on the director
    is no longer listed; ``stats`` and ``off`` raise UnknownNodeError; and
    when a plain node takes its uid, neither ``stats``, ``off`` nor
    ``close`` touches that node. The bus used to list it until an ``off``,
    which (like ``stats`` and ``close``) acted on whatever held the uid."""
    with chronica.Director() as d:
        bus = chronica.EventBus(d)
        sub = bus.on("t", lambda e: None)
        d.unregister(sub.uid)
        assert bus.subscriptions == [], "the bus still lists the ended subscription"
        with pytest.raises(chronica.UnknownNodeError):
            bus.stats(sub)
        d.register(sub.uid, lambda events: None, topics="t")
        with pytest.raises(chronica.UnknownNodeError):
            bus.stats(sub)
        with pytest.raises(chronica.UnknownNodeError):
            bus.off(sub)
        assert d.nodes() == [sub.uid], "the off ended the plain node"
        assert bus.close(timeout=1.0) == 0
        assert d.nodes() == [sub.uid], "the bus close ended the plain node"
        with pytest.raises(chronica.ClosedError):
            bus.off(sub)


def test_a_director_close_unlists_and_stats_give_the_final_counters() -> None:
    """A close of the director ends the subscriptions: the bus lists none,
    ``off`` raises ClosedError and ``stats`` gives the final counters."""
    d = chronica.Director()
    bus = chronica.EventBus(d)
    sub = bus.on("t", lambda e: None)
    bus.emit("t", b"x")
    wait_for(lambda: d.stats(sub.uid).delivered == 2, what="the pull and the event")
    d.close(timeout=5.0)
    assert bus.subscriptions == []
    last = bus.stats(sub)
    assert (last.accepted, last.delivered, last.pending) == (2, 2, 0), last
    with pytest.raises(chronica.ClosedError):
        bus.off(sub)
    assert bus.close(timeout=1.0) == 0


def test_stats_after_a_director_close_read_only_the_subscription_s_node() -> None:
    """After a director close, ``stats`` of an ended subscription does not
    read the plain node that took its uid (it used to)."""
    d = chronica.Director()
    bus = chronica.EventBus(d)
    sub = bus.on("t", lambda e: None)
    d.unregister(sub.uid)
    d.register(sub.uid, lambda events: None, topics="t")
    d.emit("t", b"x")
    wait_for(lambda: d.stats(sub.uid).delivered == 2, what="the plain node's pull and event")
    d.close(timeout=5.0)
    with pytest.raises(chronica.UnknownNodeError):
        bus.stats(sub)


def test_a_uid_taken_while_the_ended_handler_still_runs_is_left_alone() -> None:
    """A subscription unregistered from inside its own handler (an
    unregister that cannot wait for that handler) stays listed until the
    handler returns; a plain node registered under its uid meanwhile is not
    the subscription: ``stats``, ``off`` and ``close`` leave it alone."""
    with chronica.Director() as d:
        bus = chronica.EventBus(d)
        held = Held()
        plain_seen: List[chronica.Event] = []
        swapped = threading.Event()
        subs: List[chronica.Subscription] = []

        def swap_then_hold(event: chronica.Event) -> None:
            d.unregister(subs[0].uid)  # from its own handler: does not wait
            d.register(subs[0].uid, plain_seen.extend, topics="t")
            swapped.set()
            held(event)

        sub = bus.on("t", swap_then_hold)
        subs.append(sub)
        bus.emit("t", b"x")
        assert swapped.wait(DEADLINE)
        with pytest.raises(chronica.UnknownNodeError):
            bus.stats(sub)
        with pytest.raises(chronica.UnknownNodeError):
            bus.off(sub)
        assert sub.uid in d.nodes(), "the off ended the plain node"
        assert bus.close(timeout=1.0) == 0
        assert sub.uid in d.nodes(), "the bus close ended the plain node"
        held.release.set()
        wait_for(lambda: bus.subscriptions == [], what="the ended subscription to leave the bus")
        d.emit("t", b"y")
        wait_for(lambda: [e.payload for e in plain_seen if e.kind == "user"] == [b"y"], what="the plain node")


# -- (3) off racing close ----------------------------------------------------


def test_an_off_during_a_close_returns_closed_once_the_subscription_has_ended() -> None:
    """An ``off`` of a subscription that the bus's close is ending waits for
    it to end, then raises ClosedError. It used to return at once (with
    UnknownNodeError), the handler still running."""
    with chronica.Director() as d:
        bus = chronica.EventBus(d)
        held = Held()
        sub = bus.on("t", held)
        bus.emit("t", b"x")
        assert held.entered.wait(DEADLINE)
        closer = threading.Thread(target=bus.close, kwargs={"timeout": 0.0})
        closer.start()
        wait_for(lambda: bus.closed, what="the close to begin")
        outcome: List[Any] = []

        def off() -> None:
            try:
                outcome.append(bus.off(sub, timeout=0.0))
            except BaseException as e:  # noqa: BLE001
                outcome.append(e)
            with held.lock:
                outcome.append(held.running)

        t = threading.Thread(target=off)
        t.start()
        t.join(0.2)  # a grace period for the off to start waiting, not an assert
        held.release.set()
        t.join(DEADLINE)
        closer.join(DEADLINE)
        assert isinstance(outcome[0], chronica.ClosedError), outcome
        assert outcome[1] == 0, "off returned with the handler still running"
        assert _bus_nodes(d) == []


@pytest.mark.parametrize("owned", [False, True])
def test_off_racing_a_bus_close_returns_once_the_subscription_has_ended(owned: bool) -> None:
    """``off`` racing the bus's ``close`` from two threads, many rounds, with
    events in flight: ``off`` returns stats when it ended the subscription
    or raises ClosedError when the close did, in both cases once no call of
    the handler runs and its node is gone; the close returns likewise."""
    for round_ in range(40):
        d: Optional[chronica.Director] = None if owned else chronica.Director()
        bus = chronica.EventBus() if owned else chronica.EventBus(d)
        director = bus.director
        running = [0]
        lock = threading.Lock()

        def handler(event: chronica.Event) -> None:
            with lock:
                running[0] += 1
            threading.Event().wait(0.001)
            with lock:
                running[0] -= 1

        sub = bus.on("t", handler)
        for _ in range(5):
            bus.emit("t", b"x")
        start = threading.Barrier(2)
        closed: List[Any] = []

        def close() -> None:
            start.wait()
            for _ in range(round_ % 4 * 50):
                pass
            try:
                closed.append(bus.close(timeout=5.0))
            except BaseException as e:  # noqa: BLE001
                closed.append(e)
            with lock:
                closed.append(running[0])
            closed.append(not owned and sub.uid in director.nodes())

        closer = threading.Thread(target=close)
        closer.start()
        start.wait()
        try:
            off: Any = bus.off(sub)
        except BaseException as e:  # noqa: BLE001
            off = e
        with lock:
            alive = running[0]
        # A closed director still names the nodes it closed.
        still = not owned and sub.uid in director.nodes()
        closer.join(DEADLINE)
        assert isinstance(off, (chronica.NodeStats, chronica.ClosedError)), f"round {round_}: {off!r}"
        assert (alive, still) == (0, False), f"round {round_}: off returned {off!r} before the end"
        assert isinstance(closed[0], int), f"round {round_}: {closed[0]!r}"
        assert closed[1:] == [0, False], f"round {round_}: the close returned before the end"
        if d is not None:
            d.close()


# -- parity with the Rust bus ----------------------------------------------


def test_a_close_from_inside_a_handler_is_refused_and_changes_nothing() -> None:
    director = chronica.Director()
    try:
        bus = chronica.EventBus(director)
        got: List[BaseException] = []
        done = threading.Event()

        def handler(event: chronica.Event) -> None:
            try:
                bus.close()
            except BaseException as e:  # noqa: BLE001 - recorded for the test
                got.append(e)
            done.set()

        sub = bus.on("t", handler)
        other = bus.on("t", lambda e: None)
        bus.emit("t", b"x")
        assert done.wait(DEADLINE)
        assert len(got) == 1 and isinstance(got[0], chronica.ReentrantError), got
        assert not bus.closed
        assert [s.uid for s in bus.subscriptions] == [sub.uid, other.uid]
        assert sorted(_bus_nodes(director)) == sorted([sub.uid, other.uid])
        assert bus.close() == 0
        assert _bus_nodes(director) == []
    finally:
        director.close()


def test_a_uid_held_by_a_plain_node_is_skipped() -> None:
    director = chronica.Director()
    try:
        bus = chronica.EventBus(director)
        first = bus.on("t", lambda e: None)
        # The next subscription's uid, taken by a plain node first.
        taken = f"bus.sub.{first._number + 1}"
        director.register(taken, lambda events: None)
        seen: List[chronica.Event] = []
        sub = bus.on("t", seen.append)
        assert sub.uid != taken and sub.uid.startswith("bus.sub."), sub.uid
        assert taken in director.nodes() and sub.uid in director.nodes()
        bus.emit("t", b"x")
        wait_for(lambda: len(seen) == 1, what="the delivery")
        bus.off(sub)
        assert taken in director.nodes() and sub.uid not in director.nodes()
        bus.close()
        assert director.nodes() == [taken]
    finally:
        director.close()
