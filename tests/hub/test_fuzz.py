"""Random requests against every route: valid bodies, bodies with a field
replaced by a value of any JSON type, fields dropped or added, whole
bodies of any JSON value, bytes that are not JSON or not UTF-8, and uids
in the path that are empty, too long or odd. Seeded, so a failure
replays.

Whatever comes in, the hub answers below 500 with the documented
``{"error"}`` body when it refuses, stays up, and a refused request
changes nothing (docs/HUB.md): at the end the registered nodes are
exactly those the accepted registrations and deletions leave, and every
node's accounting equation holds.
"""

from __future__ import annotations

import collections
import json
import random
import urllib.parse
from typing import Any, Callable

from hubkit import balanced

SEEDS = range(6)
REQUESTS_PER_SEED = 250
UIDS = ["a", "b", "c", "node.with.dots", "ü-uid", "x" * 255]


def any_json(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value of any type, now and then an awkward one."""
    kinds = ["null", "bool", "int", "float", "str", "list", "dict"] if depth < 3 else ["null", "int", "str"]
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, -1, 1, 7, 2**31, 2**63, 2**64 + 1, -(2**70), rng.randint(-1000, 1000)])
    if kind == "float":
        return rng.choice([0.5, -2.25, 1e300, -1e-300, 3.0])
    if kind == "str":
        return rng.choice(["", "a", "b", "a.*", "a.>", ">", "*", "..", "x" * 256, "ü", "\u0000", "\ud7ff",
                           "http://127.0.0.1:1/hook", "ftp://127.0.0.1/", "aGVsbG8=", "!!notbase64!!"])
    if kind == "list":
        return [any_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["uid", "topic", "payload", "x", "events", ""]): any_json(rng, depth + 1)
            for _ in range(rng.randint(0, 3))}


def event(rng: random.Random) -> dict:
    e: dict = {"topic": rng.choice(["t", "a.b", "orders.x"])}
    if rng.random() < 0.5:
        e["payload"] = any_json(rng)
    else:
        e["payload_b64"] = rng.choice(["", "aGVsbG8=", "AAEC"])
    if rng.random() < 0.3:
        e["source"] = rng.choice(UIDS)
    if rng.random() < 0.3:
        e["key"] = rng.choice(["k1", "k2"])
    return e


def registration(rng: random.Random) -> dict:
    body: dict = {"uid": rng.choice(UIDS)}
    if rng.random() < 0.7:
        body["stream"] = True
    else:
        body["webhook"] = "http://127.0.0.1:1/hook"
    for field, values in (("topics", [["t"], ["a.*", "orders.>"]]), ("group", ["g"]), ("concurrency", [1, 2]),
                          ("connected", [True, False]), ("queue_capacity", [1, 16])):
        if rng.random() < 0.3:
            body[field] = rng.choice(values)
    return body


# Each route: method, path (from a uid), and a valid body (or None).
Route = tuple[str, Callable[[str], str], Callable[[random.Random], Any]]
ROUTES: list[Route] = [
    ("POST", lambda u: "/v1/nodes", registration),
    ("DELETE", lambda u: f"/v1/nodes/{u}", lambda r: None),
    ("DELETE", lambda u: f"/v1/nodes/{u}?drain_ms=1", lambda r: None),
    ("GET", lambda u: f"/v1/nodes/{u}", lambda r: None),
    ("POST", lambda u: f"/v1/nodes/{u}/connected", lambda r: None),
    ("POST", lambda u: f"/v1/nodes/{u}/disconnected", lambda r: None),
    ("POST", lambda u: f"/v1/nodes/{u}/subscribe", lambda r: {"pattern": r.choice(["t", "a.*", "a.>.b"])}),
    ("POST", lambda u: f"/v1/nodes/{u}/secret", lambda r: r.choice([None, {}, {"secret": "s" * 32}])),
    ("POST", lambda u: "/v1/emit", lambda r: {"events": [event(r) for _ in range(r.randint(1, 3))]}),
    ("POST", lambda u: "/v1/emit_to", lambda r: {"target": r.choice(UIDS), "events": [event(r)]}),
    ("POST", lambda u: "/v1/emit_root", lambda r: {"action": "act", "payload": any_json(r)}),
    ("POST", lambda u: "/v1/emit_root_to", lambda r: {"target": r.choice(UIDS), "action": "act"}),
    ("GET", lambda u: "/v1/stats", lambda r: None),
]


def mutate(rng: random.Random, body: Any) -> tuple[Any, bytes | None]:
    """The body as sent: as is, with one field changed, dropped or added,
    replaced whole, or raw bytes that are not valid JSON."""
    roll = rng.random()
    if roll < 0.35 or not isinstance(body, dict):
        return body, None
    body = dict(body)
    if roll < 0.55 and body:
        body[rng.choice(list(body))] = any_json(rng)
    elif roll < 0.65 and body:
        del body[rng.choice(list(body))]
    elif roll < 0.75:
        body[rng.choice(["extra", "UID", "events "])] = any_json(rng)
    elif roll < 0.85:
        return any_json(rng), None
    elif roll < 0.9 and isinstance(body.get("events"), list) and body["events"]:
        body["events"][0] = dict(body["events"][0], **{rng.choice(["topic", "payload", "key", "source"]):
                                                          any_json(rng)})
    else:
        return None, rng.choice([b"{", b"[1,", b"\xff\xfe{}", b'{"uid": "\xc3"}', b"nul", b" ", b"{}{}"])
    return body, None


def odd_uid(rng: random.Random) -> str:
    """A uid for the path, percent-encoded: mostly a real one, sometimes
    empty, too long, or not UTF-8 once decoded."""
    roll = rng.random()
    if roll < 0.8:
        return urllib.parse.quote(rng.choice(UIDS), safe="")
    return rng.choice(["", "x" * 256, "%ff%fe", "%00", "a%2Fb", "..", "%"])


def test_random_requests_never_break_the_hub(hub):
    nodes: set[str] = set()
    statuses: collections.Counter[int] = collections.Counter()
    for seed in SEEDS:
        rng = random.Random(seed)
        for i in range(REQUESTS_PER_SEED):
            method, path_of, valid = rng.choice(ROUTES)
            body, raw = mutate(rng, valid(rng))
            path = path_of(odd_uid(rng))
            if raw is None and body is None and method == "POST" and rng.random() < 0.5:
                raw = b""
            status, headers, text = hub.request(method, path, body, raw=raw)
            what = f"seed {seed} request {i}: {method} {path} {body!r} {raw!r} -> {status} {text[:200]!r}"
            assert status < 500, what
            statuses[status] += 1
            if status >= 400:
                assert headers.get("Content-Type", "").startswith("application/json"), what
                assert isinstance(json.loads(text).get("error"), str), what
            if method == "POST" and path == "/v1/nodes" and status == 201:
                nodes.add(json.loads(text)["uid"])
            if method == "DELETE" and status in (200, 204):
                nodes.discard(urllib.parse.unquote(path.split("/")[3].split("?")[0]))
        assert hub.call("GET", "/health", token=None)[0] == 200, f"seed {seed}: the hub stopped answering"
    # The mix reached both sides: accepted and refused, for each reason.
    for status in (200, 201, 204, 400, 404, 409):
        assert statuses[status] > 0, f"no request answered {status}: {sorted(statuses.items())}"
    listed = hub.ok("GET", "/v1/nodes")
    views = listed["nodes"] if isinstance(listed, dict) else listed
    assert {v["uid"] for v in views} == nodes, "refused requests changed the registered nodes"
    for v in views:
        assert balanced(v["stats"]), v
