"""``unregister`` and ``close`` called on the thread that runs the asyncio
loop of an ``async def`` node.

The node's delivery thread waits for the loop to run the coroutine, so a
call that waited there for the node's callback in flight would wait for
itself. The scenarios that hung run in a subprocess with a timeout, so a
regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import chronica

# The scenario of one test, run by `run_script`; it prints "ok" at the end.
PRELUDE = """
    import asyncio, gc, sys, uuid, weakref
    import chronica

    KIND = sys.argv[1]

    def make(**kw):
        if KIND == "director":
            return chronica.Director(**kw)
        url = "memory://unregister-" + uuid.uuid4().hex
        return chronica.Distributed(url, instance_id="i", trust_token="t0k", **kw)

    async def until(predicate, what):
        for _ in range(4000):
            if predicate():
                return
            gc.collect()
            await asyncio.sleep(0.005)
        raise AssertionError("timed out waiting for " + what)

    class Handler:
        # An async callable object, so that a weak reference shows when
        # the engine lets go of it; each user event waits for `release`.
        def __init__(self):
            self.inside, self.release, self.seen = asyncio.Event(), asyncio.Event(), []

        async def __call__(self, events):
            for e in events:
                if e.kind == "user":
                    self.seen.append(e.payload)
                    self.inside.set()
                    await self.release.wait()

    async def held_in_callback(d):
        # Registers a Handler as node "a", emits b"1" and returns once its
        # callback holds that event: the handler's release and events, and
        # a weak reference to it (the engine holds the only strong one).
        h = Handler()
        d.register("a", h)
        d.emit("t", b"1")
        await asyncio.wait_for(h.inside.wait(), 20)
        return h.release, h.seen, weakref.ref(h)
"""


def run_script(body: str, kind: str) -> str:
    """Runs PRELUDE + ``body`` in a fresh interpreter; fails on a hang or an error."""
    script = textwrap.dedent(PRELUDE) + textwrap.dedent(body)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script, kind], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        proc = None
    if proc is None:
        pytest.fail("the scenario hung (killed after 60 s)")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    return proc.stdout


KINDS = ["director", "distributed"]

FROM_A_COROUTINE = """
    async def main():
        d = make()
        release, seen, gone = await held_in_callback(d)
        # The callback in flight waits for this loop: this call hung.
        d.unregister("a")
        assert d.nodes() == [], d.nodes()
        try:
            (d.stats if KIND == "director" else d.node_stats)("a")
            raise AssertionError("stats of an unregistered node")
        except chronica.UnknownNodeError:
            pass
        # The uid is free at once, and the old node gets nothing more.
        later = []

        async def again(events):
            later.extend(e.payload for e in events if e.kind == "user")

        d.register("a", again)
        d.emit("t", b"2")
        assert gone() is not None, "released while its callback still ran"
        release.set()
        # Released right after the callback in flight returned.
        await until(lambda: gone() is None, "the callback to be released")
        await until(lambda: later == [b"2"], "the new node's event")
        assert seen == [b"1"], seen
        assert d.close(5.0) == 0
        print("ok")

    asyncio.run(main())
"""


@pytest.mark.parametrize("kind", KINDS)
def test_unregister_from_a_coroutine_on_the_nodes_loop_returns(kind: str) -> None:
    assert run_script(FROM_A_COROUTINE, kind).strip() == "ok"


FROM_ITS_OWN_CALLBACK = """
    async def main():
        d = make()
        done, calls = asyncio.Event(), []

        async def cb(events):
            if any(e.kind == "user" for e in events):
                calls.append(len(events))
                d.unregister("a")   # hung: this coroutine is the callback in flight
                assert d.nodes() == []
                done.set()

        d.register("a", cb)
        d.emit("t", b"1")
        await asyncio.wait_for(done.wait(), 20)
        assert d.nodes() == [] and calls == [1], calls
        assert d.close(5.0) == 0
        print("ok")

    asyncio.run(main())
"""


@pytest.mark.parametrize("kind", KINDS)
def test_an_async_node_unregisters_itself_from_its_callback(kind: str) -> None:
    assert run_script(FROM_ITS_OWN_CALLBACK, kind).strip() == "ok"


CLOSE_ON_THE_LOOP = """
    async def main():
        d = make(batch_size=1)
        inside = asyncio.Event()

        async def cb(events):
            if any(e.kind == "user" for e in events):
                inside.set()
                await asyncio.sleep(0.01)

        d.register("a", cb)
        for i in range(5):
            d.emit_to("a", "t", bytes([i]))
        await asyncio.wait_for(inside.wait(), 20)
        # The loop cannot run the callback in flight while close waits: the
        # wait ends at the close deadline, that batch fails with a
        # TimeoutError and every event not delivered is reported.
        undelivered = d.close(0.5)
        s = d.stats("a")
        assert s.delivered == 1, s                 # the pull event
        assert undelivered == s.pending == 5, (undelivered, s)
        assert s.last_error.startswith("TimeoutError"), s
        assert s.balanced(), s
        print("ok")

    asyncio.run(main())
"""


def test_close_on_the_loop_thread_ends_at_its_deadline() -> None:
    assert run_script(CLOSE_ON_THE_LOOP, "director").strip() == "ok"


def test_unregister_on_a_loop_thread_still_waits_for_other_nodes() -> None:
    """Only a node served by the calling thread's loop is let go without
    waiting: a plain node, or an async node on another loop, has finished
    its last callback when unregister returns, as everywhere else."""
    other = asyncio.new_event_loop()
    runner = threading.Thread(target=other.run_forever, daemon=True)
    runner.start()
    finished = []
    started = {"sync": threading.Event(), "other": threading.Event()}

    def plain(events):
        if any(e.kind == "user" for e in events):
            started["sync"].set()
            time.sleep(0.2)
            finished.append("sync")

    async def elsewhere(events):
        if any(e.kind == "user" for e in events):
            started["other"].set()
            await asyncio.sleep(0.2)
            finished.append("other")

    async def main(d: chronica.Director) -> None:
        d.register("sync", plain)
        d.register("other", elsewhere, loop=other)
        for uid in ("sync", "other"):
            d.emit_to(uid, "t", b"x")
            assert await asyncio.get_running_loop().run_in_executor(None, started[uid].wait, 20)
            d.unregister(uid)
            assert finished[-1:] == [uid], finished

    try:
        with chronica.Director() as d:
            asyncio.run(main(d))
    finally:
        other.call_soon_threadsafe(other.stop)
        runner.join(10)
        other.close()


FROM_A_COROUTINE_DRAINING = """
    async def main():
        d = make()
        release, seen, gone = await held_in_callback(d)
        d.emit("t", b"2")
        # Waiting here for the drain would wait for this loop.
        s = d.unregister_draining("a", 30.0)
        assert s.pending > 0, s
        assert d.nodes() == [], d.nodes()
        release.set()
        await until(lambda: seen == [b"1", b"2"], "the drain to deliver both")
        # `seen` has b"2" while its callback still runs on this loop, which
        # a close here would block: that batch then timed out, and close
        # counted it (1 in about 1 run of 10). The node is let go once
        # its last callback returned.
        await until(lambda: gone() is None, "the drained node to be released")
        assert d.close(5.0) == 0
        print("ok")

    asyncio.run(main())
"""


def test_unregister_draining_from_a_coroutine_on_the_nodes_loop_returns() -> None:
    assert run_script(FROM_A_COROUTINE_DRAINING, "director").strip() == "ok"


COLLECTED_ON_THE_LOOP = """
    async def main():
        d = make()
        release, seen, gone = await held_in_callback(d)
        # The last reference goes on the loop the callback in flight waits
        # for: a close waiting here hung for good.
        del d
        gc.collect()
        release.set()
        await until(lambda: gone() is None, "the node to be released by the close")
        assert seen == [b"1"], seen
        print("ok")

    asyncio.run(main())
"""


@pytest.mark.parametrize("kind", KINDS)
def test_collected_on_the_loop_of_its_async_node_closes_without_hanging(kind: str) -> None:
    assert run_script(COLLECTED_ON_THE_LOOP, kind).strip() == "ok"
