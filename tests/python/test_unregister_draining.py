"""``Director.unregister_draining``: the node leaves the routes at once,
delivers what it holds until a deadline, then leaves like ``unregister``,
and its final counters come back."""

from __future__ import annotations

import threading
from typing import List

import pytest

import chronica
from conftest import Recorder, wait_for


def test_what_the_node_held_is_delivered_in_order(director: chronica.Director) -> None:
    hold = threading.Event()
    seen: List[bytes] = []

    def held(events: List[chronica.Event]) -> None:
        hold.wait(20)
        seen.extend(e.payload for e in events if e.kind == "user")

    director.register("n", held)
    for i in range(50):
        director.emit("t", str(i))
    result: List[chronica.NodeStats] = []
    drain = threading.Thread(target=lambda: result.append(director.unregister_draining("n", 60.0)))
    drain.start()
    wait_for(lambda: director.nodes() == [], what="n to leave the routes")
    # The uid is free at once; what is emitted now reaches the newcomer.
    newcomer = Recorder()
    director.register("n", newcomer)
    director.emit("later", b"x")
    hold.set()
    drain.join(30)
    assert not drain.is_alive()
    (last,) = result
    assert seen == [str(i).encode() for i in range(50)]
    assert (last.accepted, last.delivered, last.dropped, last.pending) == (51, 51, 0, 0)
    assert [e.topic for e in newcomer.wait_user(1)] == ["later"]


def test_at_the_deadline_what_is_left_is_dropped_and_counted() -> None:
    dropped: List[str] = []
    d = chronica.Director(
        retry=chronica.Retry(initial=0.005, max=0.02, jitter=0.0),
        on_drop=lambda uid, event, reason: dropped.append(reason),
    )
    try:

        def failing(events: List[chronica.Event]) -> None:
            raise RuntimeError("backend down")

        d.register("n", failing)
        for _ in range(3):
            d.emit("t", b"")
        last = d.unregister_draining("n", 0.3)
        assert last.failures > 0 and last.last_error == "RuntimeError: backend down"
        assert (last.delivered, last.dropped, last.pending) == (0, 4, 0), last
        assert dropped == ["unregistered"] * 4
    finally:
        d.close(5.0)


def test_a_disconnected_node_ends_at_once(director: chronica.Director) -> None:
    director.register("n", Recorder(), connected=False)
    director.emit("t", b"")
    last = director.unregister_draining("n", 60.0)
    assert (last.accepted, last.delivered, last.dropped, last.pending) == (2, 0, 2, 0)


def test_from_inside_a_callback_it_returns_at_once(director: chronica.Director) -> None:
    hold = threading.Event()
    n = Recorder()

    def held(events: List[chronica.Event]) -> None:
        hold.wait(20)
        n(events)

    director.register("n", held)
    for _ in range(5):
        director.emit("t", b"")
    got: List[chronica.NodeStats] = []

    def ctl(events: List[chronica.Event]) -> None:
        if any(e.topic == "end" for e in events):
            got.append(director.unregister_draining("n", 60.0))
            hold.set()

    director.register("ctl", ctl)
    director.emit("end", b"")
    wait_for(lambda: len(got) == 1, what="the callback's call")
    assert got[0].pending > 0, "it waited for the held callback"
    n.wait_user(5)
    assert director.nodes() == ["ctl"]


def test_bad_arguments_change_nothing(director: chronica.Director) -> None:
    director.register("n", Recorder())
    with pytest.raises(TypeError, match="timeout"):
        director.unregister_draining("n", True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        director.unregister_draining("n", -1.0)
    with pytest.raises(chronica.UnknownNodeError):
        director.unregister_draining("ghost", 1.0)
    assert director.nodes() == ["n"]
    director.close(5.0)
    with pytest.raises(chronica.ClosedError):
        director.unregister_draining("n", 1.0)


def test_a_distributed_local_node_drains_too(fabric: chronica.Distributed) -> None:
    hold = threading.Event()
    seen: List[bytes] = []

    def held(events: List[chronica.Event]) -> None:
        hold.wait(20)
        seen.extend(e.payload for e in events if e.kind == "user")

    fabric.register("n", held)
    for i in range(5):
        fabric.emit("t", str(i))
    wait_for(lambda: fabric.node_stats("n").accepted == 6, what="the events to arrive")
    result: List[chronica.NodeStats] = []
    drain = threading.Thread(target=lambda: result.append(fabric.unregister_draining("n", 60.0)))
    drain.start()
    wait_for(lambda: "n" not in fabric.nodes(), what="n to leave the routes")
    assert seen == []
    hold.set()
    drain.join(30)
    (last,) = result
    assert seen == [str(i).encode() for i in range(5)]
    assert (last.accepted, last.delivered, last.pending) == (6, 6, 0)
