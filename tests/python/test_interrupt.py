"""Ctrl-C (SIGINT) ends a wait of close() or unregister() for a callback that
does not return; the close or unregister goes on in the background. It also
ends an emit waiting for room under overflow="block", which then accepted
nothing.

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


# A blocking emit (overflow="block", a target full) waits in 50 ms slices
# on the main thread, each refused whole, and runs the signal handlers
# between them: Ctrl-C ends it with nothing accepted. Before, it waited in
# Rust for the whole block_timeout (60 s here) with no handler run.
FULL_LANE = """
    import chronica, os, signal, threading, time

    def make(kind):
        settings = dict(queue_capacity=1, overflow="block", block_timeout=60.0)
        if kind == "director":
            return chronica.Director(**settings)
        return chronica.Distributed("memory://interrupt-emit", trust_token="t", **settings)

    d = make(KIND)
    stats = d.stats if KIND == "director" else d.node_stats
    # "slow" holds its events: the pull, then "first" fills its user lane.
    d.register("slow", lambda events: None, connected=False)
    d.emit("t", b"first")
    before = stats("slow")
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    start = time.monotonic()
    try:
        EMIT
        print("emit returned")
    except KeyboardInterrupt:
        # Far below block_timeout: the emit did not wait it out.
        print("KeyboardInterrupt", time.monotonic() - start < 30)
    after = stats("slow")
    print("accepted", after.accepted - before.accepted, "dropped", after.dropped, "balanced", after.balanced())
    d.node_connected("slow")
    settled = time.monotonic() + 10
    while stats("slow").pending and time.monotonic() < settled:
        time.sleep(0.01)
    s = stats("slow")
    print("delivered", s.delivered, "balanced", s.balanced())
    d.close(10.0)
"""

EMITS = {"emit": 'd.emit("t", b"interrupted")', "emit_to": 'd.emit_to("slow", "t", b"interrupted")'}


@pytest.mark.parametrize("kind", ["director", "distributed"])
@pytest.mark.parametrize("emit", sorted(EMITS))
def test_ctrl_c_ends_a_blocking_emit_and_nothing_is_accepted(emit, kind):
    script = f"KIND = {kind!r}\n" + textwrap.dedent(FULL_LANE).replace("EMIT", EMITS[emit])
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines() == [
        "KeyboardInterrupt True",
        "accepted 0 dropped 0 balanced True",
        "delivered 2 balanced True",  # the pull and "first": never "interrupted"
    ], (proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


# A Distributed's close in its fabric phase: publishing what is buffered
# (here one emit whose publish waits for `gate`) before its director
# closes. Ctrl-C used to do nothing until that phase was over (the signal
# handlers ran only once the director was closing), so the close waited
# for the publish to the watchdog, and printed "close returned True".
FABRIC_PHASE = """
    import chronica, os, signal, threading, time

    gate = threading.Event()
    publishing = threading.Event()
    watchdog = threading.Timer(5.0, gate.set)  # the old build's wait ends here
    watchdog.daemon = True
    watchdog.start()

    class HeldBroker:
        def publish(self, topic, value, key, headers):
            publishing.set()
            gate.wait()
        def subscribe(self, pattern, group, deliver):
            pass
        def ack(self, token):
            pass
        def close(self):
            pass

    d = chronica.Distributed(HeldBroker(), instance_id="fabric-phase", trust_token="t")
    d.emit("t", b"x")
    assert publishing.wait(10)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    try:
        d.close(30.0)
        print("close returned", gate.is_set())
    except KeyboardInterrupt:
        print("KeyboardInterrupt", d.closed, gate.is_set())
    THEN
"""

THEN = {
    # The close goes on once the publish returns: the fabric stops taking
    # emits, then the director closes.
    "close_goes_on": """
        gate.set()
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                d.emit("t", b"more")  # taken while the fabric still publishes
            except chronica.ClosedError:
                print("closed to new calls")
                break
            time.sleep(0.01)
    """,
    # The interpreter exits while the publish still runs: the atexit hook
    # waits for the close left running, which ends once the publish does.
    "exit_waits_for_it": """
        threading.Timer(0.5, gate.set).start()
    """,
}


@pytest.mark.parametrize("then", sorted(THEN))
def test_ctrl_c_ends_the_wait_of_a_distributed_close_in_its_fabric_phase(then):
    script = textwrap.dedent(FABRIC_PHASE).replace("THEN", textwrap.dedent(THEN[then]))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    expected = ["KeyboardInterrupt True False"] + (["closed to new calls"] if then == "close_goes_on" else [])
    assert proc.stdout.splitlines() == expected, proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "FATAL" not in proc.stderr, proc.stderr
