"""``Director.emit_many``: the payloads of one call emitted in order as that
many ``emit``s would, with consecutive ids (a ``range``), in one call of
the engine's ``emit_many``. Every payload is converted before anything is
emitted; an unknown source refuses the whole call; under ``block`` it is
all or nothing, and a run larger than a block node's queue is refused."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from typing import Any, Dict, Iterator, List

import pytest

import chronica
from conftest import Recorder, settle, wait_for
from test_interrupt import FULL_LANE


def ids_of(r: Recorder) -> List[int]:
    return [e.id for e in r.user()]


# -- order and ids ---------------------------------------------------------


def test_ids_are_a_consecutive_range_in_payload_order() -> None:
    with chronica.Director() as d:
        r = Recorder()
        d.register("n", r, topics="t")
        before = d.emit("t", b"before")
        ids = d.emit_many("t", [b"%d" % i for i in range(10)])
        after = d.emit("t", b"after")
        assert isinstance(ids, range) and ids.step == 1 and len(ids) == 10
        assert before < ids.start and ids.stop <= after
        got = r.wait_user(12)
        assert [e.payload for e in got] == [b"before", *[b"%d" % i for i in range(10)], b"after"]
        assert [e.id for e in got[1:11]] == list(ids)


def test_no_payloads_is_an_empty_range_and_emits_nothing() -> None:
    with chronica.Director() as d:
        r = Recorder()
        d.register("n", r)
        ids = d.emit_many("t", [])
        assert isinstance(ids, range) and len(ids) == 0
        assert len(d.emit_many("t", iter(()))) == 0
        assert settle(d, "n").accepted == 1  # the pull only


def test_any_iterable_is_taken_in_order() -> None:
    def gen() -> Iterator[bytes]:
        yield from (b"g0", b"g1")

    with chronica.Director() as d:
        r = Recorder()
        d.register("n", r)
        d.emit_many("t", (b"t0", b"t1"))
        d.emit_many("t", gen())
        d.emit_many("t", map(str.encode, ["m0", "m1"]))
        assert [e.payload for e in r.wait_user(6)] == [b"t0", b"t1", b"g0", b"g1", b"m0", b"m1"]


# -- routing ---------------------------------------------------------------


def test_topics_patterns_and_source_route_as_emit_does() -> None:
    """Each node gets from one emit_many per topic exactly what the same
    emits give a twin director's node."""
    subscriptions: Dict[str, Any] = {"all": None, "ax": "a.*", "x": ["*.x", "b"], "tail": "a.>", "src": "a.x"}
    topics = ["a.x", "a.y", "b", "c.x", "a.y.z"]
    one, many = chronica.Director(), chronica.Director()
    rec: Dict[str, Dict[str, Recorder]] = {"one": {}, "many": {}}
    try:
        for name, d in (("one", one), ("many", many)):
            for uid, topics_of in subscriptions.items():
                rec[name][uid] = Recorder()
                d.register(uid, rec[name][uid], topics=topics_of)
        for t in topics:
            payloads = [f"{t}-{i}".encode() for i in range(5)]
            for p in payloads:
                one.emit(t, p, source="src")
            many.emit_many(t, payloads, source="src")
        for uid in subscriptions:
            settle(one, uid)
            settle(many, uid)
            assert rec["many"][uid].payloads() == rec["one"][uid].payloads(), uid
        assert rec["many"]["ax"].payloads()[:5] == [b"a.x-%d" % i for i in range(5)]
        assert rec["many"]["src"].payloads() == [], "the source is left out"
        assert len(rec["many"]["all"].payloads()) == 25
    finally:
        one.close()
        many.close()


def test_a_consumer_group_shares_the_run_each_event_once() -> None:
    with chronica.Director() as d:
        members = {uid: Recorder() for uid in ("g1", "g2", "g3")}
        for uid, r in members.items():
            d.register(uid, r, topics="t", group="g")
        ids = d.emit_many("t", [b"%d" % i for i in range(300)])
        for uid in members:
            settle(d, uid)
        got = [e.id for r in members.values() for e in r.user()]
        assert sorted(got) == list(ids), "every event to exactly one member"
        for r in members.values():
            assert ids_of(r) == sorted(ids_of(r)), "in order within a member"
        # One key: one member takes the whole run, in order.
        keyed = d.emit_many("t", [b"k%d" % i for i in range(50)], key="customer-7")
        for uid in members:
            settle(d, uid)
        takers = [r for r in members.values() if set(keyed) & set(ids_of(r))]
        assert len(takers) == 1
        assert [i for i in ids_of(takers[0]) if i in keyed] == list(keyed)
        assert all(e.key == b"customer-7" for e in takers[0].user() if e.id in keyed)


# -- payloads --------------------------------------------------------------


def test_payloads_are_converted_as_emit_converts_them() -> None:
    with chronica.Director() as d:
        a, b = Recorder(), Recorder()
        d.register("a", a)
        d.register("b", b)
        shared = b"the very object"
        payloads: List[Any] = [shared, "str \u00e9", bytearray(b"ba"), memoryview(b"mv"), {"k": [1, 2]}, [1, None], 3]
        d.emit_many("t", payloads, key=b"k", content_type="application/x-test")
        for p in payloads:
            d.emit("single", p)
        got_a, got_b = a.wait_user(2 * len(payloads)), b.wait_user(2 * len(payloads))
        many, single = got_a[: len(payloads)], got_a[len(payloads) :]
        assert [e.payload for e in many] == [e.payload for e in single]
        assert [e.payload for e in many] == [
            shared, "str \u00e9".encode(), b"ba", b"mv", b'{"k": [1, 2]}', b"[1, null]", b"3"
        ]
        assert all(e.key == b"k" and e.content_type == "application/x-test" for e in many)
        assert many[0].payload is shared and got_b[0].payload is shared, "the emitter's bytes, shared"
        assert single[4].json() == {"k": [1, 2]}


BAD = [
    ({1, 2}, TypeError, "not JSON serializable"),
    (float("nan"), ValueError, "not JSON compliant"),
    ("\ud800", ValueError, "surrogates not allowed"),
]


@pytest.mark.parametrize("bad, error, text", BAD, ids=["set", "nan", "surrogate"])
@pytest.mark.parametrize("k", [0, 3, 9])
def test_a_bad_payload_at_index_k_raises_naming_k_and_emits_nothing(bad: Any, error: type, text: str, k: int) -> None:
    with chronica.Director() as d:
        r = Recorder()
        d.register("n", r)
        payloads: List[Any] = [b"ok"] * 10
        payloads[k] = bad
        with pytest.raises(error) as info:
            d.emit_many("t", payloads)
        assert str(info.value).startswith(f"payloads[{k}]: ") and text in str(info.value)
        assert isinstance(info.value.__cause__, error), "the conversion's own error is the cause"
        # The same payload given to emit raises the same error class.
        with pytest.raises(error):
            d.emit("t", bad)
        first = d.emit("t", b"after")
        assert [e.payload for e in r.wait_user(1)] == [b"after"] and settle(d, "n").accepted == 2
        assert r.user()[0].id == first


def test_an_error_of_the_iterable_goes_through_and_emits_nothing() -> None:
    class Boom(Exception):
        pass

    def gen() -> Iterator[bytes]:
        yield b"0"
        yield b"1"
        raise Boom("at 2")

    with chronica.Director() as d:
        d.register("n", Recorder())
        with pytest.raises(Boom):
            d.emit_many("t", gen())
        assert settle(d, "n").accepted == 1


@pytest.mark.parametrize("one", ["text", b"bytes", bytearray(b"ba"), memoryview(b"mv"), {"k": 1}])
def test_one_payload_emit_would_take_is_refused(one: Any) -> None:
    """Iterated, it would be one event per character, byte or key."""
    with chronica.Director() as d:
        d.register("n", Recorder())
        with pytest.raises(TypeError, match="iterable of payloads, not one"):
            d.emit_many("t", one)
        with pytest.raises(TypeError, match="iterable of payloads") as info:
            d.emit_many("t", 42)
        assert isinstance(info.value.__cause__, TypeError)
        with pytest.raises(TypeError, match="key must be bytes or str"):
            d.emit_many("t", [b"x"], key=3)  # type: ignore[arg-type]
        assert settle(d, "n").accepted == 1


# -- refusals --------------------------------------------------------------


def test_an_unknown_source_refuses_the_whole_call() -> None:
    with chronica.Director() as d:
        r = Recorder()
        d.register("n", r)
        with pytest.raises(chronica.UnknownNodeError, match="ghost"):
            d.emit_many("t", [b"1", b"2"], source="ghost")
        assert settle(d, "n").accepted == 1
        d.close()
        with pytest.raises(chronica.ClosedError):
            d.emit_many("t", [b"1"])


def block_director(where: str, block_timeout: float) -> chronica.Director:
    """Node "small" (queue 4, held: connected=False) and "roomy" (queue
    100), ``block`` set on the director or on "small" alone."""
    d = chronica.Director(
        queue_capacity=4, block_timeout=block_timeout, **({"overflow": "block"} if where == "director" else {})
    )
    own: Dict[str, Any] = {"overflow": "block"} if where == "node" else {}
    d.register("small", Recorder(), connected=False, **own)
    d.register("roomy", Recorder(), queue_capacity=100)
    return d


@pytest.mark.parametrize("where", ["director", "node"])
@pytest.mark.parametrize("thread", ["main", "other"], ids=["main-thread-slices", "other-thread"])
def test_block_is_all_or_nothing(where: str, thread: str) -> None:
    d = block_director(where, block_timeout=0.2)
    try:
        with pytest.raises(chronica.InvalidArgumentError, match="queue holds 4") as info:
            d.emit_many("t", [b"%d" % i for i in range(5)])
        assert isinstance(info.value, ValueError)
        d.emit_many("t", [b"0", b"1", b"2"])
        # Room for one of two: nothing is accepted anywhere.
        errors: List[BaseException] = []

        def refused() -> None:
            try:
                d.emit_many("t", [b"late", b"later"])
            except BaseException as e:  # noqa: BLE001 - handed to the test thread
                errors.append(e)

        if thread == "main":
            refused()
        else:
            t = threading.Thread(target=refused)
            t.start()
            t.join()
        assert len(errors) == 1 and isinstance(errors[0], chronica.QueueFullError), errors
        assert d.stats("small").accepted == 4, "three and the pull"
        assert settle(d, "roomy").accepted == 4, "the refused calls reached nobody"
        d.node_connected("small")
        s = settle(d, "small")
        assert (s.delivered, s.dropped) == (4, 0) and s.balanced()
    finally:
        d.close()


def test_block_waits_for_room_for_the_whole_run() -> None:
    d = block_director("director", block_timeout=30.0)
    try:
        d.emit_many("t", [b"0", b"1", b"2"])
        # Room comes when "small" is connected, while the call waits: the
        # timer is what makes room, not a timing assertion.
        timer = threading.Timer(0.2, d.node_connected, ("small",))
        timer.start()
        ids = d.emit_many("t", [b"3", b"4", b"5"])
        timer.join()
        assert len(ids) == 3
        s = settle(d, "small")
        assert (s.accepted, s.delivered, s.dropped) == (7, 7, 0)
    finally:
        d.close()


def test_ctrl_c_ends_a_blocking_emit_many_and_nothing_is_accepted() -> None:
    """The wait runs in slices on the main thread, as ``emit``'s
    (test_interrupt.py): the signal handler's KeyboardInterrupt ends it."""
    # A run of one: the script's node holds one event (queue_capacity=1).
    emit = 'd.emit_many("t", [b"interrupted"])'
    script = "KIND = 'director'\n" + textwrap.dedent(FULL_LANE).replace("EMIT", emit)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines() == [
        "KeyboardInterrupt True",
        "accepted 0 dropped 0 balanced True",
        "delivered 2 balanced True",
    ], (proc.stdout + proc.stderr)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_drop_oldest_evicts_as_the_emits_would_and_tells_the_node() -> None:
    drops: List[bytes] = []
    with chronica.Director(queue_capacity=4, on_drop=lambda uid, e, reason: drops.append(e.payload)) as d:
        r = Recorder()
        d.register("n", r, connected=False)
        ids = d.emit_many("t", [b"%d" % i for i in range(6)])
        d.node_connected("n")
        s = settle(d, "n")
        assert s.dropped == 2 and s.balanced()
        assert ids_of(r) == list(ids)[2:], "the newest four"
        assert drops == [b"0", b"1"]
        lagged = [e for e in r.root() if e.topic == chronica.LAGGED]
        assert len(lagged) == 1
        assert lagged[0].json() == {"dropped": 2, "first_id": ids[0], "last_id": ids[1]}


# -- callbacks and threads -------------------------------------------------


@pytest.mark.parametrize("overflow", ["drop_oldest", "block"])
def test_callable_from_inside_a_callback(overflow: str) -> None:
    with chronica.Director(overflow=overflow, block_timeout=30.0) as d:
        out = Recorder()
        ranges: List[range] = []

        def relay(events: List[chronica.Event]) -> None:
            for e in events:
                if e.kind == "user":
                    ranges.append(d.emit_many("out", [e.payload + b"-a", e.payload + b"-b"], source="relay"))

        d.register("relay", relay, topics="in")
        d.register("out", out, topics="out")
        d.emit_many("in", [b"0", b"1", b"2"])
        got = out.wait_user(6)
        assert [e.payload for e in got] == [b"0-a", b"0-b", b"1-a", b"1-b", b"2-a", b"2-b"]
        assert [e.id for e in got] == [i for r in ranges for i in r]
        assert all(e.source == "relay" for e in got)


@pytest.mark.parametrize("overflow, capacity", [("drop_oldest", 1 << 16), ("block", 64)])
def test_threads_call_emit_many_while_callbacks_run(overflow: str, capacity: int) -> None:
    """Under ``block`` with a small queue the callers wait for room (GIL
    released) while the callbacks, which need the GIL, make it."""
    threads, calls, run = 4, 40, 16
    with chronica.Director(overflow=overflow, queue_capacity=capacity, block_timeout=30.0) as d:
        r = Recorder()
        seen = [0]

        def busy(events: List[chronica.Event]) -> None:
            seen[0] += sum(len(e.payload) for e in events)  # Python work, GIL held
            r(events)

        d.register("n", busy, topics="t")
        for i in range(threads):
            d.register(f"p{i}", lambda events: None, topics="nothing")
        ranges: Dict[int, List[range]] = {i: [] for i in range(threads)}
        errors: List[BaseException] = []

        def produce(i: int) -> None:
            try:
                for c in range(calls):
                    payloads = [f"{i}:{c * run + k}".encode() for k in range(run)]
                    ranges[i].append(d.emit_many("t", payloads, source=f"p{i}"))
            except BaseException as e:  # noqa: BLE001 - handed to the test thread
                errors.append(e)

        workers = [threading.Thread(target=produce, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        total = threads * calls * run
        got = r.wait_user(total)
        s = settle(d, "n")
        assert (s.accepted, s.delivered, s.dropped) == (total + 1, total + 1, 0)
        all_ids = [i for rs in ranges.values() for rg in rs for i in rg]
        assert len(set(all_ids)) == total, "ids unique across threads"
        assert sorted(e.id for e in got) == sorted(all_ids)
        for i in range(threads):
            mine = [int(e.payload.split(b":")[1]) for e in got if e.payload.startswith(b"%d:" % i)]
            assert mine == list(range(calls * run)), f"thread {i}'s events in its order"


# -- accounting ------------------------------------------------------------


def test_the_accounting_equation_holds_after_runs() -> None:
    """accepted = delivered + dropped + dead_lettered, nothing pending, for
    a node that drops, one that dead-letters, group members and a plain
    node, all fed by emit_many."""
    retry = chronica.Retry(initial=0.001, max=0.001, jitter=0.0, max_retries=1)
    dead: List[bytes] = []
    d = chronica.Director(
        queue_capacity=8,
        batch_size=1,
        retry=retry,
        on_dead_letter=lambda uid, events, error: dead.extend(e.payload for e in events),
    )

    def failing(events: List[chronica.Event]) -> None:
        if any(e.payload == b"x" for e in events):
            raise RuntimeError("refused")

    try:
        d.register("plain", Recorder())
        d.register("small", Recorder(), connected=False, queue_capacity=4)
        d.register("failing", failing)
        d.register("g1", Recorder(), group="g")
        d.register("g2", Recorder(), group="g")
        payloads = [b"x" if i % 5 == 0 else b"%d" % i for i in range(20)]
        # In pieces, so that the plain nodes (queue 8) never drop.
        for start in range(0, 20, 5):
            d.emit_many("t", payloads[start : start + 5])
            for uid in ("plain", "failing", "g1", "g2"):
                settle(d, uid)
        d.node_connected("small")
        stats: Dict[str, chronica.NodeStats] = {uid: settle(d, uid) for uid in d.nodes()}
        for uid, s in stats.items():
            assert s.pending == 0 and s.balanced(), (uid, s)
            assert s.accepted == s.delivered + s.dropped + s.dead_lettered, (uid, s)
        assert stats["plain"].accepted == 21 and stats["plain"].dropped == 0
        assert stats["small"].dropped == 16
        assert stats["failing"].dead_lettered == 4 and dead == [b"x"] * 4
        assert stats["g1"].accepted + stats["g2"].accepted == 20 + 2, "each event once, and two pulls"
    finally:
        d.close()

