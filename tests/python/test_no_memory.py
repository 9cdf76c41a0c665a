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
    big = bytes(512 << 20)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    # Room for small allocations, not for a second copy of `big`.
    resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + (128 << 20), hard))
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


def test_a_payload_copy_without_memory_raises_memory_error() -> None:
    run = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "MemoryError out of resources: no memory for a copy of 536870912 bytes", run.stdout
    assert lines[1] == "ok", run.stdout
