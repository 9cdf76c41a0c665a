"""Two processes exchanging events through a broker (distributed mode).

    python examples/python/distributed_basic.py nats://127.0.0.1:14222
    python examples/python/distributed_basic.py redis://127.0.0.1:16379
    (kafka://127.0.0.1:19092 with a module built with the `kafka` feature)

(``scripts/brokers.sh up`` starts those brokers.) This process starts a
second one (``--role pong``) with the same URL: each joins the fabric with a
``chronica.Distributed`` of its own. The first sends ``ping`` events, the
second answers each with a ``pong``; both print what they receive. A broker
group starts at new messages, so the pinger repeats a ping until its pong
comes back (the fabric drops nothing, but the ponger may not be listening
yet). Exits 0 once three pongs came back.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from typing import List

import chronica

TOKEN = "example-shared-secret"  # every instance of a fabric shares it
PREFIX = "chronica-example"


def ponger(url: str) -> int:
    done = threading.Event()
    with chronica.Distributed(url, instance_id="ponger", topic_prefix=PREFIX, trust_token=TOKEN) as fabric:

        def on_ping(events: List[chronica.Event]) -> None:
            for e in events:
                if e.kind == "root" and e.topic == "example.stop":
                    done.set()
                elif e.kind == "user":
                    print(f"[pong] got {e.topic} {e.payload.decode()} from {e.source}", flush=True)
                    fabric.emit("pong", e.payload, source="ponger")

        fabric.register("ponger", on_ping, topics="ping")
        print("[pong] ready", flush=True)
        done.wait(60.0)
    return 0


def pinger(url: str) -> int:
    answered: "set[str]" = set()
    lock = threading.Lock()
    with chronica.Distributed(url, instance_id="pinger", topic_prefix=PREFIX, trust_token=TOKEN) as fabric:

        def on_pong(events: List[chronica.Event]) -> None:
            for e in events:
                if e.kind == "user":
                    with lock:
                        answered.add(e.payload.decode())

        fabric.register("pinger", on_pong, topics="pong")
        for i in range(3):
            seq = str(i)
            deadline = time.monotonic() + 30.0
            while time.monotonic() < deadline:
                fabric.emit("ping", seq, source="pinger")
                time.sleep(0.2)
                with lock:
                    if seq in answered:
                        break
            with lock:
                if seq not in answered:
                    print(f"[ping] no pong for {seq}", flush=True)
                    return 1
            print(f"[ping] pong {seq} came back", flush=True)
        # A signed root event stops every node of every instance's listener.
        fabric.emit_root("example.stop", b"")
        fabric.flush(5.0)
        print(f"[ping] stats: {fabric.stats()}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="broker URL: nats:// or redis:// (kafka:// with the kafka feature; memory:// stays in one process)")
    parser.add_argument("--role", choices=["ping", "pong"], default="ping")
    args = parser.parse_args()
    if args.role == "pong":
        return ponger(args.url)
    child = subprocess.Popen([sys.executable, __file__, args.url, "--role", "pong"])
    try:
        rc = pinger(args.url)
    finally:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    print("done" if rc == 0 and child.returncode == 0 else "failed", flush=True)
    return rc or child.returncode


if __name__ == "__main__":
    sys.exit(main())
