"""``Director.unregister_draining``: the node leaves the routes at once,
delivers what it holds until a deadline, then leaves like ``unregister``,
and its final counters come back."""

from __future__ import annotations

import threading
from typing import Any, List, Tuple

import pytest

import chronica
from conftest import Recorder, wait_for


class Held:
    """A node that waits inside its callback until ``release``, then keeps
    the payloads of its user events."""

    def __init__(self) -> None:
        self.hold = threading.Event()
        self.seen: List[bytes] = []

    def __call__(self, events: List[chronica.Event]) -> None:
        self.hold.wait(20)
        self.seen.extend(e.payload for e in events if e.kind == "user")

    def release(self) -> None:
        self.hold.set()


def drain_once_gone(host: Any, uid: str) -> Tuple[threading.Thread, List[chronica.NodeStats]]:
    """Starts ``host.unregister_draining(uid, 60)`` on a thread and waits
    until ``uid`` has left the routes; the result lands in the list."""
    result: List[chronica.NodeStats] = []
    drain = threading.Thread(target=lambda: result.append(host.unregister_draining(uid, 60.0)))
    drain.start()
    wait_for(lambda: uid not in host.nodes(), what=f"{uid} to leave the routes")
    return drain, result


def test_what_the_node_held_is_delivered_in_order(director: chronica.Director) -> None:
    held = Held()
    director.register("n", held)
    for i in range(50):
        director.emit("t", str(i))
    drain, result = drain_once_gone(director, "n")
    # The uid is free at once; what is emitted now reaches the newcomer.
    newcomer = Recorder()
    director.register("n", newcomer)
    director.emit("later", b"x")
    held.release()
    drain.join(30)
    assert not drain.is_alive()
    (last,) = result
    assert held.seen == [str(i).encode() for i in range(50)]
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
    held = Held()
    director.register("n", held)
    for _ in range(5):
        director.emit("t", b"")
    got: List[chronica.NodeStats] = []

    def ctl(events: List[chronica.Event]) -> None:
        if any(e.topic == "end" for e in events):
            got.append(director.unregister_draining("n", 60.0))
            held.release()

    director.register("ctl", ctl)
    director.emit_to("ctl", "end", b"")
    wait_for(lambda: len(got) == 1, what="the callback's call")
    assert got[0].pending > 0, "it waited for the held callback"
    wait_for(lambda: len(held.seen) == 5, what="the drain to deliver")
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
    held = Held()
    fabric.register("n", held)
    for i in range(5):
        fabric.emit("t", str(i))
    wait_for(lambda: fabric.node_stats("n").accepted == 6, what="the events to arrive")
    drain, result = drain_once_gone(fabric, "n")
    assert held.seen == []
    held.release()
    drain.join(30)
    (last,) = result
    assert held.seen == [str(i).encode() for i in range(5)]
    assert (last.accepted, last.delivered, last.pending) == (6, 6, 0)
