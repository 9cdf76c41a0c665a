"""A director made before ``os.fork()``, in the child: its delivery
threads did not survive the fork, so every call raises ClosedError (saying
why), and the child's exit, which closes the director, returns at once. A
director made in the child works. Before, the child's emits were accepted
and never delivered, and a child that simply exited hung for good.

Each scenario runs in a fresh interpreter, so that a hang fails the test
by its timeout instead of hanging pytest."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCENARIO = textwrap.dedent(
    """
    import os, sys, threading, chronica

    def counter():
        got = []
        done = threading.Event()
        def node(events):
            got.extend(e for e in events if e.kind == "user")
            if got:
                done.set()
        return got, done, node

    got, done, node = counter()
    d = chronica.Director()
    d.register("a", node)
    d.emit("t", b"before")
    assert done.wait(10)

    pid = os.fork()
    if pid == 0:
        try:
            d.emit("t", b"in the child")
        except chronica.ClosedError as e:
            assert "forked" in str(e), e
        else:
            raise AssertionError("an emit was taken in the child")
        for call in (lambda: d.stats("a"), lambda: d.register("b", node), lambda: d.close(1.0)):
            try:
                call()
            except chronica.ClosedError:
                pass
            else:
                raise AssertionError("a call was taken in the child")
        mine, mine_done, mine_node = counter()
        with chronica.Director() as own:
            own.register("c", mine_node)
            own.emit("t", b"mine")
            assert mine_done.wait(10), "a director made in the child delivers nothing"
        print("child ok", flush=True)
        sys.exit(0)  # a plain exit: the inherited director closes itself
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    d.emit("t", b"after")
    assert d.close(5.0) == 0
    assert [e.payload for e in got] == [b"before", b"after"], got
    print("parent ok", flush=True)
    """
)


def test_a_director_made_before_a_fork_takes_no_calls_in_the_child() -> None:
    run = subprocess.run(
        [sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines() == ["child ok", "parent ok"], run.stdout + run.stderr
