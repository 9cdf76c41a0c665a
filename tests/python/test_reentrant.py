"""Callbacks may call the director; closing it from inside is refused."""

import chronica
from conftest import Recorder, settle, wait_for


def test_callback_emits_registers_and_reads_stats(director):
    sink = Recorder()
    seen = []

    def relay(events):
        for e in events:
            if e.kind == "user":
                director.emit_to("sink", "relayed", e.payload, source="relay")
                seen.append(director.stats("relay").accepted)
                if e.payload == b"3" and "late" not in director.nodes():
                    director.register("late", Recorder())

    director.register("relay", relay, topics=["in"])
    director.register("sink", sink, topics=["nothing"])
    for i in range(5):
        director.emit("in", str(i))
    sink.wait_user(5)
    assert sink.payloads() == [b"0", b"1", b"2", b"3", b"4"]
    assert all(e.source == "relay" for e in sink.user())
    wait_for(lambda: "late" in director.nodes())


def test_close_from_a_callback_is_refused(director):
    outcome = []

    def cb(events):
        if any(e.kind == "user" for e in events):
            try:
                director.close(1.0)
            except chronica.ReentrantError as exc:
                outcome.append(exc)

    director.register("a", cb)
    director.emit("t", b"x")
    wait_for(lambda: outcome)
    assert isinstance(outcome[0], chronica.ChronicaError)
    assert not director.closed


def test_unregister_self_from_a_callback(director):
    def cb(events):
        if any(e.kind == "user" for e in events):
            director.unregister("a")

    director.register("a", cb)
    director.emit("t", b"x")
    wait_for(lambda: "a" not in director.nodes())
    director.register("a", Recorder())
    settle(director, "a")
