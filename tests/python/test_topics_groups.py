"""Topics, subscribe, consumer groups."""

import pytest

import chronica
from conftest import Recorder, settle


def test_topic_patterns(director):
    orders, all_, one = Recorder(), Recorder(), Recorder()
    director.register("orders", orders, topics="orders.>")
    director.register("all", all_)
    director.register("one", one, topics=["*.created", "audit"])
    for t in ("orders.created", "orders.eu.paid", "users.created", "audit", "other"):
        director.emit(t, t)
    all_.wait_user(5)
    for uid in ("orders", "one"):
        settle(director, uid)
    assert [e.topic for e in orders.user()] == ["orders.created", "orders.eu.paid"]
    assert [e.topic for e in one.user()] == ["orders.created", "users.created", "audit"]


def test_subscribe_adds_a_pattern(director):
    r = Recorder()
    director.register("a", r, topics=["x"])
    director.emit("y", b"missed")
    director.subscribe("a", "y")
    director.emit("y", b"seen")
    r.wait_user(1)
    settle(director, "a")
    assert r.payloads() == [b"seen"]
    with pytest.raises(ValueError):
        director.subscribe("a", "")
    with pytest.raises(chronica.UnknownNodeError):
        director.subscribe("ghost", "y")


def test_consumer_group_members_share_events(director):
    members = {f"w{i}": Recorder() for i in range(3)}
    solo = Recorder()
    for uid, r in members.items():
        director.register(uid, r, group="workers")
    director.register("solo", solo)
    n = 300
    for i in range(n):
        director.emit("job", i.to_bytes(2, "big"), key=b"k%d" % i)
    solo.wait_user(n)
    for uid in members:
        settle(director, uid)
    got = sorted(int.from_bytes(p, "big") for r in members.values() for p in r.payloads())
    assert got == list(range(n))  # each event exactly once in the group
    assert sum(1 for r in members.values() if r.user()) >= 2


def test_unregister_hands_pending_events_to_the_group(director):
    a, b = Recorder(), Recorder()
    director.register("a", a, group="g", connected=False)
    director.register("b", b, group="g", connected=False)
    for i in range(20):
        director.emit("t", bytes([i]), key=bytes([i]))
    held_by_a = director.stats("a").pending - 1
    director.unregister("a")
    director.node_connected("b")
    b.wait_user(20)
    assert held_by_a > 0
    assert sorted(b.payloads()) == [bytes([i]) for i in range(20)]
    director.register("a", Recorder())  # the uid is free again at once
