"""Several Python threads emitting while callbacks run."""

import threading

import chronica
from conftest import settle


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
