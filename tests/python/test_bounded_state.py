"""State that must stay bounded however long a process runs, under a
bounded workload (the soak audit): each test repeats one cycle many times
and counts the entries of the structure that grew, through a test-only
accessor, rather than measuring memory."""

from __future__ import annotations

import asyncio
from typing import Callable, Dict, List, Tuple

import chronica
from conftest import wait_for

CYCLES = 300


class NewestOnly:
    """A broker adapter that keeps only the newest ``deliver`` of each
    (pattern, group), and publishes nowhere: an ended subscription's
    ``deliver`` is then referenced by the module alone."""

    def __init__(self) -> None:
        self.delivers: Dict[Tuple[str, str], Callable[..., None]] = {}

    def publish(self, topic: str, value: bytes, key: "bytes | None", headers: List[Tuple[str, str]]) -> None:
        pass

    def subscribe(self, pattern: str, group: str, deliver: Callable[..., None]) -> None:
        self.delivers[(pattern, group)] = deliver

    def ack(self, token: object) -> None:
        pass

    def close(self) -> None:
        self.delivers.clear()


def test_a_python_adapter_lets_go_of_ended_subscriptions() -> None:
    """Joining and leaving a group subscribes and ends a subscription each
    time; the adapter used to keep every one's sender (and channel, about
    5 KB) until close."""
    adapter = NewestOnly()
    d = chronica.Distributed(adapter, instance_id="bounded", trust_token="t0k")
    try:
        before = d._adapter_subscriptions()
        assert before is not None
        for _ in range(CYCLES):
            d.register("w", lambda events: None, topics="jobs", group="workers")
            d.unregister("w")
        wait_for(lambda: d._adapter_subscriptions() == before, what="the ended subscriptions to go")
        # The newest deliver of the group outlived its subscription: refused.
        (deliver,) = [v for (_, group), v in adapter.delivers.items() if group.endswith("workers")]
        try:
            deliver("jobs", b"late", None, [], 1, None)
        except chronica.ClosedError:
            pass
        else:
            raise AssertionError("a late delivery was taken")
    finally:
        d.close()
    assert d._adapter_subscriptions() == 0


def test_an_async_node_that_unregisters_itself_leaves_no_entry() -> None:
    """An ``async def`` node unregistering itself from its own callback is
    still alive when its unregister returns; its uid's entry in the table
    of async nodes used to stay for good."""
    d = chronica.Director()

    async def main() -> None:
        for i in range(CYCLES):
            uid, done = f"n-{i}", asyncio.Event()

            async def cb(events: List[chronica.Event], uid: str = uid, done: asyncio.Event = done) -> None:
                if any(e.kind == "user" for e in events):
                    d.unregister(uid)
                    done.set()

            d.register(uid, cb)
            d.emit("t", b"")
            await asyncio.wait_for(done.wait(), 20)

    try:
        asyncio.run(main())
        # Swept at twice the live entries, at least 64: a few live here.
        assert d._async_uids() <= 70, d._async_uids()
    finally:
        d.close()
