"""Connection state: a disconnected node holds events until connected."""

import time

from conftest import Recorder, settle


def test_registered_disconnected_holds_events_until_connected(director):
    r = Recorder()
    director.register("a", r, connected=False)
    director.emit("t", b"1")
    director.emit("t", b"2")
    # Time for a worker that wrongly took the node for connected to call it.
    time.sleep(0.1)
    s = director.stats("a")
    assert r.events == [] and s.pending == 3 and not s.connected
    director.node_connected("a")
    r.wait_user(2)
    assert settle(director, "a").connected


def test_disconnect_pauses_and_connect_resumes(director):
    r = Recorder()
    director.register("a", r)
    director.emit("t", b"before")
    r.wait_user(1)
    director.node_disconnected("a")
    director.emit("t", b"during")
    # Time for a worker that missed the disconnect to deliver.
    time.sleep(0.1)
    assert r.payloads() == [b"before"]
    assert director.stats("a").pending == 1
    director.node_connected("a")
    r.wait_user(2)
    assert r.payloads() == [b"before", b"during"]
