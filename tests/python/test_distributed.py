"""chronica.Distributed over the in-memory broker: two instances in this
process share one named hub (``memory://NAME``), exactly as instances in
separate processes share a real broker. Broker-backed runs live in
tests/distributed (scripts/test-distributed.sh)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from typing import Callable, Iterator, List, Tuple

import pytest

import chronica
from conftest import DEADLINE, Recorder, wait_for

FAST_RETRY = chronica.Retry(initial=0.01, max=0.05, jitter=0.0)
# Distributed mode refuses an empty trust token (it signs root events).
TOKEN = "t0k"
_ids = itertools.count()


def hub_url() -> str:
    """A hub of its own for each test."""
    return f"memory://pytest-{uuid.uuid4().hex}"


@pytest.fixture
def pair() -> Iterator[Tuple[chronica.Distributed, chronica.Distributed]]:
    """Two instances on one hub, sharing a trust token; closed afterwards."""
    url = hub_url()
    a = chronica.Distributed(url, instance_id=f"a-{next(_ids)}", trust_token="t0k", retry=FAST_RETRY)
    b = chronica.Distributed(url, instance_id=f"b-{next(_ids)}", trust_token="t0k", retry=FAST_RETRY)
    yield a, b
    for d in (a, b):
        if not d.closed:
            d.close(5.0)


def test_module_exports_the_distributed_names() -> None:
    for name in ("Distributed", "DistributedStats", "BrokerError"):
        assert name in chronica.__all__
        assert getattr(chronica, name) is getattr(chronica._chronica, name)
    assert issubclass(chronica.BrokerError, chronica.ChronicaError)


def test_broadcast_reaches_every_instance_but_the_source(
    pair: Tuple[chronica.Distributed, chronica.Distributed],
) -> None:
    a, b = pair
    src, local, remote = Recorder(), Recorder(), Recorder()
    a.register("src", src, topics="orders.*")
    a.register("local", local, topics="orders.*")
    b.register("remote", remote, topics="orders.*")
    ids = [a.emit("orders.created", f"o{i}".encode(), source="src") for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5

    want = [f"o{i}".encode() for i in range(5)]
    assert [e.payload for e in remote.wait_user(5)] == want
    assert [e.payload for e in local.wait_user(5)] == want
    event = remote.user()[0]
    assert event.topic == "orders.created"
    assert event.source == "src"
    wait_for(lambda: a.stats().published == 5, what="5 published")
    wait_for(lambda: b.stats().injected >= 5, what="5 injected on b")
    assert src.user() == []
    assert a.stats().buffered == 0


def test_topics_filter_on_the_receiving_instance(
    pair: Tuple[chronica.Distributed, chronica.Distributed],
) -> None:
    a, b = pair
    orders, other = Recorder(), Recorder()
    b.register("orders", orders, topics="orders.>")
    b.register("other", other, topics="billing.*")
    a.emit("billing.paid", b"b1")
    a.emit("orders.eu.created", b"o1")
    assert orders.wait_user(1)[0].payload == b"o1"
    assert other.wait_user(1)[0].payload == b"b1"
    wait_for(lambda: b.stats().received >= 2, what="2 received")
    assert len(orders.user()) == 1 and len(other.user()) == 1


def test_payload_key_and_content_type_cross_the_broker(
    pair: Tuple[chronica.Distributed, chronica.Distributed],
) -> None:
    a, b = pair
    rec = Recorder()
    b.register("r", rec)
    a.emit("json", {"n": 1}, key="k-1", content_type="application/json")
    e = rec.wait_user(1)[0]
    assert e.json() == {"n": 1}
    assert e.key == b"k-1"
    assert e.content_type == "application/json"


def test_emit_to_reaches_a_node_on_another_instance(
    pair: Tuple[chronica.Distributed, chronica.Distributed],
) -> None:
    a, b = pair
    target, bystander = Recorder(), Recorder()
    b.register("target", target, topics="nothing.matches")
    b.register("bystander", bystander)
    a.emit_to("target", "direct", b"hi")
    assert target.wait_user(1)[0].payload == b"hi"
    # A local target is reached at once, without the broker.
    local = Recorder()
    a.register("local", local, topics="nothing.matches")
    b.emit_to("local", "direct", b"back")
    assert local.wait_user(1)[0].payload == b"back"
    a.emit("sync", b"marker")
    bystander.wait_user(1)
    assert [e.payload for e in bystander.user()] == [b"marker"]


def test_a_unicast_to_nobody_is_counted_by_every_instance(
    pair: Tuple[chronica.Distributed, chronica.Distributed],
) -> None:
    a, b = pair
    target = Recorder()
    b.register("target", target)
    a.emit_to("target", "direct", b"hi")
    target.wait_user(1)
    # a reads its own unicast back and has no "target": counted there only.
    wait_for(lambda: a.stats().unicast_not_here == 1, what="a counts the unicast it does not own")
    a.emit_to("nobody", "direct", b"lost")
    wait_for(lambda: a.stats().unicast_not_here == 2, what="a counts the unicast to nobody")
    wait_for(lambda: b.stats().unicast_not_here == 1, what="b counts the unicast to nobody")
    assert "unicast_not_here=1" in repr(b.stats())
    assert [e.payload for e in target.user()] == [b"hi"]


def test_a_group_shares_each_event_once_across_instances(
    pair: Tuple[chronica.Distributed, chronica.Distributed],
) -> None:
    a, b = pair
    m1, m2 = Recorder(), Recorder()
    a.register("worker-a", m1, topics="jobs", group="workers")
    b.register("worker-b", m2, topics="jobs", group="workers")
    n = 40
    for i in range(n):
        a.emit("jobs", str(i), key=f"k{i % 7}")
    wait_for(lambda: len(m1.user()) + len(m2.user()) >= n, what=f"{n} jobs")
    # Let any duplicate arrive before counting.
    a.flush(5.0)
    b.flush(5.0)
    got = sorted(int(e.payload) for e in m1.user() + m2.user())
    assert got == list(range(n))


def test_root_events_reach_every_node_of_every_instance(
    pair: Tuple[chronica.Distributed, chronica.Distributed],
) -> None:
    a, b = pair
    ra, rb = Recorder(), Recorder()
    a.register("ra", ra)
    b.register("rb", rb)
    a.emit_root("app.reload", b"{}")

    def saw(rec: Recorder) -> Callable[[], bool]:
        return lambda: any(e.topic == "app.reload" for e in rec.root())

    wait_for(saw(ra), what="local root event")
    wait_for(saw(rb), what="remote root event")
    remote = [e for e in rb.root() if e.topic == "app.reload"][0]
    assert remote.trust_token == "t0k"
    a.emit_root("app.only-rb", b"x", target="rb")
    wait_for(lambda: any(e.topic == "app.only-rb" for e in rb.root()), what="targeted root event")
    assert not any(e.topic == "app.only-rb" for e in ra.root())


def test_a_root_events_content_type_crosses_the_broker(
    pair: Tuple[chronica.Distributed, chronica.Distributed],
) -> None:
    a, b = pair
    rb = Recorder()
    b.register("rb", rb)
    a.emit_root("app.config", b'{"v":1}', content_type="application/json")
    a.emit_root("app.config", b"v=2", target="rb", content_type="text/plain")
    got = lambda: [(e.content_type, e.payload) for e in rb.root() if e.topic == "app.config"]  # noqa: E731
    wait_for(lambda: len(got()) == 2, what="both root events")
    assert got() == [("application/json", b'{"v":1}'), ("text/plain", b"v=2")]
    assert b.stats().rejected_forged == 0


def test_block_emits_wait_for_room_with_the_gil_released() -> None:
    # Under block, an emit that finds a local node full waits for room;
    # the thread that makes room needs the GIL meanwhile.
    url = hub_url()
    with chronica.Distributed(
        url, instance_id="blk", queue_capacity=1, overflow="block", block_timeout=10.0, trust_token=TOKEN
    ) as a, chronica.Distributed(url, instance_id="far", trust_token=TOKEN) as b:
        slow, far = Recorder(), Recorder()
        a.register("slow", slow, connected=False)
        b.register("far", far)
        a.emit("t", b"first")
        threading.Timer(0.2, a.node_connected, args=("slow",)).start()
        a.emit("t", b"second")  # waits until "slow" drains
        a.emit_to("slow", "t", b"third")
        assert [e.payload for e in slow.wait_user(3)] == [b"first", b"second", b"third"]
        assert [e.payload for e in far.wait_user(2)] == [b"first", b"second"]
        assert a.node_stats("slow").dropped == 0


def test_root_events_with_another_token_are_rejected() -> None:
    url = hub_url()
    with chronica.Distributed(url, instance_id="good", trust_token="right") as good, chronica.Distributed(
        url, instance_id="evil", trust_token="wrong"
    ) as evil:
        rec = Recorder()
        good.register("n", rec)
        evil.emit_root("app.takeover", b"")
        wait_for(lambda: good.stats().rejected_forged == 1, what="forged root counted")
        # User events still flow between them; the forged one never arrived.
        evil.emit("hello", b"after")
        rec.wait_user(1)
        assert not any(e.topic == "app.takeover" for e in rec.root())


def test_delivery_ack_mode_delivers() -> None:
    url = hub_url()
    with chronica.Distributed(
        url, instance_id="s", ack_mode="delivery", trust_token=TOKEN
    ) as s, chronica.Distributed(url, instance_id="r", ack_mode="delivery", trust_token=TOKEN) as r:
        rec = Recorder()
        r.register("n", rec)
        for i in range(10):
            s.emit("t", str(i))
        assert [e.payload for e in rec.wait_user(10)] == [str(i).encode() for i in range(10)]


def test_callbacks_can_emit_through_the_fabric(
    pair: Tuple[chronica.Distributed, chronica.Distributed],
) -> None:
    a, b = pair
    replies = Recorder()
    a.register("asker", replies, topics="pong")

    def responder(events: List[chronica.Event]) -> None:
        for e in events:
            if e.kind == "user":
                b.emit("pong", e.payload, source="responder")

    b.register("responder", responder, topics="ping")
    a.emit("ping", b"1", source="asker")
    assert replies.wait_user(1)[0].payload == b"1"


def test_many_threads_emit_at_once(pair: Tuple[chronica.Distributed, chronica.Distributed]) -> None:
    a, b = pair
    rec = Recorder()
    b.register("sink", rec)
    per, threads = 50, 4

    def run(t: int) -> None:
        for i in range(per):
            a.emit("load", f"{t}-{i}")

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    got = rec.wait_user(per * threads)
    assert len({e.payload for e in got}) == per * threads


def test_node_level_calls(pair: Tuple[chronica.Distributed, chronica.Distributed]) -> None:
    a, _ = pair
    rec = Recorder()
    a.register("n", rec, topics="x")
    a.subscribe("n", "y")
    assert a.nodes() == ["n"]
    a.node_disconnected("n")
    assert not a.node_stats("n").connected
    a.node_connected("n")
    a.emit("y", b"1")
    rec.wait_user(1)
    wait_for(lambda: a.node_stats("n").delivered >= 2, what="delivery counted")
    a.unregister("n")
    assert a.nodes() == []
    a.join_group("later")
    a.join_group("later")  # idempotent


def test_errors_map_to_the_chronica_exceptions(pair: Tuple[chronica.Distributed, chronica.Distributed]) -> None:
    a, _ = pair
    with pytest.raises(chronica.UnknownNodeError):
        a.emit("t", b"", source="ghost")
    a.register("dup", Recorder())
    with pytest.raises(chronica.DuplicateNodeError):
        a.register("dup", Recorder())
    with pytest.raises(TypeError):
        a.register("bad", 42)  # type: ignore[arg-type]
    with pytest.raises(chronica.InvalidArgumentError):
        a.emit_to("", "t", b"")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": "memory://x", "ack_mode": "never"},
        {"url": "memory://x", "instance_id": "has space"},
        {"url": "memory://x", "topic_prefix": ".dot"},
        {"url": "memory://x", "outbox_capacity": 0},
        {"url": "memory://x", "connect_timeout": 0.0},
        {"url": "memory://x", "group_watch_interval": 0.0},
        {"url": "memory://x", "overflow": "explode"},
        {"url": "carrier-pigeon://coop"},
        {"url": "no-scheme"},
    ],
)
def test_bad_settings_raise_invalid_argument(kwargs: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(chronica.InvalidArgumentError) as info:
        chronica.Distributed(trust_token=TOKEN, **kwargs)
    assert isinstance(info.value, ValueError)


def test_unreachable_broker_raises_broker_error_in_time() -> None:
    with pytest.raises(chronica.BrokerError):
        chronica.Distributed("redis://127.0.0.1:1", connect_timeout=2.0, trust_token=TOKEN)


def test_close_lifecycle(pair: Tuple[chronica.Distributed, chronica.Distributed]) -> None:
    a, b = pair
    rec = Recorder()
    b.register("r", rec)
    a.emit("t", b"before")
    rec.wait_user(1)
    assert not a.closed
    assert "instance_id" in repr(a) and a.instance_id.startswith("a-")
    assert a.trust_token == "t0k"
    assert a.close(5.0) == 0
    assert a.closed
    with pytest.raises(chronica.ClosedError):
        a.close()
    with pytest.raises(chronica.ClosedError):
        a.emit("t", b"after")
    stats = a.stats()
    assert isinstance(stats, chronica.DistributedStats)
    assert stats.published == 1
    assert stats == a.stats()


def test_context_manager_and_default_instance_id() -> None:
    with chronica.Distributed(hub_url(), trust_token=TOKEN) as d:
        assert d.instance_id
        assert not d.closed
    assert d.closed


Msg = Tuple[str, bytes, "bytes | None", List[Tuple[str, str]]]


class PyBroker:
    """A broker written in Python, shared by the adapters made from it:
    each (pattern, group) gets every message of its topic once, handed to
    its subscribers in turn. Exact topic patterns only (all Distributed
    asks for). A released message goes to another subscriber of its group,
    and the one that released it leaves the group, as a consumer group
    rebalance would do; a subscriber whose ``deliver`` raises ClosedError
    leaves too. Unacknowledged messages are never redelivered otherwise."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.groups: "dict[Tuple[str, str], List[Tuple[Callable[..., None], PyAdapter]]]" = {}
        self.turn = 0
        self.tokens = itertools.count(1)
        self.published: List[Msg] = []
        self.acked: List[object] = []
        self.released: List[object] = []
        # token -> (group key, deliver, message, the adapter it went to)
        self.given: "dict[int, Tuple[Tuple[str, str], Callable[..., None], Msg, PyAdapter]]" = {}
        # The group keys of messages that found no subscriber.
        self.unserved: List[Tuple[str, str]] = []

    def adapter(self) -> "PyAdapter":
        return PyAdapter(self)

    def give(self, key: Tuple[str, str], msg: Msg) -> None:
        """Hands ``msg`` to one live subscriber of group ``key``."""
        while True:
            with self.lock:
                subs = self.groups.get(key, [])
                if not subs:
                    self.unserved.append(key)
                    return
                self.turn += 1
                sub = subs[self.turn % len(subs)]
                token = next(self.tokens)
                self.given[token] = (key, sub[0], msg, sub[1])
            try:
                sub[0](*msg, token)
                return
            except chronica.ClosedError:
                with self.lock:
                    self.given.pop(token, None)
                    if sub in subs:
                        subs.remove(sub)

    def held_by(self, adapter: "PyAdapter") -> int:
        """Messages given to ``adapter`` and neither acked nor released."""
        with self.lock:
            return sum(1 for g in self.given.values() if g[3] is adapter)


class PyAdapter:
    def __init__(self, broker: PyBroker) -> None:
        self.broker = broker
        self.mine: List[Tuple[Tuple[str, str], Tuple[Callable[..., None], PyAdapter]]] = []
        self.closed = False

    def publish(self, topic: str, value: bytes, key: "bytes | None", headers: List[Tuple[str, str]]) -> None:
        assert isinstance(value, bytes) and all(isinstance(h, tuple) for h in headers)
        b = self.broker
        with b.lock:
            b.published.append((topic, value, key, headers))
            groups = [k for k, subs in b.groups.items() if k[0] == topic and subs]
        for k in groups:
            b.give(k, (topic, value, key, headers))

    def subscribe(self, pattern: str, group: str, deliver: Callable[..., None]) -> None:
        sub = (deliver, self)
        with self.broker.lock:
            self.broker.groups.setdefault((pattern, group), []).append(sub)
        self.mine.append(((pattern, group), sub))

    def ack(self, token: int) -> None:
        with self.broker.lock:
            assert self.broker.given.pop(token)[3] is self
            self.broker.acked.append(token)

    def release(self, token: int) -> None:
        b = self.broker
        with b.lock:
            key, deliver, msg, owner = b.given.pop(token)
            assert owner is self
            b.released.append(token)
            if (deliver, self) in b.groups[key]:
                b.groups[key].remove((deliver, self))
        b.give(key, msg)

    def close(self) -> None:
        self.closed = True
        with self.broker.lock:
            for k, sub in self.mine:
                if sub in self.broker.groups[k]:
                    self.broker.groups[k].remove(sub)


class WithoutRelease:
    """An adapter with only the four required methods."""

    def __init__(self, inner: PyAdapter) -> None:
        self.publish, self.subscribe = inner.publish, inner.subscribe
        self.ack, self.close = inner.ack, inner.close


def test_a_python_adapter_carries_the_fabric() -> None:
    broker = PyBroker()
    ad_a, ad_b = broker.adapter(), broker.adapter()
    a = chronica.Distributed(ad_a, instance_id="pa", trust_token="tok")
    b = chronica.Distributed(ad_b, instance_id="pb", trust_token="tok")
    try:
        rec, workers = Recorder(), [Recorder(), Recorder()]
        b.register("sink", rec, topics="orders.*")
        a.register("w-a", workers[0], topics="jobs", group="g")
        b.register("w-b", workers[1], topics="jobs", group="g")
        a.emit("orders.created", b"o1", key="k")
        assert rec.wait_user(1)[0].payload == b"o1"
        assert rec.user()[0].key == b"k"
        for i in range(10):
            b.emit("jobs", str(i))
        wait_for(lambda: len(workers[0].user()) + len(workers[1].user()) >= 10, what="10 jobs")
        assert sorted(int(e.payload) for w in workers for e in w.user()) == list(range(10))
        a.emit_root("app.reload", b"")
        wait_for(lambda: any(e.topic == "app.reload" for e in rec.root()), what="root over the adapter")
        wait_for(lambda: len(broker.acked) >= 1, what="acks")
        topic, _, _, headers = broker.published[0]
        assert topic == "chronica"
        assert ("chronica-topic", "orders.created") in headers
        assert a.stats().published >= 2 and b.stats().received >= 1
    finally:
        a.close()
        b.close()
    assert ad_a.closed and ad_b.closed


class GatedGroups(PyAdapter):
    """Its group subscriptions wait for ``gate``; its ``close`` does not
    open it."""

    def __init__(self, broker: PyBroker) -> None:
        super().__init__(broker)
        self.entered, self.gate = threading.Event(), threading.Event()

    def subscribe(self, pattern: str, group: str, deliver: Callable[..., None]) -> None:
        if group.endswith("workers"):
            self.entered.set()
            self.gate.wait()
        super().subscribe(pattern, group, deliver)


def test_a_register_joining_its_group_at_close_raises_a_chronica_error() -> None:
    """``close`` while a grouped ``register`` waits for the adapter to
    subscribe: the close does not wait for the adapter, and the register
    raises a ChronicaError. It raised a PanicException (the layer's
    runtime was shut down under the join)."""
    adapter = GatedGroups(PyBroker())
    d = chronica.Distributed(adapter, instance_id="gated", trust_token="t0k")
    raised: List[BaseException] = []

    def register() -> None:
        try:
            d.register("w", lambda events: None, topics="jobs", group="workers")
        except BaseException as e:  # noqa: BLE001 - a PanicException is a BaseException
            raised.append(e)

    registering = threading.Thread(target=register)
    registering.start()
    try:
        assert adapter.entered.wait(DEADLINE)
        closing = threading.Thread(target=d.close)
        closing.start()
        closing.join(DEADLINE)
        assert not closing.is_alive(), "close waited for the adapter's subscribe"
    finally:
        adapter.gate.set()
        registering.join(DEADLINE)
    assert len(raised) == 1, raised
    assert isinstance(raised[0], chronica.ChronicaError), repr(raised[0])
    assert "closed before group" in str(raised[0])


def test_a_replayed_root_event_past_root_max_age_is_rejected() -> None:
    broker = PyBroker()
    ad_a, ad_b = broker.adapter(), broker.adapter()
    a = chronica.Distributed(ad_a, instance_id="ra", trust_token=TOKEN)
    b = chronica.Distributed(ad_b, instance_id="rb", trust_token=TOKEN, root_max_age=0.3)
    try:
        rec = Recorder()
        b.register("n", rec)
        a.emit_root("app.reset", b"")
        wait_for(lambda: any(e.topic == "app.reset" for e in rec.root()), what="fresh root delivered")
        root = next(m for m in broker.published if ("chronica-kind", "root") in m[3])
        time.sleep(0.5)
        ad_a.publish(*root)  # the captured message, published again
        wait_for(lambda: b.stats().rejected_stale == 1, what="replay rejected")
        assert b.stats().duplicates == 0
        assert sum(e.topic == "app.reset" for e in rec.root()) == 1
        a.emit_root("app.reset", b"again")
        wait_for(lambda: sum(e.topic == "app.reset" for e in rec.root()) == 2, what="a fresh one passes")
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, float("nan"), 2.0**64])
def test_a_bad_root_max_age_is_refused(bad: float) -> None:
    with pytest.raises(chronica.InvalidArgumentError, match="root_max_age"):
        chronica.Distributed(hub_url(), trust_token=TOKEN, root_max_age=bad)


def test_a_root_max_age_of_the_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="root_max_age must be a number or None, got str"):
        chronica.Distributed(hub_url(), trust_token=TOKEN, root_max_age="60")  # type: ignore[arg-type]


def test_delivery_acks_do_not_wait_for_events_a_callback_keeps() -> None:
    """Under ack_mode="delivery" a message is acknowledged once no node holds
    its event; a Python callback that keeps its events holds copies, so the
    acknowledgements still come (else the subscription would stall)."""
    broker = PyBroker()
    ad_a, ad_b = broker.adapter(), broker.adapter()
    a = chronica.Distributed(ad_a, instance_id="ka", ack_mode="delivery", trust_token=TOKEN)
    b = chronica.Distributed(ad_b, instance_id="kb", ack_mode="delivery", trust_token=TOKEN)
    try:
        rec = Recorder()  # keeps every event it receives
        b.register("keeper", rec)
        for i in range(20):
            a.emit("t", str(i))
        assert [int(e.payload) for e in rec.wait_user(20)] == list(range(20))
        wait_for(lambda: broker.held_by(ad_b) == 0, what="b's messages acknowledged")
        assert len(rec.user()) == 20
    finally:
        a.close()
        b.close()


def test_an_object_without_the_adapter_methods_is_refused() -> None:
    with pytest.raises(TypeError):
        chronica.Distributed(object())  # type: ignore[arg-type]


def test_a_failing_python_adapter_is_retried() -> None:
    broker = PyBroker()
    flaky = broker.adapter()
    fails = {"left": 3}
    real_publish = flaky.publish

    def publish(topic: str, value: bytes, key: "bytes | None", headers: List[Tuple[str, str]]) -> None:
        if fails["left"] > 0:
            fails["left"] -= 1
            raise ConnectionError("broker away")
        real_publish(topic, value, key, headers)

    flaky.publish = publish  # type: ignore[method-assign]
    with chronica.Distributed(flaky, instance_id="flaky", trust_token=TOKEN) as a, chronica.Distributed(
        broker.adapter(), instance_id="steady", trust_token=TOKEN
    ) as b:
        rec = Recorder()
        b.register("r", rec)
        a.emit("t", b"eventually")
        assert rec.wait_user(1)[0].payload == b"eventually"
        assert a.stats().publish_retries == 3


def test_a_publish_refused_with_value_error_is_not_retried() -> None:
    """A ``ValueError`` from ``publish`` means never, as it is: the message
    is counted and dead-lettered, and the events after it go out."""
    broker = PyBroker()
    picky = broker.adapter()
    real_publish = picky.publish

    def publish(topic: str, value: bytes, key: "bytes | None", headers: List[Tuple[str, str]]) -> None:
        if value == b"too big":
            raise ValueError("larger than the broker takes")
        real_publish(topic, value, key, headers)

    picky.publish = publish  # type: ignore[method-assign]
    with chronica.Distributed(picky, instance_id="picky", trust_token=TOKEN) as a, chronica.Distributed(
        broker.adapter(), instance_id="steady", trust_token=TOKEN
    ) as b:
        rec = Recorder()
        b.register("r", rec)
        a.emit("t", b"too big")
        a.emit("t", b"after")
        assert [e.payload for e in rec.wait_user(1)] == [b"after"]
        wait_for(lambda: a.stats().dead_lettered == 1, what="the refused event dead-lettered")
        stats = a.stats()
        assert (stats.publish_rejected, stats.publish_retries, stats.published) == (1, 0, 1)
        assert "publish_rejected=1" in repr(stats)


def test_an_empty_trust_token_is_refused() -> None:
    with pytest.raises(chronica.InvalidArgumentError, match="trust token"):
        chronica.Distributed(hub_url())
    with pytest.raises(chronica.InvalidArgumentError, match="trust token"):
        chronica.Distributed(PyBroker().adapter())


@pytest.mark.parametrize("releases", [True, False], ids=["release", "no-release"])
def test_a_group_share_with_no_member_here_is_handed_back(releases: bool) -> None:
    """Instance b is in group g with no member there (a ``join_group``
    ahead of its member; a watcher period of an hour keeps it in the group
    until it finds out by itself): the share of the jobs it takes must go
    back, through ``release``, and b leaves the group. An adapter without
    the method still works; what b took then waits for the broker's own
    redelivery (none here). (This test used b's member unregistering just
    before the jobs, which left b in the group until the watcher's next
    round; the watcher now acts on the unregistration at once.)"""
    n = 200
    broker = PyBroker()
    ad_b = broker.adapter()
    with chronica.Distributed(broker.adapter(), instance_id="la", trust_token=TOKEN) as a, chronica.Distributed(
        ad_b if releases else WithoutRelease(ad_b), instance_id="lb", trust_token=TOKEN, group_watch_interval=3600.0
    ) as b:
        wa = Recorder()
        a.register("wa", wa, topics="jobs", group="g")
        b.join_group("g")
        for i in range(n):
            a.emit("jobs", str(i))
        if releases:
            wait_for(lambda: len(wa.user()) >= n, what="every job at the remaining member")
            wait_for(lambda: broker.held_by(ad_b) == 0, what="b's share acked or released")
            assert broker.released, "b was in the group at first and handed its share back"
        else:
            wait_for(lambda: len(wa.user()) + broker.held_by(ad_b) >= n, what="every job placed")
            assert broker.held_by(ad_b) > 0 and not broker.released
        got = [int(e.payload) for e in wa.user()]
        assert len(got) == len(set(got)), "a job delivered twice"
        assert len(got) == n if releases else len(got) < n
    # A broadcast copy may still be on its way to b as b closes; a job of
    # the group must never be left without a member.
    assert not [k for k in broker.unserved if k[1].endswith(".g-g")]


def test_a_group_whose_member_here_left_reaches_the_other_instance_whole() -> None:
    """Instance b's only member of group g unregisters just before the
    jobs come: every job reaches the member on a, once. b leaves the group
    as the watcher hears of the unregistration; a share it took before
    that goes back through ``release``."""
    n = 200
    broker = PyBroker()
    ad_b = broker.adapter()
    with chronica.Distributed(broker.adapter(), instance_id="la", trust_token=TOKEN) as a, chronica.Distributed(
        ad_b, instance_id="lb", trust_token=TOKEN
    ) as b:
        wa, wb = Recorder(), Recorder()
        a.register("wa", wa, topics="jobs", group="g")
        b.register("wb", wb, topics="jobs", group="g")
        b.unregister("wb")
        for i in range(n):
            a.emit("jobs", str(i))
        wait_for(lambda: len(wa.user()) >= n, what="every job at the remaining member")
        wait_for(lambda: broker.held_by(ad_b) == 0, what="b's share, if any, released")
        got = [int(e.payload) for e in wa.user()]
        assert sorted(got) == list(range(n)), "a job lost or delivered twice"
        assert not wb.user()
    assert not [k for k in broker.unserved if k[1].endswith(".g-g")]


def test_close_from_inside_an_adapter_method_is_refused() -> None:
    """A ``release`` (or any adapter method) that closes its own instance
    would wait for itself: the close raises ReentrantError and changes
    nothing; the instance keeps working and closes normally later."""
    n = 50
    broker = PyBroker()
    ad_b = broker.adapter()
    outcomes: List[str] = []
    holder: "dict[str, chronica.Distributed]" = {}
    real_release = ad_b.release

    def release(token: int) -> None:
        try:
            holder["b"].close(1.0)
            outcomes.append("closed")
        except chronica.ReentrantError:
            outcomes.append("refused")
        real_release(token)

    ad_b.release = release  # type: ignore[method-assign]
    a = chronica.Distributed(broker.adapter(), instance_id="ra", trust_token=TOKEN)
    # In group g with no member (see test_a_group_share_with_no_member_here_is_handed_back):
    # its share of the jobs goes back through release.
    b = chronica.Distributed(ad_b, instance_id="rb", trust_token=TOKEN, group_watch_interval=3600.0)
    holder["b"] = b
    try:
        wa = Recorder()
        a.register("wa", wa, topics="jobs", group="g")
        b.join_group("g")
        for i in range(n):
            a.emit("jobs", str(i))
        wait_for(lambda: len(wa.user()) >= n, what="every job at the remaining member")
        assert outcomes and set(outcomes) == {"refused"}
        assert not b.closed
        b.emit("jobs", b"after")
        wait_for(lambda: len(wa.user()) > n, what="b still emits")
    finally:
        a.close()
    assert b.close() == 0
    assert sorted(int(e.payload) for e in wa.user()[:n]) == list(range(n))


def test_an_instance_dropped_inside_an_adapter_method_closes() -> None:
    """The last reference to an instance dropped inside its adapter's
    ``release``: closing right there would wait for that release, so the
    instance is closed on a thread of its own. (What it held unreleased
    then stays with PyBroker, which never redelivers.)"""
    n = 20
    broker = PyBroker()
    ad_b = broker.adapter()
    holder: "dict[str, chronica.Distributed]" = {}
    real_release = ad_b.release

    def release(token: int) -> None:
        holder.pop("b", None)
        real_release(token)

    def placed() -> bool:
        with broker.lock:
            held = [g[2][1] for g in broker.given.values() if g[3] is ad_b and g[0][1].endswith(".g-g")]
        return sorted(int(p) for p in [e.payload for e in wa.user()] + held) == list(range(n))

    ad_b.release = release  # type: ignore[method-assign]
    with chronica.Distributed(broker.adapter(), instance_id="da", trust_token=TOKEN) as a:
        wa = Recorder()
        a.register("wa", wa, topics="jobs", group="g")
        # In group g with no member: its share goes back through release.
        b = chronica.Distributed(ad_b, instance_id="db", trust_token=TOKEN, group_watch_interval=3600.0)
        b.join_group("g")
        holder["b"] = b
        del b
        for i in range(n):
            a.emit("jobs", str(i))
        wait_for(lambda: ad_b.closed, what="the dropped instance closed")
        wait_for(placed, what="every job at the remaining member or held by the closed one")


def test_close_from_a_callback_is_refused_and_changes_nothing():
    d = chronica.Distributed(hub_url(), instance_id=f"r-{next(_ids)}", retry=FAST_RETRY, trust_token=TOKEN)
    outcome: List[str] = []

    def cb(events):
        if any(e.kind == "user" for e in events) and not outcome:
            try:
                d.close(timeout=0.5)
                outcome.append("closed")
            except chronica.ReentrantError:
                outcome.append("refused")

    d.register("n", cb)
    d.emit("t", b"x")
    wait_for(lambda: outcome == ["refused"])
    d.emit("t", b"y")  # the fabric is still open
    assert not d.closed
    assert d.close() >= 0
    assert d.closed


def test_join_group_refuses_an_empty_name_and_changes_nothing() -> None:
    """An empty group name is a bad value, as it is for ``register(group=)``
    and the bus's ``on(group=)``: InvalidArgumentError (a ValueError), and
    no broker subscription made."""
    broker = PyBroker()
    fabric = chronica.Distributed(broker.adapter(), instance_id="jg", trust_token=TOKEN)
    try:
        before = sorted(broker.groups)
        with pytest.raises(chronica.InvalidArgumentError, match="group name must not be empty") as info:
            fabric.join_group("")
        assert isinstance(info.value, ValueError)
        assert sorted(broker.groups) == before
        fabric.join_group("g")  # what a join does change, for contrast
        assert set(broker.groups) > set(before)
        with pytest.raises(chronica.InvalidArgumentError):
            fabric.register("n", Recorder(), group="")
        assert fabric.nodes() == []
    finally:
        fabric.close()


class Tap:
    """An adapter that publishes nowhere and hands the test each
    subscription's ``deliver``, to play a broker's client with."""

    def __init__(self) -> None:
        self.delivers: List[Callable[..., None]] = []
        self.lock = threading.Lock()
        self.acked: List[object] = []

    def publish(self, topic: str, value: bytes, key: "bytes | None", headers: List[Tuple[str, str]]) -> None:
        pass

    def subscribe(self, pattern: str, group: str, deliver: Callable[..., None]) -> None:
        self.delivers.append(deliver)

    def ack(self, token: object) -> None:
        with self.lock:
            self.acked.append(token)

    def close(self) -> None:
        pass


def test_deliver_refuses_what_a_subscription_cannot_hold() -> None:
    """A client delivering faster than the instance takes cannot fill memory:
    once MQ_SUBSCRIPTION_CAPACITY messages wait unread, deliver raises
    QueueFullError and takes nothing; delivered again later, the message
    arrives, and every message arrives once, in order. The node holds the
    first message in its callback; under ack_mode="delivery" the
    subscription stops reading 4,096 messages behind it."""
    tap = Tap()
    gate = threading.Event()
    seen: List[int] = []

    def slow(events: List[chronica.Event]) -> None:
        gate.wait()
        seen.extend(int(e.payload) for e in events if e.kind == "user")

    with chronica.Distributed(tap, instance_id="full", ack_mode="delivery", trust_token=TOKEN) as fabric:
        fabric.register("slow", slow)
        (deliver,) = tap.delivers
        refused = None
        for i in range(4 * chronica.MQ_SUBSCRIPTION_CAPACITY):
            try:
                deliver("orders", str(i).encode(), None, [], i)
            except chronica.QueueFullError as e:
                assert "wait unread" in str(e)
                refused = i
                break
        assert refused is not None, "deliver never refused"
        assert chronica.MQ_SUBSCRIPTION_CAPACITY <= refused <= chronica.MQ_SUBSCRIPTION_CAPACITY + 3 * 4096
        gate.set()
        end = time.monotonic() + DEADLINE
        while True:
            try:
                deliver("orders", str(refused).encode(), None, [], refused)
                break
            except chronica.QueueFullError:
                # A regression must fail the test, not hang the suite.
                assert time.monotonic() < end, "the subscription never made room"
                time.sleep(0.01)
        wait_for(lambda: len(seen) == refused + 1, what="every message")
        assert seen == list(range(refused + 1))
        wait_for(lambda: len(tap.acked) == refused + 1, what="every message acknowledged")
        assert sorted(tap.acked) == list(range(refused + 1))  # type: ignore[type-var]


def test_deliver_carries_the_brokers_timestamp() -> None:
    """A foreign message keeps the broker's timestamp; without one it is
    stamped on receipt."""
    tap = Tap()
    with chronica.Distributed(tap, instance_id="ts", trust_token=TOKEN) as fabric:
        rec = Recorder()
        fabric.register("r", rec)
        (deliver,) = tap.delivers
        deliver("orders", b"old", None, [], 1, timestamp_ms=1_000)
        before = int(time.time() * 1000)
        deliver("orders", b"new", None, [], 2)
        stamped = {e.payload: e.timestamp_ms for e in rec.wait_user(2)}
        assert stamped[b"old"] == 1_000
        assert before - 1_000 <= stamped[b"new"] <= int(time.time() * 1000)
        with pytest.raises(TypeError):
            deliver("orders", b"x", None, [], 3, timestamp_ms="soon")
        # Negative is none, as a C adapter's `deliver` reads it: stamped
        # on receipt (it was kept, -5).
        before = int(time.time() * 1000)
        deliver("orders", b"neg", None, [], 4, timestamp_ms=-5)
        (neg,) = rec.wait_user(3)[2:]
        assert neg.payload == b"neg" and before - 1_000 <= neg.timestamp_ms <= int(time.time() * 1000)


def test_deliver_takes_timestamp_ms_as_every_int_argument() -> None:
    """``timestamp_ms`` goes through the binding's int conversion (which
    calls an object's ``__index__`` through the exit guard): an int-like is
    taken, a bool is refused naming the argument; a bool was taken as 1."""

    class Millis:
        def __index__(self) -> int:
            return 2_000

    tap = Tap()
    with chronica.Distributed(tap, instance_id="ts-int", trust_token=TOKEN) as fabric:
        rec = Recorder()
        fabric.register("r", rec)
        (deliver,) = tap.delivers
        with pytest.raises(TypeError, match="timestamp_ms must be an int or None, got bool"):
            deliver("orders", b"flag", None, [], 1, timestamp_ms=True)
        deliver("orders", b"like", None, [], 2, timestamp_ms=Millis())
        (event,) = rec.wait_user(1)
        assert (event.payload, event.timestamp_ms) == (b"like", 2_000)


class Headers:
    """A sequence of header pairs that is not a list or a tuple: the binding
    iterates it through the exit guard (``test_shutdown.py``)."""

    def __init__(self, *pairs: Tuple[str, str]) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> Tuple[str, str]:
        return self.pairs[i]


def test_deliver_takes_headers_as_pyo3_converts_them() -> None:
    """``headers`` is None or a sequence of ``(name, value)`` str pairs,
    its own ``__iter__`` called through the exit guard: the headers of a
    sequence of any type are read, a str and what is not a sequence (a
    generator) are refused as before, and what the sequence's iteration
    raises goes through as it is."""

    class Failing(Headers):
        def __iter__(self) -> Iterator[Tuple[str, str]]:
            yield ("chronica-content-type", "text/plain")
            raise KeyboardInterrupt

    tap = Tap()
    with chronica.Distributed(tap, instance_id="headers", trust_token=TOKEN) as fabric:
        rec = Recorder()
        fabric.register("r", rec)
        (deliver,) = tap.delivers
        with pytest.raises(TypeError, match="headers"):
            deliver("orders", b"str", None, "chronica-content-type", 1)
        with pytest.raises(TypeError, match="headers"):
            deliver("orders", b"gen", None, (h for h in [("a", "b")]), 2)
        with pytest.raises(TypeError, match="headers"):
            deliver("orders", b"int", None, Headers(("a", 1)), 3)  # type: ignore[arg-type]
        with pytest.raises(KeyboardInterrupt):
            deliver("orders", b"interrupted", None, Failing(), 4)
        deliver("orders", b"typed", None, Headers(("chronica-content-type", "text/plain")), 5)
        deliver("orders", b"listed", None, [("chronica-content-type", "text/csv")], 6)
        typed, listed = rec.wait_user(2)
        assert (typed.payload, typed.content_type) == (b"typed", "text/plain")
        assert (listed.payload, listed.content_type) == (b"listed", "text/csv")


def test_a_publish_that_takes_timestamp_ms_gets_the_message_timestamp() -> None:
    """SPEC 4: a message has a timestamp. A Python adapter's ``publish``
    that names ``timestamp_ms`` (or takes ``**kwargs``) gets it, the
    event's emit time as in the ``chronica-ts`` header; the four-argument
    form (every other test's adapter) still works."""

    class Stamped(Tap):
        def __init__(self) -> None:
            super().__init__()
            self.stamps: List[Tuple["int | None", List[Tuple[str, str]]]] = []

        def publish(  # type: ignore[override]
            self, topic: str, value: bytes, key: "bytes | None", headers: List[Tuple[str, str]], timestamp_ms: "int | None" = None
        ) -> None:
            self.stamps.append((timestamp_ms, headers))

    class Kwargs(Stamped):
        def publish(  # type: ignore[override]
            self, topic: str, value: bytes, key: "bytes | None", headers: List[Tuple[str, str]], **extra: object
        ) -> None:
            self.stamps.append((extra.get("timestamp_ms"), headers))  # type: ignore[arg-type]

    for adapter in (Stamped(), Kwargs()):
        with chronica.Distributed(adapter, instance_id="stamps", trust_token=TOKEN) as fabric:
            before = int(time.time() * 1000)
            fabric.emit("orders", b"x")
            wait_for(lambda: len(adapter.stamps) == 1, what="the publish")
            stamp, headers = adapter.stamps[0]
            assert isinstance(stamp, int) and before <= stamp <= int(time.time() * 1000)
            assert ("chronica-ts", str(stamp)) in headers
