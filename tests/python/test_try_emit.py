"""``try_emit`` / ``try_emit_to`` of ``Director`` and ``Distributed``: the
emit that never waits, as Rust's ``try_emit``, C's
``chronica_director_try_emit`` and C++'s ``try_emit`` (which returns
false). A full target under ``block`` makes it return None at once,
nothing accepted anywhere; otherwise it returns the event id, and raises
what ``emit`` raises."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Iterator, Tuple

import pytest

import chronica
from conftest import Recorder, fresh_distributed, wait_for

BLOCK_TIMEOUT = 30.0


def stats(h: Any, uid: str) -> chronica.NodeStats:
    return h.stats(uid) if isinstance(h, chronica.Director) else h.node_stats(uid)


def counters(h: Any) -> Dict[str, Tuple[int, ...]]:
    out = {}
    for uid in h.nodes():
        s = stats(h, uid)
        assert s.balanced(), (uid, s)
        out[uid] = (s.accepted, s.delivered, s.dropped, s.dead_lettered, s.pending)
    return out


class Gate:
    """A callback that holds its first batch until ``release``."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()
        self.recorder = Recorder()

    def __call__(self, events: Any) -> None:
        self.entered.set()
        self.open.wait(60.0)
        self.recorder(events)


# (kind, where "block" is set): the director's policy, or the node's own.
HOSTS = [("Director", "director"), ("Director", "node"), ("Distributed", "director"), ("Distributed", "node")]


@pytest.fixture(params=HOSTS, ids=[f"{k}-{w}" for k, w in HOSTS])
def blocked(request: pytest.FixtureRequest) -> Iterator[Tuple[Any, Gate, Recorder]]:
    """A host whose node "slow" (queue_capacity 2, ``block``) is inside its
    first callback with a full user lane, and a fast node "fast"."""
    kind, where = request.param
    settings: Dict[str, Any] = {"queue_capacity": 2, "block_timeout": BLOCK_TIMEOUT}
    if where == "director":
        settings["overflow"] = "block"
    h: Any = chronica.Director(**settings) if kind == "Director" else fresh_distributed(**settings)
    gate, fast = Gate(), Recorder()
    h.register("slow", gate, topics="t", **({"overflow": "block"} if where == "node" else {}))
    h.register("fast", fast, topics="t")
    assert gate.entered.wait(20.0)
    h.emit("t", b"1")
    h.emit("t", b"2")
    wait_for(lambda: stats(h, "fast").pending == 0 and len(fast.user()) == 2, what="fast to drain")
    assert stats(h, "slow").pending == 3  # the pull in flight and the full lane
    yield h, gate, fast
    gate.open.set()
    if not h.closed:
        h.close(5.0)


def test_try_emit_returns_none_at_once_and_changes_nothing(blocked: Tuple[Any, Gate, Recorder]) -> None:
    h, gate, fast = blocked
    before = counters(h)
    published = h.stats().published if isinstance(h, chronica.Distributed) else None
    start = time.monotonic()
    assert h.try_emit("t", b"3") is None
    assert h.try_emit_to("slow", "t", b"3") is None
    # Not a speed assertion: a wait would last block_timeout (30 s).
    assert time.monotonic() - start < BLOCK_TIMEOUT / 2
    assert counters(h) == before, "a refused try_emit accepted nothing anywhere"
    if published is not None:
        assert h.stats().published == published, "nor published it"
    # A target with room takes it, as emit_to would.
    assert isinstance(h.try_emit_to("fast", "t", b"direct"), int)
    gate.open.set()
    wait_for(lambda: stats(h, "slow").pending == 0, what="slow to drain")
    sent = h.try_emit("t", b"4")
    assert isinstance(sent, int)
    assert isinstance(h.try_emit_to("slow", "t", b"5"), int)
    wait_for(lambda: len(gate.recorder.user()) == 4, what="slow to get 4")
    assert gate.recorder.payloads() == [b"1", b"2", b"4", b"5"]
    wait_for(lambda: b"4" in fast.payloads(), what="fast to get 4")
    assert fast.payloads() == [b"1", b"2", b"direct", b"4"]


def test_try_emit_is_emit_under_the_dropping_policies() -> None:
    with chronica.Director(queue_capacity=1) as d:
        d.register("n", Recorder(), connected=False)
        first = d.try_emit("t", b"1")
        second = d.try_emit_to("n", "t", b"2", key="k", content_type="text/plain")
        assert isinstance(first, int) and isinstance(second, int) and second > first
        s = d.stats("n")
        assert (s.accepted, s.dropped) == (3, 1), "drop_oldest made room, as emit does"


def test_try_emit_raises_what_emit_raises() -> None:
    d = chronica.Director()
    d.register("n", Recorder())
    with pytest.raises(chronica.UnknownNodeError):
        d.try_emit_to("nobody", "t", b"")
    with pytest.raises(chronica.UnknownNodeError):
        d.try_emit("t", b"", source="nobody")
    with pytest.raises(TypeError):
        d.try_emit("t", object())
    with pytest.raises(ValueError):
        d.try_emit("t", float("nan"))
    d.close()
    with pytest.raises(chronica.ClosedError):
        d.try_emit("t", b"")
    with pytest.raises(chronica.ClosedError):
        d.try_emit_to("n", "t", b"")
    f = fresh_distributed()
    f.close()
    with pytest.raises(chronica.ClosedError):
        f.try_emit("t", b"")
    with pytest.raises(chronica.ClosedError):
        f.try_emit_to("n", "t", b"")


def test_try_emit_from_inside_a_callback_does_not_wait_for_itself() -> None:
    """A node's callback try-emitting into its own full lane under block
    gets None at once (emit would find the wait circular and raise)."""
    answers = []
    with chronica.Director(queue_capacity=1, overflow="block", block_timeout=BLOCK_TIMEOUT) as d:

        def cb(events: Any) -> None:
            if any(e.topic == chronica.PULL_CURRENT_STATE for e in events):
                answers.append(d.try_emit_to("n", "t", b"1"))
                answers.append(d.try_emit_to("n", "t", b"2"))

        d.register("n", cb)
        wait_for(lambda: len(answers) == 2, what="the callback's try_emits")
    assert isinstance(answers[0], int) and answers[1] is None
