"""The EventBus workload (issue 5) from Python, mirroring core/benches/bus.rs:
4 topics, 2 consumer groups of 4 members and 4 plain subscribers, the same
202-byte JSON payload, 1,000,000 emits (``--events`` or ``BUS_EVENTS``
overrides). Each emit reaches one member of each group and every plain
subscriber: 6 deliveries. Block overflow (timeout 60 s), default capacity
and batch size, so nothing is dropped. The same topology runs, in one
process and in this order:

* raw: ``chronica.Director`` with 12 nodes registered with the same patterns
  and groups (``">"`` + group, ``"*.*"``), Python batch callbacks counting
  ``len(events)`` (the 12 ``pull_current_state`` root events are counted
  in the target, so no per-event filtering is needed);
* bus: ``chronica.EventBus`` with 12 subscriptions, one Python handler call
  per event, emitting the pre-serialized bytes (``bus.emit(topic, bytes)``:
  raw, no content type, like ``Director.emit``);
* bus, emit(dict): the bus encoding a fresh dict per emit with its JSON
  serializer (the counterpart of the Rust ``emit_value`` case).

The clock runs from the first emit until the last delivery was counted
(polled every 200 us, as the Rust bench does). Prints events per second for
each case and the bus's overhead over the raw director of the same run.

Usage: python bus.py [--events N] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from markdown_section import add_to_section

TOPICS = ("orders.created", "orders.paid", "users.joined", "stock.moved")
GROUPS = ("group-a", "group-b")
GROUP_MEMBERS = 4
PLAIN = 4
NODES = len(GROUPS) * GROUP_MEMBERS + PLAIN
DELIVERIES_PER_EMIT = len(GROUPS) + PLAIN
BLOCK_TIMEOUT = 60.0  # seconds; with overflow="block" nothing is dropped


def payload(i: int) -> Dict[str, Any]:
    """The same value as core/benches/bus.rs's ``payload(i)``."""
    return {
        "id": i,
        "customer": "customer-00042",
        "items": ["sku-1001-red", "sku-2002-blue", "sku-3003-green"],
        "total": 123.45,
        "currency": "EUR",
        "note": "leave the parcel with the neighbour at number twelve, please",
    }


# serde_json's encoding of payload(1_000_000): the same 202 bytes as the Rust
# and C benches.
PAYLOAD = json.dumps(payload(1_000_000), separators=(",", ":")).encode()


def finish(counts: List[int], target: int, start: float) -> float:
    """Waits until the counters add up to ``target``; returns the seconds
    since ``start``. Raises when nothing moved for 60 s."""
    last, moved = -1, time.perf_counter()
    while True:
        c = sum(counts)
        now = time.perf_counter()
        if c >= target:
            return now - start
        if c != last:
            last, moved = c, now
        elif now - moved > 60.0:
            raise RuntimeError(f"stalled at {c} of {target} deliveries")
        time.sleep(0.0002)


def raw(n: int) -> float:
    import chronica

    counts = [0] * NODES  # one slot per node: a node's calls never overlap

    def node(i: int) -> Callable[[List[Any]], None]:
        def cb(events: List[Any]) -> None:
            counts[i] += len(events)

        return cb

    with chronica.Director(overflow="block", block_timeout=BLOCK_TIMEOUT) as d:
        k = 0
        for g in GROUPS:
            for m in range(GROUP_MEMBERS):
                d.register(f"{g}-{m}", node(k), topics=[">"], group=g)
                k += 1
        for p in range(PLAIN):
            d.register(f"plain-{p}", node(k), topics=["*.*"])
            k += 1
        emit, topics, data = d.emit, TOPICS, PAYLOAD
        start = time.perf_counter()
        for i in range(n):
            emit(topics[i % 4], data)
        # + one pull_current_state root event per node
        secs = finish(counts, n * DELIVERIES_PER_EMIT + NODES, start)
    return secs


def bus(n: int, serialize: bool) -> float:
    import chronica

    counts = [0] * NODES

    def handler(i: int) -> Callable[[Any], None]:
        def h(event: Any) -> None:
            counts[i] += 1

        return h

    with chronica.EventBus(overflow="block", block_timeout=BLOCK_TIMEOUT) as b:
        k = 0
        for g in GROUPS:
            for _ in range(GROUP_MEMBERS):
                b.on(">", handler(k), group=g)
                k += 1
        for _ in range(PLAIN):
            b.on("*.*", handler(k))
            k += 1
        emit, topics = b.emit, TOPICS
        start = time.perf_counter()
        if serialize:
            for i in range(n):
                emit(topics[i % 4], payload(i))
        else:
            data = PAYLOAD
            for i in range(n):
                emit(topics[i % 4], data)
        secs = finish(counts, n * DELIVERIES_PER_EMIT, start)
    return secs


SECTION = "## EventBus (issue 5)"



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=int(os.environ.get("BUS_EVENTS") or 1_000_000))
    ap.add_argument("--no-serialize", action="store_true", help="skip the emit(dict) case")
    ap.add_argument("--markdown", help="add the results to the EventBus section of this file")
    args = ap.parse_args()
    n = args.events
    if n <= 0:
        ap.error("--events must be positive")

    print(f"EventBus workload (Python): {n:,} emits (the count used; BUS_EVENTS or --events changes it),")
    print(f"{len(PAYLOAD)} byte JSON payloads, 4 topics, 2 groups x {GROUP_MEMBERS} members + {PLAIN} plain")
    print(f"subscribers ({DELIVERIES_PER_EMIT} deliveries per emit)")
    cases: List[Tuple[str, str, Callable[[], float]]] = [
        ("raw", "raw director (Python batch cb)", lambda: raw(n)),
        ("bus", "bus, emit(bytes)", lambda: bus(n, False)),
    ]
    if not args.no_serialize:
        cases.append(("bus-json", "bus, emit(dict) (json)", lambda: bus(n, True)))
    rows: List[Tuple[str, str, float]] = []
    base: Optional[float] = None
    print(f"{'case':<32} {'emits/s':>12} {'deliveries/s':>14} {'vs raw':>9}")
    for key, name, run in cases:
        secs = run()
        base = secs if base is None else base
        rate = n / secs
        overhead = (secs / base - 1.0) * 100.0
        rows.append((key, name, secs))
        print(f"{name:<32} {rate:>12.0f} {rate * DELIVERIES_PER_EMIT:>14.0f} {overhead:>+8.1f}%", flush=True)
    for key, _, secs in rows:
        print(f"RESULT {key} {n} {secs:.6f}")

    if args.markdown:
        import chronica

        lines = [
            f"\n#### Python run of {time.strftime('%Y-%m-%d %H:%M')} (`scripts/bench-python.sh`, "
            f"chronica {chronica.__version__}, CPython {platform.python_version()}, {platform.machine()}, "
            f"{n:,} emits, load average {os.getloadavg()[0]:.1f} at the end)\n",
            "| case | emits/s | deliveries/s | vs raw |",
            "| --- | ---: | ---: | ---: |",
        ]
        for _, name, secs in rows:
            rate = n / secs
            lines.append(
                f"| {name} | {rate:,.0f} | {rate * DELIVERIES_PER_EMIT:,.0f} | {(secs / rows[0][2] - 1) * 100:+.1f}% |"
            )
        add_to_section(args.markdown, SECTION, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
