"""Interpreter shutdown with a director still open neither hangs nor crashes."""

import subprocess
import sys
import textwrap

import pytest

SCRIPTS = {
    "open_director_busy_callbacks": """
        import chronica, time
        d = chronica.Director()
        def slow(events):
            time.sleep(0.001)
        for i in range(4):
            d.register(f"n{i}", slow)
        for i in range(20000):
            d.emit("t", b"x" * 64)
        print("exiting")
    """,
    "daemon_thread_still_emitting": """
        import chronica, threading, time
        d = chronica.Director()
        d.register("a", lambda events: sum(len(e.payload) for e in events))
        def spam():
            while True:
                try:
                    d.emit("t", b"x")
                except chronica.ClosedError:
                    return
        threading.Thread(target=spam, daemon=True).start()
        time.sleep(0.2)
        print("exiting")
    """,
    "callback_referencing_its_director": """
        import chronica
        d = chronica.Director()
        def echo(events):
            for e in events:
                if e.kind == "user" and e.payload == b"ping":
                    d.emit("t", b"pong", source="a")
        d.register("a", echo)
        d.register("b", lambda events: None)
        for i in range(1000):
            d.emit("t", b"ping")
        print("exiting")
    """,
    "director_dropped_in_a_callback": """
        import chronica, gc
        holder = {}
        def cb(events):
            holder.pop("d", None)
        holder["d"] = chronica.Director()
        holder["d"].register("a", cb)
        holder["d"].emit("t", b"x")
        import time; time.sleep(0.5)
        gc.collect()
        print("exiting")
    """,
    "sharing_bus_left_open": """
        import chronica, time
        d = chronica.Director()
        bus = chronica.EventBus(d)
        bus.on("t", lambda e: time.sleep(0.001))
        for i in range(2000):
            bus.emit("t", b"x")
        print("exiting")
    """,
    "sharing_buses_collected_just_before_exit": """
        import chronica, gc, time
        d = chronica.Director()
        buses = [chronica.EventBus(d) for _ in range(20)]
        for bus in buses:
            bus.on("t", lambda e: time.sleep(0.001))
        for i in range(200):
            d.emit("t", b"x")
        del bus
        buses.clear()  # each ends its subscription on a thread of its own
        gc.collect()
        print("exiting")
    """,
    # The interpreter exits while a daemon thread's close waits for a
    # callback still running: the atexit hook used to skip the director
    # (closing already) and finalise under the callback, which aborted
    # the process ("FATAL: exception not rethrown").
    "close_under_way_on_a_daemon_thread": """
        import chronica, threading, time
        d = chronica.Director()
        running = threading.Event()
        def busy(events):
            if events[0].kind == "user":
                running.set()
                end = time.monotonic() + 1.0
                while time.monotonic() < end:
                    pass
        d.register("a", busy)
        d.emit("t", b"x")
        running.wait(10)
        threading.Thread(target=d.close, args=(5.0,), daemon=True).start()
        while not d.closed:
            time.sleep(0.01)
        print("exiting")
    """,
    # Collected while a callback runs past the finalizer's bounded wait
    # (2 s drain and 1 s): the close goes on on a thread of its own, which
    # the atexit hook skipped, as above.
    "collected_while_a_callback_outlasts_the_finalizer": """
        import chronica, threading, time
        d = chronica.Director()
        running = threading.Event()
        def busy(events):
            if events[0].kind == "user":
                running.set()
                end = time.monotonic() + 3.5
                while time.monotonic() < end:
                    pass
        d.register("a", busy)
        d.emit("t", b"x")
        running.wait(10)
        del d
        print("exiting")
    """,
    "sys_exit_inside_with": """
        import chronica, sys
        with chronica.Director() as d:
            d.register("a", lambda events: None)
            d.emit("t", b"x")
            print("exiting")
            sys.exit(0)
    """,
}


# The same close under way, for a fabric.
SCRIPTS["distributed_close_under_way_on_a_daemon_thread"] = SCRIPTS[
    "close_under_way_on_a_daemon_thread"
].replace("chronica.Director()", 'chronica.Distributed("memory://exit-close-under-way", trust_token="t")')


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_exit_with_open_director(name):
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPTS[name])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "exiting"
    assert "Fatal Python error" not in proc.stderr


# A director made after chronica's atexit hook has run: an atexit handler
# registered before `import chronica` runs after chronica's own. Its delivery
# threads were still delivering (or waiting for the GIL) when the interpreter
# finalised; CPython then ends such a thread mid-call, which aborted the
# process ("FATAL: exception not rethrown") or hung it.
LATE_DIRECTOR = """
    import atexit

    KEEP = []

    def late():
        import chronica
        d = chronica.Director()
        KEEP.append(d)  # still open at exit
        seen = []
        d.register("n", {callback})
        for i in range(100_000):
            d.emit("t", b"x")
        print("exiting")

    atexit.register(late)
    import chronica
"""


@pytest.mark.parametrize(
    "callback",
    ["lambda events: seen.extend(events)", "seen.append"],
    ids=["python_callback", "c_callable_callback"],
)
def test_director_made_in_a_late_atexit_handler(callback):
    script = textwrap.dedent(LATE_DIRECTOR).replace("{callback}", callback)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "exiting"
    assert "FATAL" not in proc.stderr and "Fatal Python error" not in proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
