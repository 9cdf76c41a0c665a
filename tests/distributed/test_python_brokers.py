"""Distributed mode across processes and languages, on real brokers.

Run by scripts/test-distributed.sh, which starts the brokers, builds the
module (with every adapter) and the C peer, and sets:

* ``CHRONICA_BROKERS``: the brokers under test (``kafka,nats,redis``);
* ``CHRONICA_KAFKA_URL`` / ``CHRONICA_NATS_URL`` / ``CHRONICA_REDIS_URL``;
* ``CHRONICA_C_PEER``: the C host (tests/distributed/c_peer.c) built
  against a libchronica with the same broker features;
* ``CHRONICA_C_EXAMPLE``: examples/c/distributed_host.c, built likewise;
* ``CHRONICA_KAFKA_LIBS``: Apache Kafka's jars (scripts/brokers.sh fetched
  them), whose console producer and consumer play the foreign client.

Each broker gets three tests. The Python example's two processes play
ping-pong; the C example's two processes pass orders and a signed root
event. Then this process (the Python host) and the C host, a process
of its own, share one fabric and check: broadcast with sender exclusion,
unicast both ways, a consumer group split between the two processes with
every event delivered exactly once, signed root events both ways, forged
and unsigned root events rejected and counted, a foreign producer's plain
message accepted, a malformed message dead-lettered. The foreign producer
is the broker's own client: redis-cli, Kafka's console producer and
consumer, the NATS Python client (nats-py). A broker that cannot be reached
fails the test; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import glob
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import unquote_to_bytes, urlparse

import pytest

import chronica

ROOT = Path(__file__).resolve().parents[2]
BROKERS = [b for b in os.environ.get("CHRONICA_BROKERS", "kafka,nats,redis").split(",") if b]
TOKEN = "cross-language-secret"
WAIT = 60.0  # longest wait for any one step
WORK = 100  # consumer-group events emitted by each host


def url_of(broker: str) -> str:
    url = os.environ.get(f"CHRONICA_{broker.upper()}_URL")
    assert url, f"CHRONICA_{broker.upper()}_URL is not set (run scripts/test-distributed.sh)"
    return url


def wait_for(what: str, cond: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.02)


# --------------------------------------------------------------- records


@dataclass(frozen=True)
class Seen:
    node: str
    kind: str
    topic: str
    source: Optional[str]
    payload: bytes


class Record:
    """What every node of both hosts received."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: List[Seen] = []

    def node(self, uid: str) -> Callable[[List[chronica.Event]], None]:
        def deliver(events: List[chronica.Event]) -> None:
            with self.lock:
                self.seen.extend(Seen(uid, e.kind, e.topic, e.source, e.payload) for e in events)

        return deliver

    def add(self, s: Seen) -> None:
        with self.lock:
            self.seen.append(s)

    def where(self, node: Optional[str] = None, **match: object) -> List[Seen]:
        with self.lock:
            out = [s for s in self.seen if node is None or s.node == node]
        return [s for s in out if all(getattr(s, k) == v for k, v in match.items())]

    def count(self, node: str, **match: object) -> int:
        return len(self.where(node, **match))


# ------------------------------------------------------------- the C host


class CPeer:
    """tests/distributed/c_peer.c as a child process."""

    def __init__(self, url: str, prefix: str, instance: str) -> None:
        peer = os.environ.get("CHRONICA_C_PEER")
        assert peer and Path(peer).exists(), "CHRONICA_C_PEER must name the built C peer"
        self.proc = subprocess.Popen(
            [peer, url, prefix, TOKEN, instance, "180"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.err: List[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=lambda: self.err.extend(self.proc.stderr or []), daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout or []:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_ready(self) -> None:
        try:
            line = self.lines.get(timeout=WAIT)
        except queue.Empty:
            line = "(nothing)"
        assert line == "c_peer: ready", f"C peer did not start: {line!r} {''.join(self.err)}"

    def finish(self, record: Record) -> Dict[str, int]:
        """Waits for the peer to exit 0; adds what its nodes saw to `record`
        and returns its final counters."""
        try:
            self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("C peer did not stop on the signed root event test.stop")
        out: List[str] = []
        while True:
            line = self.lines.get(timeout=10)
            if line is None:
                break
            out.append(line)
        code = self.proc.returncode
        assert code == 0, f"C peer exit {code}: {out[-3:]} {''.join(self.err)}"
        stats: Dict[str, int] = {}
        for line in out:
            f = line.split("\t")
            if f[0] == "seen":
                node, kind, topic, source, payload = f[1:]
                record.add(
                    Seen(node, kind, unquote_to_bytes(topic).decode(), None if source == "-" else source,
                         unquote_to_bytes(payload))
                )
            elif f[0] == "stats":
                stats = parse_counters(f[1])
        assert stats, f"no stats line from the C peer: {out[-3:]}"
        return stats

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def parse_counters(text: str) -> Dict[str, int]:
    return {k: int(v) for k, v in (kv.split("=") for kv in text.split())}


# ------------------------------------------------------ foreign producers

Headers = List[Tuple[str, str]]


def run(cmd: List[str], stdin: str = "", timeout: float = 120) -> str:
    out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd[:4]}... failed ({out.returncode}): {out.stdout}{out.stderr}"
    return out.stdout


class Foreign:
    """A client that knows nothing of Chronica, on the broker under test."""

    def __init__(self, broker: str) -> None:
        self.broker = broker
        u = urlparse(url_of(broker))
        self.host, self.port = u.hostname or "127.0.0.1", u.port

    def publish(self, topic: str, messages: List[Tuple[Headers, bytes]]) -> None:
        getattr(self, f"_publish_{self.broker}")(topic, messages)

    def dead_letters(self, topic: str) -> str:
        """The dead-letter topic's contents (headers and payloads) as text."""
        return str(getattr(self, f"_read_{self.broker}")(topic))

    # redis-cli: XADD with the payload in field `value`, headers as fields.
    def _publish_redis(self, topic: str, messages: List[Tuple[Headers, bytes]]) -> None:
        for headers, payload in messages:
            args = ["value", payload.decode()] + [x for kv in headers for x in kv]
            run(["redis-cli", "-h", self.host, "-p", str(self.port), "XADD", topic, "*"] + args)

    def _read_redis(self, topic: str) -> str:
        return run(["redis-cli", "-h", self.host, "-p", str(self.port), "--raw", "XRANGE", topic, "-", "+"])

    # Kafka's console producer and consumer (the jars scripts/brokers.sh fetched).
    def _java(self, main: str, *args: str, stdin: str = "") -> str:
        libs = os.environ.get("CHRONICA_KAFKA_LIBS") or next(
            iter(sorted(glob.glob(str(ROOT / "target/brokers/kafka-*/libs")))), ""
        )
        assert libs and Path(libs).is_dir(), "Kafka's jars not found: set CHRONICA_KAFKA_LIBS"
        log4j = Path(libs).parent / "log4j.properties"
        return run(
            ["java", "-Xmx256m", f"-Dlog4j.configuration=file:{log4j}", "-cp", f"{libs}/*", main,
             "--bootstrap-server", f"{self.host}:{self.port}", *args],
            stdin=stdin,
        )

    def _publish_kafka(self, topic: str, messages: List[Tuple[Headers, bytes]]) -> None:
        plain = [p.decode() for h, p in messages if not h]
        with_headers = [
            ",".join(f"{k}:{v}" for k, v in h) + "\t" + p.decode() for h, p in messages if h
        ]
        if plain:
            self._java("kafka.tools.ConsoleProducer", "--topic", topic, stdin="\n".join(plain) + "\n")
        if with_headers:
            self._java(
                "kafka.tools.ConsoleProducer", "--topic", topic, "--property", "parse.headers=true",
                stdin="\n".join(with_headers) + "\n",
            )

    def _read_kafka(self, topic: str) -> str:
        return self._java(
            "org.apache.kafka.tools.consumer.ConsoleConsumer", "--topic", topic, "--from-beginning",
            "--max-messages", "1", "--timeout-ms", "30000", "--property", "print.headers=true",
        )

    # The NATS Python client (nats-py), JetStream publish and direct get.
    def _publish_nats(self, topic: str, messages: List[Tuple[Headers, bytes]]) -> None:
        async def go() -> None:
            import nats

            nc = await nats.connect(f"nats://{self.host}:{self.port}", connect_timeout=10)
            js = nc.jetstream()
            for headers, payload in messages:
                await js.publish(topic, payload, headers=dict(headers) or None)
            await nc.close()

        asyncio.run(go())

    def _read_nats(self, topic: str) -> str:
        async def go() -> str:
            import nats

            nc = await nats.connect(f"nats://{self.host}:{self.port}", connect_timeout=10)
            js = nc.jetstream()
            stream = re.sub(r"[^A-Za-z0-9_-]", "_", topic.split(".")[0])
            msg = await js.get_last_msg(stream, topic)
            await nc.close()
            return f"{msg.headers} {msg.data!r}"

        return asyncio.run(go())


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("broker", BROKERS)
def test_example_two_python_processes(broker: str) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples/python/distributed_basic.py"), url_of(broker)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "done", out.stdout + out.stderr
    for i in range(3):
        assert f"[ping] pong {i} came back" in lines


@pytest.mark.parametrize("broker", BROKERS)
def test_example_two_c_processes(broker: str) -> None:
    example = os.environ.get("CHRONICA_C_EXAMPLE")
    assert example and Path(example).exists(), "CHRONICA_C_EXAMPLE must name the built C example"
    out = subprocess.run([example, url_of(broker)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    # West, the second process, got every order and the signed reload.
    assert "ledger: 3 orders, total 242, 1 reload" in out.stdout, out.stdout + out.stderr
    assert "east: closed, 0 left; west exited 0" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("broker", BROKERS)
def test_c_and_python_hosts_share_one_broker(broker: str) -> None:
    url = url_of(broker)
    prefix = f"xlang-{broker}-{uuid.uuid4().hex[:8]}"
    rec = Record()
    reports: List[Dict[str, int]] = []

    def on_report(events: List[chronica.Event]) -> None:
        rec.node("py-a")(events)
        reports.extend(parse_counters(e.payload.decode()) for e in events if e.topic == "c-report")

    def c_report() -> Dict[str, int]:
        """The C host's counters, asked for over the fabric."""
        n = len(reports)
        fabric.emit("ctl", "report")
        wait_for("a report from the C host", lambda: len(reports) > n, timeout=10)
        return reports[-1]

    fabric = chronica.Distributed(
        url, instance_id=f"py-{uuid.uuid4().hex[:8]}", topic_prefix=prefix, trust_token=TOKEN,
        connect_timeout=30.0,
    )
    peer: Optional[CPeer] = None
    try:
        fabric.register("py-a", on_report, topics=["to-c", "from-c", "unicast", "c-report", prefix])
        fabric.register("py-b", rec.node("py-b"), topics=["to-c", "from-c", "unicast"])
        fabric.register("py-worker", rec.node("py-worker"), topics="work", group="workers")
        # The C host joins after this one: every broker group of both hosts
        # exists before anything is emitted, so nothing needs repeating.
        peer = CPeer(url, prefix, "c-peer")
        peer.wait_ready()

        # Broadcast: py-a emits to every "to-c" subscriber but itself; c-echo
        # answers each on "from-c", to everyone but itself.
        for i in range(3):
            fabric.emit("to-c", f"req-{i}", source="py-a")
        for i in range(3):
            answer = f"c:req-{i}".encode()
            wait_for(f"the answer {answer!r}", lambda: rec.count("py-b", payload=answer) == 1)

        # Unicast both ways: only the target node, in the other process.
        fabric.emit_to("c-echo", "unicast", "py-unicast", source="py-a")
        fabric.emit("ctl", "unicast:py-a")
        wait_for("the C host's unicast", lambda: rec.count("py-a", payload=b"c-unicast") == 1)

        # Signed root events both ways: each verifies on the other side.
        fabric.emit_root("py.root", b"py-root")
        fabric.emit("ctl", "root")
        wait_for("root c.root", lambda: rec.count("py-b", kind="root", topic="c.root") == 1)

        # The consumer group "workers" has a member in each process: each of
        # the 2 x WORK events reaches exactly one of them.
        fabric.emit("ctl", f"work:{WORK}")
        for i in range(WORK):
            fabric.emit("work", f"w-py-{i}", key=f"k{i}")
            time.sleep(0.002)
        wait_for(
            "every work event",
            lambda: rec.count("py-worker", kind="user") + c_report()["work"] >= 2 * WORK,
        )

        # A foreign producer: a plain message, forged and unsigned root
        # events, a malformed one, straight to the fabric's broker topic.
        ts = str(int(time.time() * 1000))
        def intruder(wire_id: str, kind: str, topic: str) -> Headers:
            return [("chronica-id", wire_id), ("chronica-origin", "intruder"), ("chronica-kind", kind),
                    ("chronica-ts", ts), ("chronica-topic", topic)]

        Foreign(broker).publish(
            prefix,
            [
                ([], f"plain-{broker}".encode()),
                (intruder("1", "root", "evil.forged") + [("chronica-sig", "00" * 32)], b"forged"),
                (intruder("2", "root", "evil.unsigned"), b"unsigned"),
                (intruder("not-a-number", "user", "to-c"), f"bad-{broker}".encode()),
            ],
        )
        refused = ("foreign", "malformed", "dead_lettered", "rejected_unsigned", "rejected_forged")

        def py_counted() -> bool:
            s = fabric.stats()
            return all(getattr(s, k) >= 1 for k in refused)

        wait_for("the Python host to count the foreign messages", py_counted)
        wait_for("the C host to count the foreign messages", lambda: all(c_report()[k] >= 1 for k in refused))
        dlq = Foreign(broker).dead_letters(f"{prefix}.dlq")
        assert "chronica-error" in dlq and f"bad-{broker}" in dlq, dlq

        time.sleep(1.0)  # late duplicates, if any, would arrive now
        fabric.emit_root("test.stop", b"")
        assert fabric.flush(10.0)
        c_stats = peer.finish(rec)
        py_stats = fabric.stats()
    finally:
        if peer is not None:
            peer.kill()
        fabric.close(5.0)

    py_nodes, c_nodes = ("py-a", "py-b", "py-worker"), ("c-echo", "c-other", "c-worker")
    # Broadcast and sender exclusion.
    for i in range(3):
        req, ans = f"req-{i}".encode(), f"c:req-{i}".encode()
        for node in ("py-b", "c-echo", "c-other"):
            assert rec.count(node, topic="to-c", payload=req, source="py-a") == 1, (node, req)
        for node in ("py-a", "py-b", "c-other"):
            assert rec.count(node, topic="from-c", payload=ans, source="c-echo") == 1, (node, ans)
    assert rec.count("py-a", topic="to-c") == 0, "py-a received its own broadcast"
    assert rec.count("c-echo", topic="from-c") == 0, "c-echo received its own broadcast"
    # Unicast.
    assert rec.count("c-echo", topic="unicast", payload=b"py-unicast", source="py-a") == 1
    assert rec.count("py-a", topic="unicast", payload=b"c-unicast", source="c-echo") == 1
    unicasts = rec.where(topic="unicast")
    assert sorted(s.node for s in unicasts) == ["c-echo", "py-a"], unicasts
    # Signed root events reach every node of both hosts exactly once.
    for node in py_nodes + c_nodes:
        assert rec.count(node, kind="root", topic="py.root", payload=b"py-root") == 1, node
        assert rec.count(node, kind="root", topic="c.root", payload=b"c-root") == 1, node
    # Consumer group: each event exactly once across both processes, both took a share.
    work = [s.payload.decode() for s in rec.where(topic="work")]
    expected = {f"w-{who}-{i}" for who in ("py", "c") for i in range(WORK)}
    assert len(work) == len(expected) and set(work) == expected, sorted(set(work) ^ expected)[:10]
    py_share, c_share = rec.count("py-worker", topic="work"), rec.count("c-worker", topic="work")
    assert py_share > 0 and c_share > 0, (py_share, c_share)
    # The foreign plain message: an event with no source, on the broker topic's name.
    for node in ("py-a", "c-echo"):
        plain = f"plain-{broker}".encode()
        assert rec.count(node, kind="user", topic=prefix, source=None, payload=plain) == 1, node
    # Forged, unsigned and malformed messages reached nobody, and were counted.
    bad = f"bad-{broker}".encode()
    assert not [s for s in rec.where() if s.topic.startswith("evil.") or s.payload == bad]
    for stats in (c_stats, {k: getattr(py_stats, k) for k in c_stats if hasattr(py_stats, k)}):
        assert stats["rejected_forged"] >= 1 and stats["rejected_unsigned"] >= 1, stats
        assert stats["foreign"] >= 1 and stats["malformed"] >= 1 and stats["dead_lettered"] >= 1, stats
    assert c_stats["unpublished"] == 0
    print(f"\n{broker}: work split python {py_share} / c {c_share}; python {py_stats}; c {c_stats}")
