"""``async def`` callbacks run on the host's asyncio loop."""

import asyncio
import threading

import pytest

import chronica
from conftest import settle, wait_for


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
        with pytest.raises(ValueError):
            d.register("a", cb)
        with pytest.raises(TypeError):
            d.register("a", cb, loop="nope")
        assert d.nodes() == []
