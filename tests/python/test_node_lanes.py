"""A node's own lane settings, ``register(root_capacity=, overflow=)``, as
Rust's ``NodeOptions``, C's ``chronica_node_options`` and C++'s
``NodeOptions`` have them: they override the director's for that node
only, and are refused as the director's own are."""

from __future__ import annotations

import threading
from typing import Any, Iterator, List

import pytest

import chronica
from conftest import Recorder, fresh_distributed, settle, wait_for

@pytest.fixture(params=["Director", "Distributed"])
def host(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A director (drop_oldest, queue_capacity 4) or a lone Distributed set so."""
    h: Any = (
        chronica.Director(queue_capacity=4)
        if request.param == "Director"
        else fresh_distributed(queue_capacity=4)
    )
    yield h
    if not h.closed:
        h.close(5.0)


def stats(h: Any, uid: str) -> chronica.NodeStats:
    return h.stats(uid) if isinstance(h, chronica.Director) else h.node_stats(uid)


def test_a_node_drop_newest_under_a_drop_oldest_director_keeps_its_oldest(host: Any) -> None:
    own, inherited = Recorder(), Recorder()
    host.register("own", own, connected=False, overflow="drop_newest")
    host.register("inherited", inherited, connected=False)
    for i in range(10):
        host.emit("t", bytes([i]))
    for uid in ("own", "inherited"):
        s = stats(host, uid)
        assert (s.dropped, s.pending) == (6, 5) and s.balanced(), (uid, s)
        host.node_connected(uid)
    assert [e.payload for e in own.wait_user(4)] == [bytes([i]) for i in range(4)]
    assert [e.payload for e in inherited.wait_user(4)] == [bytes([i]) for i in range(6, 10)]


def drained_roots(h: Any, uid: str, r: Recorder) -> List[str]:
    h.node_connected(uid)
    wait_for(lambda: stats(h, uid).pending == 0, what=f"{uid} to drain")
    return [e.topic for e in r.root()]


def test_root_capacity_one_caps_the_nodes_root_lane(host: Any) -> None:
    """Its pull event waits in its root lane (disconnected; the engine pins
    a node's first event, so no overflow evicts it): a second root event
    finds the lane full and is dropped, counted and reported by a lag
    notice. A node with the director's root capacity keeps both."""
    small, big = Recorder(), Recorder()
    host.register("small", small, connected=False, root_capacity=1)
    host.register("big", big, connected=False)
    host.emit_root("r1")
    s, b = stats(host, "small"), stats(host, "big")
    assert (s.accepted, s.dropped, s.pending) == (2, 1, 1) and s.balanced(), s
    assert (b.accepted, b.dropped, b.pending) == (2, 0, 2) and b.balanced(), b
    assert drained_roots(host, "small", small) == [chronica.PULL_CURRENT_STATE, chronica.LAGGED]
    assert small.root()[1].json()["dropped"] == 1
    assert drained_roots(host, "big", big) == [chronica.PULL_CURRENT_STATE, "r1"]


@pytest.mark.parametrize("policy, kept", [("drop_oldest", "r2"), ("drop_newest", "r1")])
def test_a_nodes_overflow_rules_its_root_lane_too(host: Any, policy: str, kept: str) -> None:
    """Root lane of 2, the pinned pull and r1 in it: r2 evicts r1 under
    drop_oldest, is refused under drop_newest (the engine's rule for root
    events: they never wait)."""
    r = Recorder()
    host.register("n", r, connected=False, root_capacity=2, overflow=policy)
    host.emit_root("r1")
    host.emit_root("r2")
    s = stats(host, "n")
    assert (s.accepted, s.dropped, s.pending) == (3, 1, 2), s
    assert drained_roots(host, "n", r) == [chronica.PULL_CURRENT_STATE, chronica.LAGGED, kept]


BAD_VALUES = [
    ({"root_capacity": 0}, "root_capacity must be at least 1, got 0"),
    ({"root_capacity": -3}, "root_capacity must be at least 1, got -3"),
    ({"overflow": "sometimes"}, "overflow must be 'drop_oldest', 'drop_newest' or 'block', got \"sometimes\""),
    ({"overflow": ""}, "overflow must be 'drop_oldest', 'drop_newest' or 'block', got \"\""),
]


@pytest.mark.parametrize("kwargs, text", BAD_VALUES)
def test_bad_values_are_refused_with_the_directors_errors(host: Any, kwargs: Any, text: str) -> None:
    with pytest.raises(chronica.InvalidArgumentError) as info:
        chronica.Director(**kwargs)
    assert str(info.value) == text
    with pytest.raises(chronica.InvalidArgumentError) as info:
        host.register("a", Recorder(), **kwargs)
    assert str(info.value) == text
    assert host.nodes() == []


@pytest.mark.parametrize("value", [3, b"block", ["block"]])
def test_an_overflow_that_is_not_a_str_is_a_type_error(host: Any, value: Any) -> None:
    with pytest.raises(TypeError):
        chronica.Director(overflow=value)
    with pytest.raises(TypeError):
        host.register("a", Recorder(), overflow=value)
    assert host.nodes() == []


def test_a_blocking_node_under_a_dropping_director_makes_emit_wait_without_the_gil() -> None:
    """Under the director's drop_oldest, an emit used to call the engine's
    waiting emit with the GIL held: a node of its own ``block`` policy
    whose lane was full then made it wait, GIL held, for room that its
    delivery thread, wanting the GIL to run the callback, could not make,
    until ``block_timeout`` ran out (QueueFullError). With a long
    ``block_timeout`` that is a failure within the test's deadline, not a
    speed assertion: every emit must succeed and every event arrive."""
    with chronica.Director(block_timeout=30.0) as d:
        r = Recorder()
        d.register("n", r, overflow="block", queue_capacity=1)
        done: List[BaseException] = []

        def emitter() -> None:
            try:
                for i in range(200):
                    d.emit("t", bytes([i]))
            except BaseException as e:  # reported by the assert below
                done.append(e)

        t = threading.Thread(target=emitter)
        t.start()
        t.join(20.0)  # returns late if the emitter holds the GIL meanwhile
        assert not t.is_alive() and done == [], f"emit waited with the GIL held: {done}"
        assert [e.payload for e in r.wait_user(200)] == [bytes([i]) for i in range(200)]
        assert settle(d, "n").dropped == 0
