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
    "sys_exit_inside_with": """
        import chronica, sys
        with chronica.Director() as d:
            d.register("a", lambda events: None)
            d.emit("t", b"x")
            print("exiting")
            sys.exit(0)
    """,
}


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
