"""Streaming nodes: batches over a WebSocket with acknowledgements."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from hubkit import TOKEN, wait_until


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


def test_stream_needs_a_token_and_a_stream_node(hub, receivers):
    hub.ok("POST", "/v1/nodes", {"uid": "s", "stream": True})
    with pytest.raises(InvalidStatus) as e:
        open_stream(hub, "s", token="wrong")
    assert e.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as e:
        open_stream(hub, "ghost")
    assert e.value.response.status_code == 404
    hub.register_webhook("w", receivers().url)
    with pytest.raises(InvalidStatus) as e:
        open_stream(hub, "w")
    assert e.value.response.status_code == 409
