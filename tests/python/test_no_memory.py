"""A payload whose copy finds no memory raises MemoryError and changes
nothing; the copy used to abort the interpreter (the scale audit saw a
1.8 GiB emit under an address-space limit end the process with SIGABRT).

It runs in a fresh interpreter whose address space is limited just above
what it already uses, so that the limit hurts nothing else."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCENARIO = textwrap.dedent(
    """
    import resource, chronica

    def vm_bytes():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmSize")

    got = []
    d = chronica.Director()
    d.register("a", got.extend)
    big = KIND(512 << 20)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    # Room for small allocations and ROOM copies of `big`, not one more.
    resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + ROOM * len(big) + (128 << 20), hard))
    try:
        d.emit("t", big)
    except MemoryError as e:
        print("MemoryError", e, flush=True)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    stats = d.stats("a")
    assert stats.accepted == 1, stats  # the current-state event alone
    d.emit("t", b"small")
    assert d.close(5.0) == 0
    assert [e.payload for e in got if e.kind == "user"] == [b"small"], got
    print("ok", flush=True)
    """
)


def emit_without_memory(kind: str, room: int) -> subprocess.CompletedProcess:
    scenario = f"KIND = {kind}\nROOM = {room}\n" + SCENARIO
    return subprocess.run([sys.executable, "-c", scenario], capture_output=True, text=True, timeout=120)


def test_a_payload_copy_without_memory_raises_memory_error() -> None:
    proc = emit_without_memory("bytes", 0)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "MemoryError out of resources: no memory for a copy of 536870912 bytes", proc.stdout
    assert lines[1] == "ok", proc.stdout


def test_a_bytearray_payload_copy_without_memory_raises_memory_error() -> None:
    """A bytearray was copied with an infallible `to_vec`: the process
    aborted (SIGABRT, "memory allocation of 536870912 bytes failed")."""
    proc = emit_without_memory("bytearray", 0)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "MemoryError out of resources: no memory for a copy of 536870912 bytes", proc.stdout
    assert lines[1] == "ok", proc.stdout


def test_the_bytes_object_made_for_a_bytearray_payload_without_memory_raises_memory_error() -> None:
    """Room for the engine's copy of a bytearray payload, not for the
    `bytes` object every node's event returns, made from it: that one
    failed as pyo3's `PyBytes::new` does, with a panic (a
    PanicException), before it was made fallible."""
    proc = emit_without_memory("bytearray", 1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].rstrip() == "MemoryError", proc.stdout
    assert lines[1] == "ok", proc.stdout


def test_a_memoryview_payload_copy_without_memory_raises_memory_error() -> None:
    proc = emit_without_memory("lambda n: memoryview(bytearray(n))", 0)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("MemoryError"), proc.stdout
    assert lines[1] == "ok", proc.stdout
