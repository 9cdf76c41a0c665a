#!/usr/bin/env python3
"""A small web service that keeps a key/value table in sync with its peers
through chronica-hub (the first ancestor's server example, made real).

    HUB=http://127.0.0.1:7700 HUB_TOKEN=... table_service.py NAME PORT

Its own API:  GET /table            -> the table as JSON
              PUT /table/<key>      body: any JSON value -> set locally, then tell the peers
Its webhook:  POST /chronica        batches from the hub (signature checked with
                                    the secret the hub gave this node at registration)

On registration the hub sends `chronica.pull_current_state` with the peer
list; the service then asks its peers for a snapshot and merges what comes back.
Delivery is at least once, so events are deduplicated by id. Stdlib only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HUB = os.environ.get("HUB", "http://127.0.0.1:7700")
TOKEN = os.environ["HUB_TOKEN"]
NAME, PORT = sys.argv[1], int(sys.argv[2])
SECRET = b""  # this node's webhook secret, from the registration answer

table: dict[str, object] = {}
seen: set[int] = set()
lock = threading.Lock()


def hub(path: str, body: dict | None = None, method: str = "POST") -> dict | None:
    req = urllib.request.Request(HUB + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read()
    return json.loads(text) if text else None


def emit_later(path: str, body: dict) -> None:
    # Never call the hub from inside its own webhook call: answer first.
    threading.Thread(target=hub, args=(path, body), daemon=True).start()


def on_event(e: dict) -> None:
    topic, payload = e["topic"], e.get("payload")
    if e["kind"] == "root":
        if topic == "chronica.pull_current_state" and payload["peers"]:
            # Ask every peer; the table services among them answer with a snapshot.
            emit_later("/v1/emit", {"events": [{"topic": "table.sync_request", "source": NAME}]})
        return
    if topic == "table.set":
        table[payload["key"]] = payload["value"]
    elif topic == "table.snapshot":
        for k, v in payload.items():
            table.setdefault(k, v)
    elif topic == "table.sync_request" and e.get("source"):
        emit_later("/v1/emit_to", {"target": e["source"], "events": [
            {"topic": "table.snapshot", "source": NAME, "payload": dict(table)}]})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def reply(self, status: int, body: object = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_GET(self) -> None:
        if self.path != "/table":
            return self.reply(404, {"error": "no such route"})
        with lock:
            self.reply(200, table)

    def do_PUT(self) -> None:
        if not self.path.startswith("/table/"):
            return self.reply(404, {"error": "no such route"})
        key, value = self.path[len("/table/"):], json.loads(self.body())
        with lock:
            table[key] = value
        # Local commit first, then tell the others (they all get it but us).
        hub("/v1/emit", {"events": [{"topic": "table.set", "source": NAME, "key": key,
                                     "payload": {"key": key, "value": value}}]})
        self.reply(204)

    def do_POST(self) -> None:
        if self.path != "/chronica":
            return self.reply(404, {"error": "no such route"})
        raw = self.body()
        want = hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
        # No secret yet means not registered yet: an empty key proves nothing.
        if not SECRET or not hmac.compare_digest(want, self.headers.get("X-Chronica-Signature", "")):
            return self.reply(401, {"error": "bad signature"})
        with lock:
            for e in json.loads(raw)["events"]:
                if e["id"] not in seen:
                    seen.add(e["id"])
                    on_event(e)
        self.reply(200)


def main() -> None:
    global SECRET
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # Registered disconnected: the hub holds deliveries until we know the
    # secret its answer carries (shown this once), so none is refused.
    node = hub("/v1/nodes", {"uid": NAME, "webhook": f"http://127.0.0.1:{PORT}/chronica",
                             "topics": ["table.>"], "connected": False})
    SECRET = node["secret"].encode()
    hub(f"/v1/nodes/{NAME}/connected")
    print(f"{NAME} serving on http://127.0.0.1:{PORT}/table", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        hub(f"/v1/nodes/{NAME}", method="DELETE")
        server.shutdown()


if __name__ == "__main__":
    main()
