"""W1 ("fan-out") from Python: one producer emits N events of 64 bytes to 8
nodes; each node counts what it receives. Compares chronica, emitting one
event per call (``emit``) and runs of events per call (``emit_many``, the
same shared bytes payload), with a pyzmq inproc PUB/SUB peer (8 SUB
threads) and a pure-Python fan-out peer (one queue.SimpleQueue and thread
per node). Prints deliveries per second.

Usage: python w1.py [--events N] [--zmq-events N] [--run N] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import platform
import queue
import resource
import sys
import threading
import time
from typing import Callable, Dict, List

from markdown_section import add_to_section

NODES = 8
PAYLOAD = b"x" * 64


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_chronica(n: int, batch_size: int, run: int = 0) -> float:
    """``emit`` per event, or with ``run`` > 0 ``emit_many`` of ``run``
    events per call (the last call takes what is left)."""
    import chronica

    counts = [0] * NODES
    done = threading.Event()
    expected = n + 1  # + the pull_current_state root event

    def counter(i: int) -> Callable[[List[chronica.Event]], None]:
        def cb(events: List[chronica.Event]) -> None:
            counts[i] += len(events)
            if counts[i] >= expected and all(c >= expected for c in counts):
                done.set()

        return cb

    with chronica.Director(queue_capacity=1 << 20, batch_size=batch_size) as d:
        d.register("producer", lambda events: None, topics=["nothing"])
        for i in range(NODES):
            d.register(f"node-{i}", counter(i), topics=["w1"])
        while any(c < 1 for c in counts):
            time.sleep(0.001)
        if run > 0:
            # The list is built once: the benchmark measures the call, and
            # a producer holding a run builds it anyway.
            calls, rest = divmod(n, run)
            payloads = [PAYLOAD] * run
            emit_many = d.emit_many
            t0 = time.perf_counter()
            for _ in range(calls):
                emit_many("w1", payloads, "producer")
            if rest:
                emit_many("w1", payloads[:rest], "producer")
        else:
            emit = d.emit
            t0 = time.perf_counter()
            for _ in range(n):
                emit("w1", PAYLOAD, "producer")
        done.wait()
        elapsed = time.perf_counter() - t0
        for i in range(NODES):
            while d.stats(f"node-{i}").pending:
                time.sleep(0.001)
            s = d.stats(f"node-{i}")
            assert s.dropped == 0 and s.delivered == expected, s
    return n * NODES / elapsed


def bench_queues(n: int) -> float:
    queues = [queue.SimpleQueue() for _ in range(NODES)]
    counts = [0] * NODES

    def consume(i: int) -> None:
        get = queues[i].get
        c = 0
        while get() is not None:
            c += 1
        counts[i] = c

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(NODES)]
    for t in threads:
        t.start()
    puts = [q.put for q in queues]
    t0 = time.perf_counter()
    for _ in range(n):
        for put in puts:
            put(PAYLOAD)
    for put in puts:
        put(None)
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    assert counts == [n] * NODES, counts
    return n * NODES / elapsed


def bench_zmq(n: int) -> float:
    import zmq

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.bind("inproc://w1")
    counts = [0] * NODES
    ready = threading.Barrier(NODES + 1)

    def sub(i: int) -> None:
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.RCVHWM, 0)
        s.connect("inproc://w1")
        s.setsockopt(zmq.SUBSCRIBE, b"")
        while s.recv() != b"ready":  # slow-joiner handshake
            pass
        ready.wait()
        recv = s.recv
        c = 0
        while recv() != b"end":
            c += 1
        counts[i] = c
        s.close()

    threads = [threading.Thread(target=sub, args=(i,)) for i in range(NODES)]
    for t in threads:
        t.start()
    while ready.n_waiting < NODES:
        pub.send(b"ready")
        time.sleep(0.01)
    ready.wait()
    # Drain stray handshakes is not needed: each SUB stops reading them at the barrier
    # only after it saw one; leftovers are counted below and subtracted.
    send = pub.send
    t0 = time.perf_counter()
    for _ in range(n):
        send(PAYLOAD)
    send(b"end")
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    pub.close()
    ctx.term()
    received = sum(counts)
    return received / elapsed


SECTION = "## Python (issue 4)"



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--zmq-events", type=int, default=None, help="events for the pyzmq peer (default: --events)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--run", type=int, default=64, help="events per emit_many call")
    ap.add_argument("--markdown", help="append a results section to this file")
    args = ap.parse_args()
    n = args.events
    zn = args.zmq_events or n

    results: Dict[str, float] = {}
    results["chronica"] = bench_chronica(n, args.batch_size)
    rss_chronica = peak_rss_mb()
    print(f"chronica      W1 {n:>9,} events x {NODES} nodes: {results['chronica'] / 1e6:7.2f} M deliveries/s")
    results["many"] = bench_chronica(n, args.batch_size, args.run)
    print(f"emit_many/{args.run:<3} W1 {n:>9,} events x {NODES} nodes: {results['many'] / 1e6:7.2f} M deliveries/s")
    results["queue"] = bench_queues(n)
    print(f"python queue  W1 {n:>9,} events x {NODES} nodes: {results['queue'] / 1e6:7.2f} M deliveries/s")
    try:
        results["zmq"] = bench_zmq(zn)
        print(f"pyzmq inproc  W1 {zn:>9,} events x {NODES} nodes: {results['zmq'] / 1e6:7.2f} M deliveries/s")
    except ImportError:
        print("pyzmq not installed: skipping that peer")
    r_queue = results["chronica"] / results["queue"]
    print(f"ratio chronica / python queue: {r_queue:6.1f}x")
    r_zmq = results["chronica"] / results["zmq"] if "zmq" in results else float("nan")
    print(f"ratio chronica / pyzmq:        {r_zmq:6.1f}x")
    m_queue = results["many"] / results["queue"]
    print(f"ratio emit_many / python queue: {m_queue:6.1f}x")
    m_zmq = results["many"] / results["zmq"] if "zmq" in results else float("nan")
    print(f"ratio emit_many / pyzmq:        {m_zmq:6.1f}x")
    m_emit = results["many"] / results["chronica"]
    print(f"ratio emit_many / emit:         {m_emit:6.1f}x")
    print(f"peak RSS after the chronica run: {rss_chronica:.0f} MB")

    if args.markdown:
        import chronica

        lines = [
            f"\n### Run of {time.strftime('%Y-%m-%d %H:%M')} "
            f"(chronica {chronica.__version__}, CPython {platform.python_version()}, "
            f"{platform.machine()}, batch_size {args.batch_size})\n",
            "| peer | events | deliveries/s | chronica (emit) is | chronica (emit_many) is |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| chronica (Python callbacks), emit | {n:,} | {results['chronica'] / 1e6:.2f} M | 1.0x "
            f"| {m_emit:.1f}x |",
            f"| chronica (Python callbacks), emit_many of {args.run} | {n:,} | {results['many'] / 1e6:.2f} M "
            f"| {1 / m_emit:.1f}x | 1.0x |",
            f"| pure Python, SimpleQueue + thread per node | {n:,} | {results['queue'] / 1e6:.2f} M "
            f"| {r_queue:.1f}x | {m_queue:.1f}x |",
        ]
        if "zmq" in results:
            lines.append(
                f"| pyzmq inproc PUB/SUB, 8 SUB threads | {zn:,} | {results['zmq'] / 1e6:.2f} M | {r_zmq:.1f}x "
                f"| {m_zmq:.1f}x |"
            )
        lines.append(f"\nPeak RSS after the chronica run: {rss_chronica:.0f} MB.\n")
        add_to_section(args.markdown, SECTION, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
