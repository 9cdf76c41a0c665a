"""Close, the accounting equation, and calls after close."""

import gc
import os
import sys
import threading
import time
import uuid
import weakref

import pytest

import chronica
from conftest import DEADLINE, Recorder, settle, wait_for


def test_close_drains_and_the_accounting_equation_holds():
    d = chronica.Director(queue_capacity=100)
    r = Recorder()
    slow_seen = []

    def slow(events):
        slow_seen.extend(events)
        time.sleep(0.001)

    d.register("fast", r)
    d.register("slow", slow)
    d.register("held", Recorder(), connected=False)
    for i in range(500):
        d.emit("t", i.to_bytes(2, "big"))
        if i % 50 == 0:
            for uid in ("fast", "slow", "held"):
                assert d.stats(uid).balanced()
    undelivered = d.close(timeout=2.0)
    assert isinstance(undelivered, int)
    total_pending = 0
    for uid in ("fast", "slow", "held"):
        s = d.stats(uid)  # stats still readable after close
        assert s.accepted == s.delivered + s.dropped + s.dead_lettered + s.pending
        total_pending += s.pending
    assert undelivered == total_pending
    held = d.stats("held")
    assert held.pending == 101 and held.dropped == 400  # capacity 100 + pull_current_state
    fast = d.stats("fast")
    assert fast.pending == 0 and fast.delivered + fast.dropped == fast.accepted


def test_everything_after_close_is_closed_error():
    d = chronica.Director()
    d.register("a", Recorder())
    assert d.close() == 0
    assert d.closed
    for call in (
        lambda: d.emit("t", b""),
        lambda: d.emit_to("a", "t", b""),
        lambda: d.emit_root("r"),
        lambda: d.register("b", Recorder()),
        lambda: d.unregister("a"),
        lambda: d.node_connected("a"),
        lambda: d.close(),
    ):
        with pytest.raises(chronica.ClosedError):
            call()
    assert d.stats("a").delivered == 1


def test_context_manager_closes():
    with chronica.Director() as d:
        r = Recorder()
        d.register("a", r)
        d.emit("t", b"x")
    assert d.closed
    assert r.payloads() == [b"x"]


def test_context_manager_tolerates_explicit_close():
    with chronica.Director() as d:
        d.close()
    assert d.closed


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def workers(prefix: str) -> int:
    """This process's threads named ``chronica-<prefix>...`` (a node's
    workers are named after its uid): counting all threads instead took
    helper threads of earlier tests, still ending, for the director's."""
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:  # ended meanwhile
            pass
    return sum(n.startswith(f"chronica-{prefix}") for n in names)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc")
def test_a_garbage_collected_director_closes_itself():
    d = chronica.Director()
    r = Recorder()
    for i in range(4):
        d.register(f"gcd{i}", r)
    d.emit("t", b"x")
    # A thread names itself once it runs, which may be after register returned.
    wait_for(lambda: workers("gcd") == 4, what="the four delivery threads")
    del d
    gc.collect()
    wait_for(lambda: workers("gcd") == 0, what="delivery threads to end")


def make(kind, **hooks):
    # One event a batch, so that the callback's pause below adds up.
    if kind == "director":
        return chronica.Director(batch_size=1, **hooks)
    url = "memory://cycle-" + uuid.uuid4().hex
    return chronica.Distributed(url, instance_id="i", trust_token="t0k", batch_size=1, **hooks)


def slowly(got, events):
    """Records ``events`` after a pause: the emits outrun it, so that
    events wait when the collection starts (their drain takes 0.2 s)."""
    time.sleep(0.001)
    got.extend(events)


EVENTS = 200


class Owner:
    """Holds a director whose callback (or hook) is one of its bound
    methods: owner -> director -> bound method -> owner."""

    def __init__(self, kind, uid, got, via_hook):
        self.got = got
        self.d = make(kind, on_error=self.failed if via_hook else None)
        self.d.register(uid, self.deliver if not via_hook else (lambda evs: slowly(got, evs)))

    def deliver(self, events):
        slowly(self.got, events)
        assert self.d.nodes()

    def failed(self, uid, error):
        self.d.nodes()


def closure(kind, uid, got):
    d = make(kind)

    def deliver(events):
        slowly(got, events)
        assert d.nodes()  # the cycle: d -> its node -> deliver -> d

    d.register(uid, deliver)
    return d


CYCLES = ["closure", "bound_method", "hook"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc")
@pytest.mark.parametrize("kind", ["director", "distributed"])
@pytest.mark.parametrize("cycle", CYCLES)
def test_a_director_its_callback_references_is_collected_and_closes_itself(kind, cycle):
    """The engine holds callbacks and hooks where the cycle collector could
    not see them: a director referenced from its own callback or hook was
    never collected, its threads running until exit. It is now collected,
    and closes itself before the collector clears anything, as a director
    dropped without close does: the events waiting are delivered to
    callbacks still whole, and its threads end."""
    # Unique in the 15 characters a thread name keeps ("chronica-" first).
    uid = f"gy{cycle[0]}{kind[2]}"
    got = []
    if cycle == "closure":
        d = closure(kind, uid, got)
    else:
        owner = Owner(kind, uid, got, via_hook=cycle == "hook")
        d = owner.d
        del owner
    gone = weakref.ref(d)
    wait_for(lambda: workers(uid) == 1, what="the delivery thread")
    # Delivered and returned: a callback in flight references the cycle
    # from its thread's stack, which keeps it alive (rightly).
    stats = d.stats if kind == "director" else d.node_stats
    wait_for(lambda: stats(uid).delivered == 1, what="the root event")
    del stats
    # The GIL stays with this thread from the first emit to the
    # collection (a switch interval longer than the test), so no callback
    # is in flight when it starts and every event is still waiting.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(60)
    try:
        for i in range(EVENTS):
            d.emit("t", i.to_bytes(2, "big"))
        del d
        gc.collect()
    finally:
        sys.setswitchinterval(interval)
    assert gone() is None
    # The pull-current-state root event first, then every event, in order.
    assert [int.from_bytes(e.payload, "big") for e in got[1:]] == list(range(EVENTS))
    wait_for(lambda: workers(uid) == 0, what="delivery threads to end")


@pytest.mark.parametrize("kind", ["director", "distributed"])
def test_a_director_collected_by_a_thread_holding_a_lock_its_callback_waits_for(kind):
    """The close of a collected director (or fabric) waits for the callback in flight,
    which waits for a lock the collecting thread holds. The collection used
    to wait there for good; it now returns after the close's drain and a
    short grace, and the close ends once the lock is released."""
    lock = threading.Lock()
    entered = threading.Event()
    collected = threading.Event()
    calls = []

    def held(events):
        entered.set()
        with lock:
            calls.append(len(events))

    def collect():
        if kind == "director":
            d = chronica.Director()
        else:
            d = chronica.Distributed("memory://collected-" + uuid.uuid4().hex, instance_id="i", trust_token="t0k")
        with lock:
            d.register("n", held)
            entered.wait(DEADLINE)
            del d
            gc.collect()
            collected.set()

    base = threads()
    t = threading.Thread(target=collect, daemon=True)
    t.start()
    assert collected.wait(DEADLINE), "the collection waited for a callback that waits for it"
    t.join(DEADLINE)
    wait_for(lambda: calls, what="the callback in flight to return once the lock is free")
    wait_for(lambda: threads() <= base, what="delivery threads to end")


@pytest.mark.parametrize("kind", ["director", "distributed"])
def test_the_last_reference_dropped_inside_its_own_callback(kind):
    """The finalizer ran inside the callback and waited there up to 3 s for
    the close, which waits for that callback: the events queued behind it
    outlived the 2 s drain and were lost. It now starts the close on a
    thread of its own and returns at once, and the drain delivers them."""
    if kind == "director":
        d = chronica.Director(batch_size=1)
    else:
        d = chronica.Distributed("memory://dropped-" + uuid.uuid4().hex, trust_token="t0k", batch_size=1)
    holder = [d]
    seen = []

    def cb(events):
        for e in events:
            if e.kind == "user":
                seen.append(e.payload)
        if events[0].kind == "user" and events[0].payload == b"0":
            holder.clear()  # the last reference: the finalizer runs here

    d.register("a", cb, connected=False)
    for i in range(5):
        d.emit("t", str(i))
    d.node_connected("a")
    del d
    wait_for(lambda: len(seen) == 5, timeout=10, what="the events queued behind the callback")
    assert seen == [b"0", b"1", b"2", b"3", b"4"]
    assert not holder


class Ticket:
    """An ack token that references the fabric it came to (to report the
    message's fate to it): token -> fabric -> the engine -> token."""

    def __init__(self, fabric):
        self.fabric = fabric


class Reporter:
    """A Python adapter that publishes nowhere and hands the test its
    ``deliver``; with ``keeps``, it keeps the fabric it carries (to report
    to it): adapter -> fabric -> the engine -> adapter. Its ``close``
    records that it ran on an adapter still whole."""

    def __init__(self, keeps, closed):
        self.keeps = keeps
        self.fabric = None
        self.delivers = []
        self.closed = closed

    def publish(self, topic, value, key, headers):
        pass

    def subscribe(self, pattern, group, deliver):
        self.delivers.append(deliver)

    def ack(self, token):
        pass

    def close(self):
        self.closed.append(self.keeps and self.fabric.instance_id)


def adapter_cycle(cycle, uid, got, closed):
    """A Distributed over a ``Reporter`` whose ``cycle`` ("adapter" or
    "token") references it, and the deliver of its subscription."""
    adapter = Reporter(cycle == "adapter", closed)
    # Acknowledged once delivered: the tokens stay with the engine while
    # their events wait.
    d = chronica.Distributed(adapter, instance_id="i", ack_mode="delivery", trust_token="t0k", batch_size=1)
    if cycle == "adapter":
        adapter.fabric = d
    # Held back until the GIL is this thread's for good (below).
    d.register(uid, lambda evs: slowly(got, evs), connected=False)
    (deliver,) = adapter.delivers
    for i in range(EVENTS):
        deliver("t", i.to_bytes(2, "big"), None, [], Ticket(d) if cycle == "token" else i)
    return d


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc")
@pytest.mark.parametrize("cycle", ["adapter", "token"])
def test_a_distributed_its_adapter_references_is_collected_and_closes_itself(cycle):
    """The Python adapter object and the ack tokens it hands back were held
    where the cycle collector could not see them: an adapter (or a token)
    referencing its Distributed kept it alive, its threads running until
    exit. It is now collected, and closes itself (its adapter's close
    included) before the collector clears anything: the events waiting
    are delivered in order, and its threads end."""
    uid = f"gy{cycle[0]}a"
    got, closed = [], []
    d = adapter_cycle(cycle, uid, got, closed)
    gone = weakref.ref(d)
    wait_for(lambda: d.stats().injected == EVENTS, what="the messages to reach the node")
    wait_for(lambda: workers(uid) == 1, what="the delivery thread")
    # As in the test above: no callback runs from here to the collection.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(60)
    try:
        d.node_connected(uid)
        del d
        gc.collect()
    finally:
        sys.setswitchinterval(interval)
    assert gone() is None
    assert closed == ["i" if cycle == "adapter" else False]
    assert [int.from_bytes(e.payload, "big") for e in got if e.kind == "user"] == list(range(EVENTS))
    wait_for(lambda: workers(uid) == 0, what="delivery threads to end")
