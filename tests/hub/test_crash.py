"""kill -9 a webhook receiver in the middle of a stream and restart it:
afterwards it holds every event exactly once and in order, and the node's
accounting equation holds."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import threading
import time

from hubkit import balanced, free_port, wait_until

HERE = pathlib.Path(__file__).parent


def start_receiver(port: int, log: pathlib.Path, secret: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, str(HERE / "durable_receiver.py"), str(port), str(log), secret],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def test_kill_9_receiver_mid_stream(hub, tmp_path):
    port, log = free_port(), tmp_path / "received.jsonl"
    # Registered disconnected: the receiver needs the secret from the answer
    # before the hub delivers, else a refused first delivery would count as
    # the failure this test waits for after the kill.
    node = hub.register_webhook("durable", f"http://127.0.0.1:{port}/events", connected=False)
    proc = start_receiver(port, log, node["secret"])
    try:
        hub.ok("POST", "/v1/nodes/durable/connected")
        emitted: list[int] = []

        def produce() -> None:
            for chunk in range(60):
                emitted.extend(hub.emit(*({"topic": "t", "payload": chunk * 50 + i} for i in range(50))))
                time.sleep(0.01)

        producer = threading.Thread(target=produce)
        producer.start()
        wait_until(lambda: len(emitted) >= 1000, what="first third emitted")
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        wait_until(lambda: hub.stats("durable")["failures"] >= 1, what="hub sees the receiver gone")
        proc = start_receiver(port, log, node["secret"])
        producer.join(30)
        assert not producer.is_alive() and len(emitted) == 3000

        wait_until(lambda: hub.stats("durable")["pending"] == 0, timeout=30, what="drain after restart")
        got = [json.loads(line) for line in log.read_text().splitlines()]
        assert [e["id"] for e in got] == emitted          # every event, once, in order
        assert [e["payload"] for e in got] == list(range(3000))
        s = hub.stats("durable")
        assert balanced(s), s
        assert s["accepted"] == s["delivered"] == 3001 and s["dropped"] == 0 and s["failures"] >= 1
    finally:
        proc.kill()
        proc.wait(5)
