"""Streaming nodes: batches over a WebSocket with acknowledgements."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from hubkit import TOKEN, Hub, wait_until


def open_stream(hub, uid: str, token: str = TOKEN):
    return connect(f"ws://127.0.0.1:{hub.port}/v1/nodes/{uid}/stream",
                   additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=5)


def take(ws, timeout: float = 5.0) -> dict:
    frame = json.loads(ws.recv(timeout=timeout))
    assert frame["type"] == "batch" and frame["node"]
    return frame


def ack(ws, frame: dict) -> None:
    ws.send(json.dumps({"type": "ack", "seq": frame["seq"]}))


def collect(ws, seen: dict[int, dict], want_user: int) -> None:
    """Receives and acks until `want_user` distinct user events were seen."""
    for _ in range(1000):
        if sum(1 for e in seen.values() if e["kind"] == "user") >= want_user:
            return
        frame = take(ws)
        for e in frame["events"]:
            seen.setdefault(e["id"], e)
        ack(ws, frame)
    raise AssertionError("too many frames")


def test_stream_receives_held_events_in_order(hub):
    hub.ok("POST", "/v1/nodes", {"uid": "s", "stream": True})
    assert hub.stats("s")["connected"] is False
    hub.emit(*({"topic": "t", "payload": i} for i in range(10)))
    assert hub.stats("s")["pending"] == 11
    seen: dict[int, dict] = {}
    with open_stream(hub, "s") as ws:
        wait_until(lambda: hub.stats("s")["connected"], what="connected")
        first = take(ws)
        assert first["lane"] == "root" and first["events"][0]["topic"] == "chronica.pull_current_state"
        ack(ws, first)
        collect(ws, seen, 10)
        assert [e["payload"] for e in seen.values()] == list(range(10))
        wait_until(lambda: hub.stats("s")["pending"] == 0, what="acked")
    wait_until(lambda: not hub.stats("s")["connected"], what="disconnected after close")


def test_unacked_batch_is_redelivered_after_reconnect(hub):
    hub.ok("POST", "/v1/nodes", {"uid": "s", "stream": True})
    seen: dict[int, dict] = {}
    with open_stream(hub, "s") as ws:
        ack(ws, take(ws))  # pull_current_state
        hub.emit(*({"topic": "t", "payload": i} for i in range(5)))
        unacked = take(ws)
        assert [e["payload"] for e in unacked["events"]][0] == 0
        # Close without acknowledging: the batch must come back.
    wait_until(lambda: not hub.stats("s")["connected"], what="disconnected")
    hub.emit(*({"topic": "t", "payload": i} for i in range(5, 8)))
    s = hub.stats("s")
    assert s["pending"] == 8 and s["delivered"] == 1
    with open_stream(hub, "s") as ws:
        again = take(ws)
        assert [e["id"] for e in again["events"]][: len(unacked["events"])] == [e["id"] for e in unacked["events"]]
        for e in again["events"]:
            seen.setdefault(e["id"], e)
        ack(ws, again)
        collect(ws, seen, 8)
    assert [e["payload"] for e in seen.values() if e["kind"] == "user"] == list(range(8))
    s = hub.stats("s")
    assert s["delivered"] == 9 and s["failures"] >= 1 and s["pending"] == 0


def test_nack_is_retried(hub):
    hub.ok("POST", "/v1/nodes", {"uid": "s", "stream": True})
    with open_stream(hub, "s") as ws:
        ack(ws, take(ws))
        hub.emit({"topic": "t", "payload": "x"})
        f1 = take(ws)
        ws.send(json.dumps({"type": "nack", "seq": f1["seq"], "error": "busy"}))
        f2 = take(ws)
        assert [e["id"] for e in f2["events"]] == [e["id"] for e in f1["events"]]
        ack(ws, f2)
        wait_until(lambda: hub.stats("s")["pending"] == 0, what="acked")
    assert "busy" in hub.stats("s")["last_error"]


def test_delete_ends_a_callback_waiting_for_an_ack(hub):
    # The callback held a sender of the socket's channel while it waited,
    # so the socket outlived the unregister and the DELETE waited for the
    # ack timeout (30 s).
    hub.ok("POST", "/v1/nodes", {"uid": "s", "stream": True})
    with open_stream(hub, "s") as ws:
        ack(ws, take(ws))  # pull_current_state
        hub.emit({"topic": "t", "payload": 1})
        take(ws)  # never acknowledged
        started = time.monotonic()
        assert hub.call("DELETE", "/v1/nodes/s", timeout=60)[0] == 204
        assert time.monotonic() - started < 20, "the DELETE waited for the ack timeout"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)


def test_a_draining_delete_keeps_the_socket_until_the_node_has_delivered(hub):
    hub.ok("POST", "/v1/nodes", {"uid": "s", "stream": True})
    answer: list = []
    with open_stream(hub, "s") as ws:
        ack(ws, take(ws))  # pull_current_state
        hub.emit(*({"topic": "t", "payload": i} for i in range(5)))
        first = take(ws)  # in flight: not acknowledged yet
        delete = threading.Thread(
            target=lambda: answer.append(hub.call("DELETE", "/v1/nodes/s?drain_ms=30000", timeout=60)))
        delete.start()
        wait_until(lambda: hub.call("GET", "/v1/nodes/s")[0] == 404, what="s to leave the routes")
        seen = {e["id"]: e for e in first["events"]}
        ack(ws, first)
        collect(ws, seen, 5)
        delete.join(60)
    (status, last), = answer
    assert status == 200, last
    assert [e["payload"] for e in seen.values()] == list(range(5))
    assert (last["accepted"], last["delivered"], last["pending"]) == (6, 6, 0), last


def test_a_draining_delete_closes_a_silent_socket_at_its_deadline(hub):
    hub.ok("POST", "/v1/nodes", {"uid": "s", "stream": True})
    with open_stream(hub, "s") as ws:
        ack(ws, take(ws))  # pull_current_state
        hub.emit(*({"topic": "t", "payload": i} for i in range(3)))
        take(ws)  # never acknowledged: the callback waits (ack timeout 30 s)
        started = time.monotonic()
        status, last = hub.call("DELETE", "/v1/nodes/s?drain_ms=300", timeout=60)
        assert time.monotonic() - started < 20, "the drain waited for the ack timeout"
        assert status == 200, last
        assert (last["delivered"], last["dropped"], last["pending"]) == (1, 3, 0), last
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)


def test_stream_needs_a_token_and_a_stream_node(hub, receivers):
    hub.ok("POST", "/v1/nodes", {"uid": "s", "stream": True})
    with pytest.raises(InvalidStatus) as e:
        open_stream(hub, "s", token="wrong")
    assert e.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as e:
        open_stream(hub, "ghost")
    assert e.value.response.status_code == 404
    hub.register_webhook("w", receivers())
    with pytest.raises(InvalidStatus) as e:
        open_stream(hub, "w")
    assert e.value.response.status_code == 409


def test_connected_is_refused_for_a_stream_node(hub):
    # A streaming node is connected exactly while its socket is open.
    hub.ok("POST", "/v1/nodes", {"uid": "s", "stream": True})
    status, body = hub.call("POST", "/v1/nodes/s/connected")
    assert status == 409 and isinstance(body, dict) and body["error"]
    assert hub.stats("s")["connected"] is False
    hub.emit({"topic": "t", "payload": 1})
    # Time for a hub that wrongly took the node for connected to try it.
    time.sleep(0.3)
    s = hub.stats("s")
    assert s["failures"] == 0 and s["dead_lettered"] == 0 and s["pending"] == 2
    # It still connects through its socket.
    with open_stream(hub, "s") as ws:
        wait_until(lambda: hub.stats("s")["connected"], what="connected")
        seen: dict[int, dict] = {}
        collect(ws, seen, 1)
        # Nor can a call disconnect it while its socket is open.
        status, body = hub.call("POST", "/v1/nodes/s/disconnected")
        assert status == 409 and body["error"]
        assert hub.stats("s")["connected"] is True
    assert hub.call("POST", "/v1/nodes/ghost/connected")[0] == 404


def raw_stream(hub, uid: str) -> socket.socket:
    """A WebSocket opened by hand on a socket with a tiny receive buffer, so
    that a client which stops reading pushes back on the hub at once."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(5)
    s.connect(("127.0.0.1", hub.port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /v1/nodes/{uid}/stream HTTP/1.1\r\nHost: 127.0.0.1:{hub.port}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Authorization: Bearer {TOKEN}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def raw_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "socket closed"
        out += chunk
    return out


def raw_frame(s: socket.socket) -> dict:
    b0, b1 = raw_exact(s, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", raw_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", raw_exact(s, 8))[0]
    assert b0 & 0x0F == 1, f"opcode {b0 & 0x0F}"
    return json.loads(raw_exact(s, n))


def raw_send(s: socket.socket, obj: dict) -> None:
    data = json.dumps(obj).encode()
    mask = os.urandom(4)
    assert len(data) < 126
    s.sendall(bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def test_sigterm_exits_with_a_stalled_stream_client(hub_bin, tmp_path):
    hub = Hub(hub_bin, "--ack-timeout-ms", "100", log_path=str(tmp_path / "hub.log"))
    stalled = None
    try:
        hub.ok("POST", "/v1/nodes", {"uid": "slow", "stream": True, "concurrency": 16})
        stalled = raw_stream(hub, "slow")
        first = raw_frame(stalled)
        raw_send(stalled, {"type": "ack", "seq": first["seq"]})
        # From here on the client reads nothing: frames pile up in the
        # socket, then in the hub's channel to the socket task.
        # Big events, so that a few frames fill the socket buffers.
        blob = "x" * 60000
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            hub.emit({"topic": "t", "payload": blob})
            time.sleep(0.01)
        hub.proc.terminate()
        started = time.monotonic()
        try:
            hub.proc.wait(20)
        except subprocess.TimeoutExpired:
            raise AssertionError("hub still running 20 s after SIGTERM") from None
        assert time.monotonic() - started < 20
    finally:
        if stalled is not None:
            stalled.close()
        hub.stop()
