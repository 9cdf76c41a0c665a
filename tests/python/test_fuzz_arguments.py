"""Every public Director method called with random arguments of every
kind: None, bools, huge and negative ints, NaN and infinities, empty,
over-long and unencodable strings, bytes-likes, containers, objects,
callables. Seeded, so a failure replays.

Each call either succeeds or raises ``TypeError``, ``ValueError`` or a
``ChronicaError`` (test_bad_input.py has the exact answer for each known
case); nothing else escapes (no ``OverflowError``, ``SystemError`` or
pyo3 ``PanicException``), the interpreter survives, and the director
still routes and keeps its accounting afterwards.
"""

from __future__ import annotations

import collections
import math
import random
from typing import Any, Callable, Dict, List

import chronica
from conftest import Recorder, settle

SEEDS = range(4)
CALLS_PER_SEED = 400

ALLOWED = (TypeError, ValueError, chronica.ChronicaError)


class Opaque:
    pass


def pool(rng: random.Random) -> Any:
    return rng.choice([
        None, True, False, 0, 1, -1, 7, 2**31, 2**63, 2**64 + 5, -(2**70), 10**400,
        0.0, 0.5, -2.5, 1e300, math.nan, math.inf, -math.inf,
        "", "a", "n0", "n1", "t", "a.*", "a.>", ">", "x" * 256, "\udc80", "\u0000", "ü",
        b"", b"x", bytearray(b"y"), memoryview(b"z"),
        [], ["t"], ["a.*", 3], {}, {"k": 1}, {1: 2}, (1, 2), {1, 2},
        Opaque(), object(), len, lambda *a: None, chronica.Retry(),
    ])


def args_for(rng: random.Random, valid: List[Any]) -> List[Any]:
    """`valid` with each argument replaced by a random one now and then."""
    return [pool(rng) if rng.random() < 0.15 else v for v in valid]


def kwargs_for(rng: random.Random, valid: Dict[str, Any]) -> Dict[str, Any]:
    return {k: (pool(rng) if rng.random() < 0.15 else v) for k, v in valid.items() if rng.random() < 0.7}


Call = Callable[[chronica.Director, random.Random], Any]


def calls(sink: Recorder) -> List[Call]:
    retry = chronica.Retry()
    return [
        lambda d, r: d.register(*args_for(r, [r.choice(["n0", "n1", "n2"]), sink]), **kwargs_for(r, {
            "topics": ["t"], "group": "g", "concurrency": 2, "connected": True, "retry": retry,
            "queue_capacity": 8, "loop": None, "on_dead_letter": None})),
        lambda d, r: d.unregister(*args_for(r, ["n0"])),
        lambda d, r: d.unregister_draining(*args_for(r, ["n1", 0.01])),
        lambda d, r: d.subscribe(*args_for(r, ["n0", "t.*"])),
        lambda d, r: d.emit(*args_for(r, ["t", b"x"]), **kwargs_for(r, {
            "source": "n1", "key": "k", "content_type": "text/plain"})),
        lambda d, r: d.emit_to(*args_for(r, ["n0", "t", {"json": [1, 2]}]), **kwargs_for(r, {
            "source": "n2", "key": b"k"})),
        lambda d, r: d.emit_root(*args_for(r, ["act", "text"]), **kwargs_for(r, {"target": "n2"})),
        lambda d, r: d.node_connected(*args_for(r, ["n0"])),
        lambda d, r: d.node_disconnected(*args_for(r, ["n2"])),
        lambda d, r: d.stats(*args_for(r, ["n1"])),
        lambda d, r: chronica.Director(**kwargs_for(r, {
            "queue_capacity": 16, "root_capacity": 4, "batch_size": 8, "overflow": "drop_newest",
            "block_timeout": 0.1, "retry": retry, "trust_token": "tok", "membership_events": True,
            "on_drop": None, "on_error": None})).close(0.1),
        lambda d, r: chronica.Retry(**kwargs_for(r, {
            "backoff": "exponential", "initial": 0.01, "multiplier": 2.0, "max": 1.0,
            "jitter": 0.1, "max_retries": 3})),
    ]


def test_random_arguments_raise_only_documented_errors():
    sink = Recorder()
    outcomes: collections.Counter[str] = collections.Counter()
    with chronica.Director() as d:
        table = calls(sink)
        for seed in SEEDS:
            rng = random.Random(seed)
            for i in range(CALLS_PER_SEED):
                pick = rng.randrange(len(table))
                try:
                    table[pick](d, rng)
                    outcomes["ok"] += 1
                except ALLOWED as e:
                    outcomes[type(e).__name__] += 1
                except BaseException as e:  # noqa: B036 - a PanicException is a BaseException
                    raise AssertionError(f"seed {seed} call {i} (table entry {pick}): {type(e).__name__}: {e}") from e
        # The mix reached success and each kind of refusal.
        for outcome in ("ok", "TypeError", "InvalidArgumentError", "UnknownNodeError", "DuplicateNodeError"):
            assert outcomes[outcome] > 0, f"no call ended {outcome}: {sorted(outcomes.items())}"
        # Still a working director, its books balanced.
        for uid in d.nodes():
            d.node_connected(uid)
        if "probe" not in d.nodes():
            d.register("probe", Recorder())
        d.emit("probe.topic", b"after")
        for uid in d.nodes():
            assert settle(d, uid).balanced()
