"""Routing: broadcast except sender, emit_to, root events, unknown uids."""

import gc
import sys

import pytest

import chronica
from conftest import Recorder, settle, wait_for


def test_broadcast_reaches_everyone_but_the_source(director):
    a, b, c = Recorder(), Recorder(), Recorder()
    for uid, r in (("a", a), ("b", b), ("c", c)):
        director.register(uid, r)
    director.emit("news", b"from-a", source="a")
    director.emit("news", b"anonymous")
    b.wait_user(2)
    c.wait_user(2)
    settle(director, "a")
    assert a.payloads() == [b"anonymous"]
    assert b.payloads() == [b"from-a", b"anonymous"]
    assert c.payloads() == [b"from-a", b"anonymous"]
    assert b.user()[0].source == "a"
    assert b.user()[1].source is None


def test_emit_to_reaches_exactly_the_target(director):
    a, b = Recorder(), Recorder()
    director.register("a", a, topics=["only.this"])
    director.register("b", b)
    eid = director.emit_to("a", "other.topic", b"direct", source="b")
    assert isinstance(eid, int)
    a.wait_user(1)
    settle(director, "b")
    assert a.payloads() == [b"direct"]
    assert a.user()[0].id == eid
    assert b.user() == []


def test_emit_root_reaches_every_node_or_one(director):
    a, b = Recorder(), Recorder()
    director.register("a", a)
    director.register("b", b)
    director.emit_root("resync", b"all")
    director.emit_root("resync", b"just-b", target="b")
    settle(director, "a")
    settle(director, "b")
    actions_a = [(e.topic, e.payload) for e in a.root() if e.topic == "resync"]
    actions_b = [(e.topic, e.payload) for e in b.root() if e.topic == "resync"]
    assert actions_a == [("resync", b"all")]
    assert actions_b == [("resync", b"all"), ("resync", b"just-b")]
    assert all(e.kind == "root" for e in b.root())


def test_emit_root_labels_its_payload_with_a_content_type(director):
    a, b = Recorder(), Recorder()
    director.register("a", a)
    director.register("b", b)
    director.emit_root("config", {"level": 2}, content_type="application/json")
    director.emit_root("config", b"level=3", target="b", content_type="text/plain")
    director.emit_root("config", b"unlabelled", target="b")
    settle(director, "a")
    settle(director, "b")
    seen_a = [(e.content_type, e.payload) for e in a.root() if e.topic == "config"]
    seen_b = [(e.content_type, e.payload) for e in b.root() if e.topic == "config"]
    assert seen_a == [("application/json", b'{"level": 2}')]
    assert seen_b == [("application/json", b'{"level": 2}'), ("text/plain", b"level=3"), (None, b"unlabelled")]
    assert next(e for e in b.root() if e.topic == "config").json() == {"level": 2}


def test_unknown_source_or_target_is_an_error_not_a_crash(director):
    director.register("a", Recorder())
    with pytest.raises(chronica.UnknownNodeError):
        director.emit("t", b"x", source="ghost")
    with pytest.raises(chronica.UnknownNodeError):
        director.emit_to("ghost", "t", b"x")
    with pytest.raises(chronica.UnknownNodeError):
        director.emit_root("r", b"", target="ghost")
    with pytest.raises(chronica.ChronicaError):
        director.stats("ghost")
    assert director.stats("a").accepted == 1  # only its pull_current_state


def test_payload_kinds_and_json(director):
    r = Recorder()
    director.register("a", r)
    director.emit("t", b"raw")
    director.emit("t", "text \u00e9")
    director.emit("t", {"n": 1, "l": [1, 2]})
    director.emit("t", bytearray(b"ba"))
    director.emit("t", memoryview(b"mv"))
    director.emit("t", [1, "two"], key="k1")
    events = r.wait_user(6)
    assert [e.payload for e in events[:2]] == [b"raw", "text \u00e9".encode()]
    assert events[2].json() == {"n": 1, "l": [1, 2]}
    assert events[3].payload == b"ba"
    assert events[4].payload == b"mv"
    assert events[5].json() == [1, "two"]
    assert events[5].key == b"k1"
    assert events[0].key is None
    # One bytes object per Event, cached.
    assert events[0].payload is events[0].payload
    assert events[0].timestamp_ms > 0
    assert events[0].trust_token is None
    ids = [e.id for e in events]
    assert ids == sorted(ids)


def test_every_node_shares_the_emitters_payload_object(director):
    a, b = Recorder(), Recorder()
    director.register("a", a)
    director.register("b", b)
    payload = b"x" * 64
    director.emit("t", payload)
    director.emit("t", "text")
    a.wait_user(2)
    b.wait_user(2)
    # No copy per node: both nodes see the very object the emitter passed.
    assert a.user()[0].payload is payload
    assert b.user()[0].payload is payload
    # A str payload is encoded once and that one bytes object is shared.
    assert a.user()[1].payload == b"text"
    assert a.user()[1].payload is b.user()[1].payload


def test_every_node_shares_one_event_object(director):
    nodes = [Recorder() for _ in range(3)]
    for i, r in enumerate(nodes):
        director.register(f"n{i}", r)
    payload = b"y" * 64
    director.emit("t", payload)
    for r in nodes:
        r.wait_user(1)
    # One Event per emitted event, not one per node.
    first = nodes[0].user()[0]
    assert all(r.user()[0] is first for r in nodes)
    assert first.payload is payload
    assert first.topic == "t" and first.kind == "user"


def test_shared_event_objects_are_released():
    # The shared Event lives in the engine event's extension; it must not
    # keep that event (or the payload) alive once every node is done.
    payload = b"z" * 64
    base = sys.getrefcount(payload)
    d = chronica.Director()
    seen = []
    d.register("a", lambda events: seen.extend(e.id for e in events))
    d.register("b", lambda events: None)
    for _ in range(100):
        d.emit("t", payload)
    wait_for(lambda: len(seen) >= 101, what="deliveries")  # 100 + the state pull
    d.close(5.0)
    gc.collect()
    # Engine threads drop their last references without the GIL; pyo3
    # releases those on the next call into the module.
    wait_for(lambda: (d.stats("a"), sys.getrefcount(payload) == base)[1], timeout=5.0, what="payload released")
