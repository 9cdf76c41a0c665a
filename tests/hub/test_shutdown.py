"""Shutdown (docs/HUB.md): after SIGTERM the hub exits within a bound
close to the documented 5 s for connections plus a 5 s drain, whatever the
webhook and ack timeouts, and logs how many events it left undelivered.

Each delivery here is stuck for a minute (its timeout): the close used to
wait for it, and the hub exited only then.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from pathlib import Path

from hubkit import Hub, wait_until
from test_stream import open_stream, take

# Well under the stuck deliveries' 60 s, well over the documented 10 s.
BOUND = 20.0
STUCK = "60000"


class Silent:
    """A webhook receiver that reads each request and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.requests = threading.Semaphore(0)
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
        except OSError:
            return
        self.requests.release()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def terminate(hub: Hub) -> float:
    """SIGTERM; the seconds until the hub exited with 0."""
    hub.proc.terminate()
    started = time.monotonic()
    try:
        hub.proc.wait(BOUND)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"hub still running {BOUND} s after SIGTERM") from None
    took = time.monotonic() - started
    assert hub.proc.returncode == 0, hub.proc.returncode
    return took


def undelivered(log: Path) -> int:
    """The count the hub's last log line gives."""
    found = re.findall(r"closed \S+ after the signal; (\d+) events left undelivered", log.read_text())
    assert len(found) == 1, log.read_text()[-2000:]
    return int(found[0])


def pending(hub: Hub) -> int:
    return hub.ok("GET", "/v1/stats")["totals"]["pending"]


def test_sigterm_cuts_a_webhook_post_that_never_gets_an_answer(hub_bin, tmp_path):
    log = tmp_path / "hub.log"
    silent = Silent()
    hub = Hub(hub_bin, "--webhook-timeout-ms", STUCK, log_path=str(log))
    try:
        hub.ok("POST", "/v1/nodes", {"uid": "mute", "webhook": silent.url})
        hub.emit({"topic": "t", "payload": 1})
        assert silent.requests.acquire(timeout=10), "no POST reached the receiver"
        # The user event and the root events about the node.
        held = pending(hub)
        terminate(hub)
    finally:
        hub.stop()
        silent.close()
    assert held >= 1 and undelivered(log) == held


def test_sigterm_cuts_a_stream_send_waiting_for_its_ack(hub_bin, tmp_path):
    log = tmp_path / "hub.log"
    hub = Hub(hub_bin, "--ack-timeout-ms", STUCK, log_path=str(log))
    try:
        hub.ok("POST", "/v1/nodes", {"uid": "mute", "stream": True})
        with open_stream(hub, "mute") as ws:
            wait_until(lambda: hub.stats("mute")["connected"], 5, "stream connected")
            hub.emit({"topic": "t", "payload": 1})
            take(ws)  # and never ack it
            held = pending(hub)
            terminate(hub)
    finally:
        hub.stop()
    assert held >= 1 and undelivered(log) == held


def test_a_draining_delete_cut_short_by_sigterm_answers_its_final_counters(hub_bin, tmp_path):
    log = tmp_path / "hub.log"
    silent = Silent()
    hub = Hub(hub_bin, "--webhook-timeout-ms", STUCK, log_path=str(log))
    answer: list = []
    try:
        hub.ok("POST", "/v1/nodes", {"uid": "mute", "webhook": silent.url})
        hub.emit(*({"topic": "t", "payload": i} for i in range(3)))
        assert silent.requests.acquire(timeout=10), "no POST reached the receiver"
        deleting = threading.Thread(
            target=lambda: answer.append(hub.call("DELETE", "/v1/nodes/mute?drain_ms=600000", timeout=60)))
        deleting.start()
        wait_until(lambda: hub.call("GET", "/v1/nodes/mute")[0] == 404, 5, "the node out of the routes")
        # The DELETE's connection is open: the hub gives it the
        # connections' 5 s, then drains for 5 s, then cuts.
        terminate(hub)
        deleting.join(10)
    finally:
        hub.stop()
        silent.close()
    [(status, stats)] = answer
    assert status == 200, stats
    # The three events and the root events about the node, none delivered:
    # nothing pending, the rest dropped, as the docs promise.
    assert stats["accepted"] >= 3 and stats["delivered"] == 0, stats
    assert stats["pending"] == 0 and stats["dropped"] == stats["accepted"], stats
    assert undelivered(log) == stats["dropped"]
