"""Ctrl-C (SIGINT) ends a wait of close() or unregister() for a callback that
does not return; the close or unregister goes on in the background.

Each case runs in a child interpreter that sends itself SIGINT while its
main thread waits: the wait used to run its whole length in Rust, where
Python's signal handlers never ran, so Ctrl-C did nothing."""

import subprocess
import sys
import textwrap

import pytest

PRELUDE = """
    import chronica, os, signal, threading, time

    gate = threading.Event()
    entered = threading.Event()
    returned = threading.Event()
    watchdog = threading.Timer(5.0, gate.set)  # the old build's wait ends here
    watchdog.daemon = True
    watchdog.start()

    def stuck(events):
        if events[0].kind == "user":
            entered.set()
            gate.wait()
            returned.set()

    def make(kind):
        if kind == "director":
            return chronica.Director()
        return chronica.Distributed("memory://interrupt", trust_token="t")

    def interrupt_soon():
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()

    # A director (or fabric) of KIND whose node "a" is inside its callback,
    # which waits for `gate`.
    def stuck_in_a_callback():
        d = make(KIND)
        d.register("a", stuck)
        d.emit("t", b"x")
        assert entered.wait(10)
        return d
"""

CASES = {
    "close": """
        d = stuck_in_a_callback()
        interrupt_soon()
        try:
            d.close(30.0)
            print("close returned", gate.is_set())
        except KeyboardInterrupt:
            print("KeyboardInterrupt", d.closed, gate.is_set())
        try:
            d.emit("t", b"y")
        except chronica.ClosedError:
            print("closed to new calls")
        gate.set()  # the close goes on and ends; exit waits for it
    """,
    "unregister": """
        d = stuck_in_a_callback()
        interrupt_soon()
        try:
            d.unregister("a")
            print("unregister returned", gate.is_set())
        except KeyboardInterrupt:
            print("KeyboardInterrupt", "a" in d.nodes(), gate.is_set())
        d.register("a", lambda events: None)  # the uid is free at once
        print("registered again")
        gate.set()
        assert returned.wait(10)
        d.close(10.0)
    """,
    "unregister_draining": """
        d = stuck_in_a_callback()
        interrupt_soon()
        try:
            d.unregister_draining("a", 30.0)
            print("unregister_draining returned", gate.is_set())
        except KeyboardInterrupt:
            print("KeyboardInterrupt", "a" in d.nodes(), gate.is_set())
        gate.set()
        assert returned.wait(10)
        d.close(10.0)
    """,
}

# Interrupted, then the interpreter exits while the callback still runs:
# the exit waits for the unregister left running (and the node's release).
CASES["unregister_then_exit"] = """
    d = stuck_in_a_callback()
    interrupt_soon()
    try:
        d.unregister("a")
        print("unregister returned", gate.is_set())
    except KeyboardInterrupt:
        print("KeyboardInterrupt", "a" in d.nodes(), gate.is_set())
    threading.Timer(0.5, gate.set).start()
"""

EXPECTED = {
    "close": ["KeyboardInterrupt True False", "closed to new calls"],
    "unregister": ["KeyboardInterrupt False False", "registered again"],
    "unregister_draining": ["KeyboardInterrupt False False"],
    "unregister_then_exit": ["KeyboardInterrupt False False"],
}


@pytest.mark.parametrize("kind", ["director", "distributed"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_ctrl_c_ends_a_wait_for_a_stuck_callback(case, kind):
    script = textwrap.dedent(PRELUDE) + f"KIND = {kind!r}\n" + textwrap.dedent(CASES[case])
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.stdout.splitlines() == EXPECTED[case], proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "FATAL" not in proc.stderr, proc.stderr


BUS = """
    bus = chronica.EventBus()
    bus.on("t", lambda event: (entered.set(), gate.wait()))
    bus.emit("t", b"x")
    assert entered.wait(10)
    interrupt_soon()
    try:
        bus.close(30.0)
        print("close returned", gate.is_set())
    except KeyboardInterrupt:
        print("KeyboardInterrupt", bus.closed, bus.director.closed, gate.is_set())
    try:
        bus.on("u", lambda event: None)
    except chronica.ClosedError:
        print("closed to new calls")
    gate.set()
"""


def test_ctrl_c_during_the_close_of_a_bus_leaves_it_closed():
    """The bus's close gave its list back on any exception from its
    director's close, as for a refused one: after Ctrl-C the bus said it
    was open while its director was closing."""
    script = textwrap.dedent(PRELUDE) + textwrap.dedent(BUS)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.stdout.splitlines() == ["KeyboardInterrupt True True False", "closed to new calls"], (
        proc.stdout + proc.stderr
    )
    assert proc.returncode == 0, proc.stderr
