"""``async def`` callbacks run on the host's asyncio loop."""

import asyncio
import threading

import pytest

import chronica
from conftest import fresh_distributed, settle, wait_for


def test_async_callback_on_a_loop_in_another_thread():
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    seen = []
    threads = set()

    async def cb(events):
        threads.add(threading.get_ident())
        await asyncio.sleep(0)
        seen.extend(e.payload for e in events if e.kind == "user")

    try:
        with chronica.Director() as d:
            d.register("a", cb, loop=loop)
            for i in range(50):
                d.emit("t", bytes([i]))
            wait_for(lambda: len(seen) == 50)
            assert seen == [bytes([i]) for i in range(50)]
            assert threads == {t.ident}
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join()
        loop.close()


def test_async_callback_on_the_running_loop_and_retry():
    attempts = []

    async def main():
        got = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def cb(events):
            if any(e.kind == "user" for e in events):
                attempts.append(1)
                if len(attempts) == 1:
                    raise RuntimeError("async boom")
                got.set()

        d = chronica.Director(retry=chronica.Retry(initial=0.01, max=0.02))
        d.register("a", cb)
        d.emit("t", b"x")
        await asyncio.wait_for(got.wait(), 20)
        s = await loop.run_in_executor(None, settle, d, "a")
        assert s.failures == 1 and s.last_error == "RuntimeError: async boom"
        # Closing from the loop thread: the loop cannot run callbacks while
        # close waits, so close does not hang past its deadline.
        d.close(1.0)

    asyncio.run(main())
    assert len(attempts) == 2


def test_async_callback_needs_a_loop():
    async def cb(events):
        pass

    with chronica.Director() as d:
        with pytest.raises(chronica.InvalidArgumentError) as info:
            d.register("a", cb)
        assert isinstance(info.value, ValueError)
        with pytest.raises(TypeError):
            d.register("a", cb, loop="nope")
        assert d.nodes() == []


@pytest.mark.parametrize("kind", ["director", "distributed"])
def test_a_closed_loop_is_refused_at_registration(kind):
    """A closed loop was taken, and then every batch of the node failed
    ("the asyncio loop of this async callback is closed"), retried forever."""
    loop = asyncio.new_event_loop()
    loop.close()

    async def cb(events):
        pass

    d = chronica.Director() if kind == "director" else fresh_distributed()
    with d:
        for callback in (cb, lambda events: None):
            with pytest.raises(chronica.InvalidArgumentError, match="loop is closed"):
                d.register("a", callback, loop=loop)
        assert d.nodes() == []


def _loop_thread():
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    return loop


def test_a_refused_close_does_not_cancel_async_callbacks():
    """A close refused from a callback (ReentrantError) must not arm the
    deadline that cancels async callbacks still running."""
    loop = _loop_thread()
    refused = []
    with chronica.Director(retry=chronica.Retry(initial=0.05, max=0.05, max_retries=0)) as d:

        async def slow(events):
            await asyncio.sleep(0.2)

        def closer(events):
            if any(e.kind == "user" for e in events):
                try:
                    d.close(timeout=0.0)
                except chronica.ReentrantError:
                    refused.append(True)

        d.register("aio", slow, loop=loop)
        d.register("sync", closer, topics="close.me")
        d.emit("close.me", b"")
        wait_for(lambda: refused == [True])
        d.emit_to("aio", "work", b"1")
        s = settle(d, "aio")
        assert (s.delivered, s.dead_lettered, s.failures) == (s.accepted, 0, 0), s
        assert not d.closed
    loop.call_soon_threadsafe(loop.stop)


def test_a_sync_callable_returning_a_coroutine_fails_its_batch():
    """A decorator hiding an async def: the coroutine is never awaited, so
    the batch is a failure, not a delivery."""

    async def handler(events):
        pass

    def wrapper(events):
        return handler(events)

    with chronica.Director(retry=chronica.Retry(initial=0.01, max=0.01, max_retries=0)) as d:
        d.register("n", wrapper)
        d.emit("t", b"1")
        wait_for(lambda: d.stats("n").dead_lettered == 2)
        s = d.stats("n")
        assert s.delivered == 0
        assert "awaitable" in s.last_error


def test_an_async_callback_whose_loop_closes_fails_instead_of_hanging():
    loop = _loop_thread()
    started = threading.Event()

    async def cb(events):
        started.set()
        await asyncio.sleep(3600)

    with chronica.Director(retry=chronica.Retry(initial=0.05, max=0.05, max_retries=0)) as d:
        d.register("a", cb, loop=loop)
        assert started.wait(5)

        def stop_and_close():
            loop.stop()

        loop.call_soon_threadsafe(stop_and_close)
        wait_for(lambda: not loop.is_running())
        loop.close()
        wait_for(lambda: d.stats("a").failures >= 1)
        assert "closed" in d.stats("a").last_error
