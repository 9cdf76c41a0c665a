"""Drop policies: drop_oldest (with the lagged notice), drop_newest, block."""

import threading
import time

import pytest

import chronica
from conftest import Recorder, settle


def fill(d, n):
    for i in range(n):
        d.emit("t", bytes([i]))


def test_drop_oldest_keeps_the_newest_and_reports_the_gap():
    drops = []
    with chronica.Director(
        queue_capacity=4, on_drop=lambda uid, event, reason: drops.append((uid, event.payload, reason))
    ) as d:
        r = Recorder()
        d.register("a", r, connected=False)
        fill(d, 10)
        s = d.stats("a")
        assert s.dropped == 6 and s.balanced()
        d.node_connected("a")
        events = r.wait_user(4)
        settle(d, "a")
        assert [e.payload for e in events] == [bytes([i]) for i in range(6, 10)]
        lagged = [e for e in r.root() if e.topic == chronica.LAGGED]
        assert len(lagged) == 1 and lagged[0].json()["dropped"] == 6
        assert [p for _, p, _ in drops] == [bytes([i]) for i in range(6)]
        assert all(reason == "overflow" and uid == "a" for uid, _, reason in drops)


def test_drop_newest_keeps_the_oldest():
    with chronica.Director(queue_capacity=4, overflow="drop_newest") as d:
        r = Recorder()
        d.register("a", r, connected=False)
        fill(d, 10)
        d.node_connected("a")
        events = r.wait_user(4)
        s = settle(d, "a")
        assert [e.payload for e in events] == [bytes([i]) for i in range(4)]
        assert s.dropped == 6 and s.balanced()


def test_block_times_out_with_queue_full_and_releases_the_gil():
    with chronica.Director(queue_capacity=2, overflow="block", block_timeout=0.3) as d:
        d.register("a", Recorder(), connected=False)
        fill(d, 2)
        ticks = []
        stop = threading.Event()

        def ticker():
            while not stop.is_set():
                ticks.append(1)
                time.sleep(0.01)

        t = threading.Thread(target=ticker)
        t.start()
        try:
            before = len(ticks)
            with pytest.raises(chronica.QueueFullError):
                d.emit("t", b"waits")
            # Another Python thread ran while the emitter waited in Rust.
            assert len(ticks) > before
        finally:
            stop.set()
            t.join()
        assert d.stats("a").accepted == 3  # pull_current_state + 2
        d.node_connected("a")


def test_block_waits_for_room():
    with chronica.Director(queue_capacity=2, overflow="block", block_timeout=10.0) as d:
        r = Recorder()
        d.register("a", r, connected=False)
        fill(d, 2)
        threading.Timer(0.2, d.node_connected, args=("a",)).start()
        d.emit("t", b"late")  # waits until the node drains
        r.wait_user(3)
        assert settle(d, "a").dropped == 0


def test_full_root_lane_under_block_drops_the_newest_without_waiting():
    # emit_root keeps the GIL; the drop hook (Python) runs on the emitting
    # thread while node "busy" holds its delivery thread in a callback that
    # needs the GIL to finish.
    drops = []
    release = threading.Event()

    def busy(events):
        release.wait(10)

    with chronica.Director(
        root_capacity=2,
        overflow="block",
        block_timeout=600.0,
        on_drop=lambda uid, event, reason: drops.append((uid, event.topic)),
    ) as d:
        d.register("busy", busy)
        r = Recorder()
        d.register("a", r, connected=False)
        for i in range(5):
            d.emit_root(f"r{i}")
        release.set()
        # "a" holds its pull_current_state and r0; r1..r4 were the newest.
        assert [t for uid, t in drops if uid == "a"] == ["r1", "r2", "r3", "r4"]
        d.node_connected("a")
        s = settle(d, "a")
        # The notice comes right behind the pull, before what still waits.
        root = r.root()
        assert [e.topic for e in root] == [chronica.PULL_CURRENT_STATE, chronica.LAGGED, "r0"]
        assert root[1].json()["dropped"] == 4
        assert s.dropped == 4 and s.balanced()
