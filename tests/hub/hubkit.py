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
import threading
import time
import urllib.error
import urllib.request
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
        args = [
            binary,
            "--listen", f"127.0.0.1:{self.port}",
            "--trust-token", TRUST,
            "--token", TOKEN,
            "--token", OTHER_TOKEN,
            "--allow-host", "127.0.0.1",
            "--retry-initial-ms", "50",
            "--retry-max-ms", "400",
            "--webhook-timeout-ms", "2000",
            "--body-limit", "65536",
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


class Receiver:
    """A webhook endpoint in a thread. Records every event once (dedupe by
    id, as at-least-once delivery requires), checks each signature with the
    secret of the node named by X-Chronica-Node, and answers `fail_with`
    while it is set."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.learned = threading.Condition()
        self.events: list[dict] = []
        self.raw: list[tuple[bytes, str | None]] = []
        self.batches: list[dict] = []
        self.seen: set[int] = set()
        self.bad_signatures = 0
        self.posts = 0
        self.fail_with: int | None = None
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = outer.handle(body, self.headers)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def learn(self, uid: str, secret: str) -> None:
        with self.learned:
            self.secrets[uid] = secret
            self.learned.notify_all()

    def secret_for(self, uid: str) -> str | None:
        # The first delivery can race the registration answer that carries
        # the secret; wait for it (bounded).
        with self.learned:
            self.learned.wait_for(lambda: uid in self.secrets, timeout=10)
            return self.secrets.get(uid)

    def handle(self, body: bytes, headers: Any) -> int:
        secret = self.secret_for(headers.get("X-Chronica-Node", ""))
        with self.lock:
            self.posts += 1
            self.raw.append((body, headers.get("X-Chronica-Signature")))
            if secret is None or not verify(body, headers.get("X-Chronica-Signature"), secret):
                self.bad_signatures += 1
                return 401
            if self.fail_with is not None:
                return self.fail_with
            batch = json.loads(body)
            ids = [e["id"] for e in batch["events"]]
            assert headers.get("X-Chronica-Event-Ids") == ",".join(map(str, ids))
            self.batches.append(batch)
            for e in batch["events"]:
                if e["id"] not in self.seen:
                    self.seen.add(e["id"])
                    self.events.append(e)
            return 200

    def user_events(self) -> list[dict]:
        with self.lock:
            return [e for e in self.events if e["kind"] == "user"]

    def root_events(self) -> list[dict]:
        with self.lock:
            return [e for e in self.events if e["kind"] == "root"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def balanced(s: dict) -> bool:
    return s["accepted"] == s["delivered"] + s["dropped"] + s["dead_lettered"] + s["pending"]
