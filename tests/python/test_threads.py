"""Several Python threads emitting while callbacks run."""

import threading
import time

import chronica
from conftest import DEADLINE, settle


def test_many_threads_emit_while_callbacks_run():
    per_thread, n_threads = 2000, 6
    counts = {}
    lock = threading.Lock()

    def counter(uid):
        def cb(events):
            # Do some Python work while other threads emit.
            total = sum(len(e.payload) for e in events if e.kind == "user")
            with lock:
                counts[uid] = counts.get(uid, 0) + sum(1 for e in events if e.kind == "user")
            return total

        return cb

    with chronica.Director() as d:
        for i in range(4):
            d.register(f"n{i}", counter(f"n{i}"))
        errors = []
        start = threading.Barrier(n_threads)

        def producer(t):
            try:
                start.wait()
                for i in range(per_thread):
                    d.emit("t", b"%d-%d" % (t, i), key=b"%d" % t)
                    if i % 500 == 0:
                        d.stats("n0")
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=producer, args=(t,)) for t in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        for i in range(4):
            s = settle(d, f"n{i}")
            assert s.delivered == per_thread * n_threads + 1
            assert s.balanced() and s.dropped == 0
        assert counts == {f"n{i}": per_thread * n_threads for i in range(4)}


def test_per_thread_order_is_kept():
    seen = []
    with chronica.Director() as d:
        d.register("a", lambda events: seen.extend(e.payload for e in events if e.kind == "user"))

        def producer(t):
            for i in range(1000):
                d.emit("t", b"%d:%d" % (t, i))

        threads = [threading.Thread(target=producer, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        settle(d, "a")
    for t in range(4):
        mine = [int(p.split(b":")[1]) for p in seen if p.startswith(b"%d:" % t)]
        assert mine == list(range(1000))


def test_other_threads_run_while_a_c_callable_drains_a_backlog():
    """A delivery session gives the GIL up between batches once it has held
    it for the switch interval. The interpreter does that by itself only
    while it runs bytecode: with a C callable as the callback (here
    ``list.append``) none runs, and before the fix another Python thread
    waited for the whole backlog. Here that thread must see it part-way."""
    total = 200_000
    batches = []  # one list of events per callback call
    with chronica.Director(queue_capacity=total, batch_size=1) as d:
        d.register("n", batches.append, connected=False)
        for _ in range(total):
            d.emit("t", b"x")
        before = len(batches)  # the root event, if it came before the connect
        expected = total + 1  # every user event, one per batch, and the root event
        samples = []
        started = threading.Event()

        def watch():
            started.set()
            end = time.monotonic() + DEADLINE
            while len(batches) < expected and time.monotonic() < end:
                samples.append(len(batches))

        watcher = threading.Thread(target=watch)
        watcher.start()
        started.wait()
        d.node_connected("n")
        watcher.join()
        assert len(batches) == expected
        partial = [n for n in samples if before + 1 < n < before + total]
        assert partial, f"the watcher only saw {sorted(set(samples))}"
