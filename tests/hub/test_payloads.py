"""Payload fidelity: every emit route keeps a payload as given. `payload`
is any JSON value kept verbatim (`null` included); `payload_b64` is raw
bytes and arrives as `payload_b64` even when those bytes happen to be JSON."""

from __future__ import annotations

import base64

from hubkit import wait_until

PULL = "chronica.pull_current_state"

# (name, the payload fields of an emitted event, what a node receives)
CASES = [
    ("json", {"payload": {"a": 1}}, {"payload": {"a": 1}}),
    ("null", {"payload": None}, {"payload": None}),
    ("false", {"payload": False}, {"payload": False}),
    ("bytes-that-are-json", {"payload_b64": base64.b64encode(b'{"a":1}').decode()},
     {"payload_b64": base64.b64encode(b'{"a":1}').decode()}),
    ("bytes", {"payload_b64": "AAEC"}, {"payload_b64": "AAEC"}),
    ("none", {}, {}),
]


def payload_fields(event: dict) -> dict:
    return {k: event[k] for k in ("payload", "payload_b64") if k in event}


def test_root_events_keep_payloads_as_user_events_do(hub, receivers):
    r = receivers()
    hub.register_webhook("r", r)
    for name, fields, _ in CASES:
        hub.ok("POST", "/v1/emit_to", {"target": "r", "events": [{"topic": name, **fields}]})
        hub.ok("POST", "/v1/emit_root_to", {"target": "r", "action": f"to.{name}", **fields})
        hub.ok("POST", "/v1/emit_root", {"action": f"all.{name}", **fields})
    n = len(CASES)
    wait_until(lambda: len(r.user_events()) == n and len(r.root_events()) == 2 * n + 1, what="every event")
    user = {e["topic"]: payload_fields(e) for e in r.user_events()}
    roots = {e["topic"]: payload_fields(e) for e in r.root_events() if e["topic"] != PULL}
    for name, _, expected in CASES:
        assert user[name] == expected, (name, user[name])
        assert roots[f"to.{name}"] == expected, (name, roots[f"to.{name}"])
        assert roots[f"all.{name}"] == expected, (name, roots[f"all.{name}"])


def test_a_root_json_payload_is_kept_verbatim(hub, receivers):
    r = receivers()
    hub.register_webhook("r", r)
    text = b'{"action": "x", "target": "r", "payload": {"b" : [1,  2.50]}}'
    status, out = hub.call("POST", "/v1/emit_root_to", raw=text)
    assert status == 200, out
    wait_until(lambda: len(r.root_events()) == 2, what="the root event")
    bodies = [p.body for p in r.posts()]
    assert any(b'"payload":{"b" : [1,  2.50]}' in body for body in bodies), bodies
