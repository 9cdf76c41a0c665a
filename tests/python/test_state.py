"""State pull: the first event of every new node, with the trust token."""

import json

import chronica
from conftest import Recorder, settle, wait_for


def test_new_node_first_receives_pull_current_state_with_trust_token():
    with chronica.Director(trust_token="s3cret") as d:
        assert d.trust_token == "s3cret"
        b, a = Recorder(), Recorder()
        d.register("b", b)
        d.register("a", a)
        wait_for(lambda: len(a.events) >= 1)
        first = a.events[0]
        assert first.kind == "root"
        assert first.topic == chronica.PULL_CURRENT_STATE
        assert first.trust_token == "s3cret"
        assert first.json() == {"peers": ["b"]}
        d.register("c", Recorder())
        settle(d, "a")
        assert json.loads(b.events[0].payload) == {"peers": []}


def test_late_joiner_rebuilds_state_from_a_peer():
    state = {}
    replica = {}
    with chronica.Director(trust_token="tok") as d:

        def owner(events):
            for e in events:
                if e.topic == "kv":
                    k, v = e.payload.decode().split("=")
                    state[k] = v

        d.register("owner", owner)
        for i in range(10):
            d.emit("kv", f"k{i}={i}")
        settle(d, "owner")

        def joiner(events):
            for e in events:
                if e.topic == chronica.PULL_CURRENT_STATE and e.trust_token == "tok":
                    for peer in e.json()["peers"]:
                        d.emit_to(peer, "snapshot.request", b"", source="joiner")
                elif e.topic == "snapshot":
                    replica.update(e.json())

        def owner_with_snapshot(events):
            for e in events:
                if e.topic == "snapshot.request":
                    d.emit_to(e.source, "snapshot", dict(state), source="owner2")

        d.register("owner2", owner_with_snapshot, topics=["snapshot.request"])
        d.register("joiner", joiner, topics=["snapshot"])
        wait_for(lambda: replica == state)
        assert len(replica) == 10


def test_membership_events_when_enabled():
    with chronica.Director(membership_events=True) as d:
        a = Recorder()
        d.register("a", a)
        d.register("b", Recorder())
        d.unregister("b")
        wait_for(lambda: {e.topic for e in a.root()} >= {chronica.NODE_JOINED, chronica.NODE_LEFT})
