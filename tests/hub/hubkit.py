"""Helpers for the hub end-to-end tests: a running chronica-hub, a tiny
HTTP client, and an in-process webhook receiver that verifies signatures
with each node's own webhook secret.

Everything binds 127.0.0.1 on ports the kernel picks; every wait is bounded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

TRUST = "trust-for-tests"
TOKEN = "client-token-1"
OTHER_TOKEN = "client-token-2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Hub:
    """A chronica-hub process on a free port."""

    def __init__(self, binary: str, *extra: str, log_path: str | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        # Defaults a test may override by passing the flag in `extra`.
        defaults = {
            "--retry-initial-ms": "50",
            "--retry-max-ms": "400",
            "--webhook-timeout-ms": "2000",
            "--body-limit": "65536",
        }
        args = [
            binary,
            "--listen", f"127.0.0.1:{self.port}",
            "--trust-token", TRUST,
            "--token", TOKEN,
            "--token", OTHER_TOKEN,
            "--allow-host", "127.0.0.1",
            *(part for flag, value in defaults.items() if flag not in extra for part in (flag, value)),
            *extra,
        ]
        self.log_path = log_path
        self.log = open(log_path or os.devnull, "wb")
        env = dict(os.environ, CHRONICA_HUB_LOG=os.environ.get("CHRONICA_HUB_LOG", "info"))
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        wait_until(self._healthy, 15, "hub /health")

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"hub exited with {self.proc.returncode}")
        try:
            return self.call("GET", "/health", token=None)[0] == 200
        except OSError:
            return False

    def request(self, method: str, path: str, body: Any = None, token: str | None = TOKEN,
                raw: bytes | None = None, timeout: float = 10.0) -> tuple[int, Any, bytes]:
        """One request: status, response headers and the raw body."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def call(self, method: str, path: str, body: Any = None, token: str | None = TOKEN,
             raw: bytes | None = None, timeout: float = 10.0) -> tuple[int, Any]:
        status, _, text = self.request(method, path, body, token, raw, timeout)
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text.decode(errors="replace")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, out = self.call(method, path, body)
        assert 200 <= status < 300, f"{method} {path} -> {status} {out}"
        return out

    def register_webhook(self, uid: str, target: "Receiver | str", **kw: Any) -> Any:
        """Registers a webhook node; a Receiver target learns the node's
        secret from the answer (the only place the hub shows it)."""
        url = target.url if isinstance(target, Receiver) else target
        if isinstance(target, Receiver):
            # A uid registered before had another secret: the first POST
            # may come before this answer, and must wait for the new one.
            target.forget(uid)
        out = self.ok("POST", "/v1/nodes", {"uid": uid, "webhook": url, **kw})
        if isinstance(target, Receiver):
            target.learn(uid, out["secret"])
        return out

    def emit(self, *events: dict) -> list[int]:
        return self.ok("POST", "/v1/emit", {"events": list(events)})["ids"]

    def stats(self, uid: str) -> dict:
        return self.ok("GET", f"/v1/nodes/{uid}")["stats"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def sign(body: bytes, key: str) -> str:
    """X-Chronica-Signature of `body` under `key` (HMAC-SHA256, hex)."""
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, signature: str | None, key: str) -> bool:
    """Receiver-side check of X-Chronica-Signature with the node's webhook
    secret, in constant time."""
    return signature is not None and hmac.compare_digest(sign(body, key), signature)


@dataclass
class Post:
    """One POST the receiver got, and what it answered."""

    node: str
    ids: tuple[int, ...]
    body: bytes
    signature: str | None
    status: int
    # False when writing the answer failed: the hub hung up first, so a 2xx
    # did not reach it and it may send the batch again.
    answered: bool = True

    @property
    def acknowledged(self) -> bool:
        return 200 <= self.status < 300 and self.answered


class Receiver:
    """A webhook endpoint in a thread. It records every POST (`posts()`)
    and the events of every acknowledged one (`events()`), duplicates
    included; checks each signature with the secret of the node named by
    X-Chronica-Node; and answers `fail_with` while it is set.

    The hub re-posts a batch only after a failed delivery (docs/HUB.md: a 2xx
    answer means delivered; a batch comes again only when the 2xx was lost).
    So an event id posted again after a 2xx for it is always an error. With
    `exactly_once` (the default) any second POST of an id is an error too: a
    test whose receiver fails posts makes it with `exactly_once=False` and
    accounts for the re-posts (`answers()`, `assert_reposts_follow_failures()`).

    Nothing is asserted in the server thread, where a failure would only show
    as the hub retrying until some wait timed out: an error there is
    recorded, the POST is answered 500, and the error is raised in the test's
    thread by the next read (every wait reads through one) and by `check()`,
    which the `receivers` fixture calls at teardown."""

    def __init__(self, exactly_once: bool = True) -> None:
        self.exactly_once = exactly_once
        self.secrets: dict[str, str] = {}
        self.learned = threading.Condition()
        self.lock = threading.Lock()
        self._posts: list[Post] = []
        self._events: list[dict] = []
        self._batches: list[dict] = []
        self._posted: set[tuple[str, int]] = set()
        self._acked: set[tuple[str, int]] = set()
        self._errors: list[BaseException] = []
        self._fail_with: int | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                try:
                    body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                except ConnectionError:
                    return  # the hub hung up mid-request: nothing was delivered
                post = outer.handle(body, self.headers)
                try:
                    self.send_response(post.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except ConnectionError:
                    outer.answer_lost(post)
                    raise

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                error = sys.exc_info()[1]
                # A connection the hub closed (its timeout, a drain deadline,
                # its shutdown) is its business, seen in its stats; anything
                # else is the receiver's own failure.
                if error is not None and not isinstance(error, ConnectionError):
                    outer.record_error(error)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def fail_with(self) -> int | None:
        """While set, every POST is answered this status (after its
        signature is checked), so the hub retries it."""
        return self._fail_with

    @fail_with.setter
    def fail_with(self, status: int | None) -> None:
        if status is not None and self.exactly_once:
            raise AssertionError("a receiver that fails posts is made with exactly_once=False")
        self._fail_with = status

    def learn(self, uid: str, secret: str) -> None:
        with self.learned:
            self.secrets[uid] = secret
            self.learned.notify_all()

    def forget(self, uid: str) -> None:
        with self.learned:
            self.secrets.pop(uid, None)

    def secret_for(self, uid: str) -> str | None:
        # The first delivery can race the registration answer that carries
        # the secret; wait for it (bounded).
        with self.learned:
            self.learned.wait_for(lambda: uid in self.secrets, timeout=10)
            return self.secrets.get(uid)

    def record_error(self, error: BaseException) -> None:
        with self.lock:
            self._errors.append(error)

    def handle(self, body: bytes, headers: Any) -> Post:
        """Judges and records one POST; runs in the server thread, so it
        records what goes wrong instead of raising."""
        node = headers.get("X-Chronica-Node", "")
        signature = headers.get("X-Chronica-Signature")
        secret = self.secret_for(node)
        with self.lock:
            ids: tuple[int, ...] = ()
            batch: dict = {}
            try:
                ids = tuple(int(i) for i in headers.get("X-Chronica-Event-Ids", "").split(",") if i)
                if secret is None or not verify(body, signature, secret):
                    status = 401
                elif self._fail_with is not None:
                    status = self._fail_with
                else:
                    batch = json.loads(body)
                    in_body = tuple(e["id"] for e in batch["events"])
                    if in_body != ids:
                        raise AssertionError(f"X-Chronica-Event-Ids {ids} but the body holds {in_body}")
                    status = 200
            except Exception as e:  # noqa: BLE001 - recorded, raised in the test's thread
                self._errors.append(e)
                status = 500
            self._check_repost(node, ids)
            post = Post(node, ids, body, signature, status)
            self._posts.append(post)
            self._posted.update((node, i) for i in ids)
            if post.acknowledged:
                self._acked.update((node, i) for i in ids)
                self._batches.append(batch)
                self._events.extend(batch["events"])
            return post

    def _check_repost(self, node: str, ids: tuple[int, ...]) -> None:
        """Records an error for ids this POST should not carry again (the
        caller holds the lock)."""
        acked = [i for i in ids if (node, i) in self._acked]
        if acked:
            self._errors.append(AssertionError(
                f"the hub re-posted event ids {acked} to node {node!r} after a 2xx acknowledged them"))
        elif self.exactly_once:
            again = [i for i in ids if (node, i) in self._posted]
            if again:
                self._errors.append(AssertionError(
                    f"event ids {again} posted to node {node!r} again; this receiver expects "
                    "exactly-once delivery (one that fails posts is made with exactly_once=False)"))

    def answer_lost(self, post: Post) -> None:
        """The answer to `post` did not reach the hub, which will send the
        batch again: that is not a re-post of an acknowledged batch."""
        with self.lock:
            if post.acknowledged:
                self._acked.difference_update((post.node, i) for i in post.ids)
            post.answered = False

    def check(self) -> None:
        """Raises the first error the server thread recorded, if any."""
        with self.lock:
            errors = list(self._errors)
        if errors:
            raise AssertionError(
                f"the webhook receiver failed {len(errors)} time(s); the first: {errors[0]}") from errors[0]

    def _read(self, items: list) -> list:
        self.check()
        with self.lock:
            return list(items)

    def posts(self) -> list[Post]:
        """Every POST, failed and repeated ones included, in arrival order."""
        return self._read(self._posts)

    def batches(self) -> list[dict]:
        """The parsed body of every acknowledged POST."""
        return self._read(self._batches)

    def events(self) -> list[dict]:
        """The events of every acknowledged POST, in arrival order,
        duplicates included."""
        return self._read(self._events)

    def user_events(self) -> list[dict]:
        return [e for e in self.events() if e["kind"] == "user"]

    def root_events(self) -> list[dict]:
        return [e for e in self.events() if e["kind"] == "root"]

    @property
    def bad_signatures(self) -> int:
        return sum(p.status == 401 for p in self.posts())

    def answers(self, node: str | None = None) -> dict[int, list[int]]:
        """For each event id (of `node`, or of any node), the statuses
        answered to the POSTs that carried it, in order."""
        out: dict[int, list[int]] = {}
        for p in self.posts():
            if node is None or p.node == node:
                for i in p.ids:
                    out.setdefault(i, []).append(p.status if p.answered else 0)
        return out

    def assert_reposts_follow_failures(self, node: str | None = None) -> dict[int, list[int]]:
        """Accounts for the re-posts of a receiver that failed posts: every
        POST of an id but its last was answered with a failure, so each id
        was acknowledged at most once, by its last POST. Answers `answers()`
        for the test's own counts."""
        answers = self.answers(node)
        for i, statuses in answers.items():
            assert all(not 200 <= s < 300 for s in statuses[:-1]), f"event {i} answered {statuses}"
        return answers

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def balanced(s: dict) -> bool:
    return s["accepted"] == s["delivered"] + s["dropped"] + s["dead_lettered"] + s["pending"]
