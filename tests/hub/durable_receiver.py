"""A webhook receiver that survives kill -9: every new user event is
appended to a log file and fsynced before the 2xx is sent, and events are
deduplicated by id (the hub delivers at least once, so a batch whose 2xx
was lost comes again). Usage: durable_receiver.py PORT LOGFILE SECRET, where
SECRET is the node's webhook secret from its registration answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, LOG, SECRET = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()


def load() -> set[int]:
    """Ids already stored; a torn last line (killed mid-write) is cut off."""
    seen: set[int] = set()
    if not os.path.exists(LOG):
        return seen
    good = 0
    with open(LOG, "rb") as f:
        for line in f:
            try:
                seen.add(json.loads(line)["id"])
                good += len(line)
            except ValueError:
                break
    with open(LOG, "r+b") as f:
        f.truncate(good)
    return seen


SEEN = load()
LOCK = threading.Lock()
OUT = open(LOG, "ab")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        want = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, self.headers.get("X-Chronica-Signature", "")):
            return self.answer(401)
        with LOCK:
            for e in json.loads(body)["events"]:
                if e["kind"] == "user" and e["id"] not in SEEN:
                    OUT.write(json.dumps({"id": e["id"], "payload": e.get("payload")}).encode() + b"\n")
                    SEEN.add(e["id"])
            OUT.flush()
            os.fsync(OUT.fileno())
        self.answer(200)

    def answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()
