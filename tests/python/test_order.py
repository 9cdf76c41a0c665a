"""Order per node, root events before waiting user events, concurrency."""

import threading

from conftest import Recorder, settle, wait_for


def test_events_arrive_in_emit_order(director):
    r = Recorder()
    director.register("a", r)
    n = 5000
    for i in range(n):
        director.emit("seq", i.to_bytes(4, "big"))
    events = r.wait_user(n)
    assert [int.from_bytes(e.payload, "big") for e in events] == list(range(n))
    assert r.root()[0].topic == "chronica.pull_current_state"


def test_root_events_overtake_waiting_user_events(director):
    r = Recorder()
    director.register("a", r, connected=False)
    for i in range(5):
        director.emit("u", bytes([i]))
    director.emit_root("urgent", b"!")
    director.node_connected("a")
    r.wait_user(5)
    settle(director, "a")
    kinds = [(e.kind, e.topic) for e in r.events]
    assert kinds[0] == ("root", "chronica.pull_current_state")
    assert kinds[1] == ("root", "urgent")
    assert [k for k, _ in kinds[2:]] == ["user"] * 5


def test_a_callback_is_never_called_concurrently_with_itself(director):
    active = [0]
    worst = [0]
    lock = threading.Lock()
    seen = []

    def cb(events):
        with lock:
            active[0] += 1
            worst[0] = max(worst[0], active[0])
        seen.extend(events)
        with lock:
            active[0] -= 1

    director.register("a", cb)
    for i in range(2000):
        director.emit("t", b"x")
    wait_for(lambda: len([e for e in seen if e.kind == "user"]) == 2000)
    assert worst[0] == 1


def test_concurrency_keeps_order_per_key(director):
    r = Recorder()
    director.register("a", r, concurrency=4)
    # Seven keys over four lanes: with a key count the concurrency divides,
    # round-robin lanes would keep each key on one lane too.
    keys = [b"k%d" % i for i in range(7)]
    for i in range(700):
        director.emit("t", i.to_bytes(4, "big"), key=keys[i % 7])
    events = r.wait_user(700)
    for k in keys:
        values = [int.from_bytes(e.payload, "big") for e in events if e.key == k]
        assert values == sorted(values)
        assert len(values) == 100
