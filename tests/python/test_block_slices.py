"""On the main thread a blocking emit (overflow="block", a target full)
waits for room in 50 ms slices, each refused whole, so that Ctrl-C can end
it (test_interrupt.py). Without Ctrl-C it behaves as the single wait it
replaced: it gets through once room appears, and at block_timeout it fails
with QueueFullError having accepted nothing (a Distributed's emit then
pushes under the lane's rule, as it always has). pytest runs the tests on
the main thread, where the slices are."""

import threading
from typing import Callable

import pytest

import chronica
from conftest import Recorder, fresh_distributed, wait_for


def make(kind: str, block_timeout: float):
    settings = dict(queue_capacity=1, overflow="block", block_timeout=block_timeout)
    if kind == "director":
        return chronica.Director(**settings)
    return fresh_distributed(**settings)


def stats_of(d) -> Callable[[str], chronica.NodeStats]:
    return d.stats if isinstance(d, chronica.Director) else d.node_stats


def full_lane(kind: str, block_timeout: float):
    """A director (or fabric) whose node "slow" holds the pull and "first",
    which fills its user lane, and whose node "fast" has room."""
    d = make(kind, block_timeout)
    slow, fast = Recorder(), Recorder()
    d.register("slow", slow, connected=False)
    d.register("fast", fast)
    d.emit_to("slow", "t", b"first")
    return d, slow, fast


EMITS = {
    "emit": lambda d: d.emit("t", b"late"),
    "emit_to": lambda d: d.emit_to("slow", "t", b"late"),
}


def test_this_runs_on_the_main_thread():
    assert threading.current_thread() is threading.main_thread()


@pytest.mark.parametrize("kind", ["director", "distributed"])
@pytest.mark.parametrize("emit", sorted(EMITS))
def test_a_blocking_emit_gets_through_once_room_appears(emit, kind):
    # Room comes after several slices; the emit waits on through them.
    d, slow, fast = full_lane(kind, 60.0)
    try:
        threading.Timer(0.3, d.node_connected, args=("slow",)).start()
        EMITS[emit](d)
        assert [e.payload for e in slow.wait_user(2)] == [b"first", b"late"]
        if emit == "emit":
            assert [e.payload for e in fast.wait_user(1)] == [b"late"]
        stats = stats_of(d)
        wait_for(lambda: stats("slow").pending == 0, what="slow to drain")
        s = stats("slow")
        assert (s.accepted, s.dropped, s.balanced()) == (3, 0, True)
    finally:
        d.close(10.0)


@pytest.mark.parametrize("kind", ["director", "distributed"])
@pytest.mark.parametrize("emit", sorted(EMITS))
def test_a_blocking_emit_still_ends_at_block_timeout(emit, kind):
    d, slow, fast = full_lane(kind, 0.3)
    try:
        stats = stats_of(d)
        before, fast_before = stats("slow"), stats("fast")
        if kind == "distributed" and emit == "emit":
            # A fabric's emit pushes under the lane's rule at block_timeout:
            # accepted, then dropped as the newest.
            EMITS[emit](d)
            after = stats("slow")
            assert (after.accepted - before.accepted, after.dropped) == (1, 1)
        else:
            with pytest.raises(chronica.QueueFullError):
                EMITS[emit](d)
            after = stats("slow")
            assert (after.accepted, after.dropped) == (before.accepted, 0)
            assert stats("fast").accepted == fast_before.accepted, "a refused emit reaches nobody"
        assert after.balanced()
    finally:
        d.node_connected("slow")
        d.close(10.0)
