#!/usr/bin/env python3
"""A streaming node: it cannot accept inbound HTTP, so it opens a WebSocket
to chronica-hub, receives batches, and acknowledges each one after handling
it. If the socket drops, the hub holds its events and redelivers the
unacknowledged batch after it reconnects, so events are deduplicated by id.

    HUB=ws://127.0.0.1:7700 HUB_TOKEN=... stream_node.py NAME [MAX_EVENTS]

Needs the `websockets` package (pip install websockets).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

HUB = os.environ.get("HUB", "ws://127.0.0.1:7700")
TOKEN = os.environ["HUB_TOKEN"]
NAME = sys.argv[1]
LIMIT = int(sys.argv[2]) if len(sys.argv) > 2 else None
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def register() -> None:
    http = HUB.replace("ws://", "http://", 1)
    req = urllib.request.Request(f"{http}/v1/nodes", method="POST", headers={**AUTH, "Content-Type": "application/json"},
                                 data=json.dumps({"uid": NAME, "stream": True}).encode())
    try:
        urllib.request.urlopen(req, timeout=10).close()
    except urllib.error.HTTPError as e:
        if e.code != 409:  # already registered: just reconnect
            raise


def main() -> None:
    register()
    seen: set[int] = set()
    delay = 0.1
    while LIMIT is None or len(seen) < LIMIT:
        try:
            with connect(f"{HUB}/v1/nodes/{NAME}/stream", additional_headers=AUTH, open_timeout=5) as ws:
                delay = 0.1
                while LIMIT is None or len(seen) < LIMIT:
                    frame = json.loads(ws.recv())
                    for e in frame["events"]:
                        if e["id"] not in seen:
                            seen.add(e["id"])
                            print(f"{NAME}: #{e['id']} {e['kind']} {e['topic']} {json.dumps(e.get('payload'))}",
                                  flush=True)
                    ws.send(json.dumps({"type": "ack", "seq": frame["seq"]}))
        except (ConnectionClosed, InvalidStatus, OSError) as e:
            print(f"{NAME}: stream lost ({e}); reconnecting in {delay:.1f}s", file=sys.stderr, flush=True)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


if __name__ == "__main__":
    main()
