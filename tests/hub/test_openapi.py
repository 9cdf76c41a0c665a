"""docs/hub-openapi.yaml checked against the router and a running hub.

The file and the router (`hub/src/api/mod.rs`) name the same routes; every
documented operation is served, and what it answers to a request without
a token, with a wrong method, with a body over the limit, for an unknown
node and on a short walk through the API is a status the file lists for
it. A wrong method's `Allow` header lists the file's methods for the path.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any, Iterator

import pytest
import yaml

from hubkit import Hub

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((ROOT / "docs" / "hub-openapi.yaml").read_text())
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
OVER_THE_LIMIT = 70_000  # hubkit's hubs take bodies up to 65,536 bytes


def operations() -> Iterator[tuple[str, str, dict]]:
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


OPERATIONS = list(operations())
IDS = [f"{m.upper()} {p}" for p, m, _ in OPERATIONS]


def router_routes() -> set[tuple[str, str]]:
    """(path, method) of every `.route("path", get(..).post(..))` of the router."""
    src = (ROOT / "hub" / "src" / "api" / "mod.rs").read_text()
    routes = set()
    for path, chain in re.findall(r'\.route\(\s*"([^"]+)",\s*((?:\w+\([\w:]+\)\.?)+)\)', src):
        routes |= {(path, m) for m in re.findall(r"(\w+)\([\w:]+\)", chain)}
    return routes


def concrete(path: str, uid: str = "ghost") -> str:
    return path.replace("{uid}", uid)


def documented(op: dict, status: int) -> bool:
    return str(status) in op["responses"]


def is_public(op: dict) -> bool:
    return op.get("security", SPEC.get("security")) == []


@pytest.fixture(scope="module")
def one_hub(hub_bin, tmp_path_factory):
    """One hub for the checks that change nothing (every uid is unknown)."""
    h = Hub(hub_bin, log_path=str(tmp_path_factory.mktemp("openapi") / "hub.log"))
    yield h
    h.stop()


def test_the_file_and_the_router_name_the_same_routes():
    in_router = router_routes()
    assert len(in_router) >= 18, in_router  # the regex still reads the router
    assert {(p, m) for p, m, _ in OPERATIONS} == in_router


def test_every_reference_resolves_and_no_text_was_split():
    refs, nulls = [], []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    refs.append(v)
                elif v is None:
                    nulls.append(f"{where}/{k}")
                walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")

    walk(SPEC, "")
    # An unquoted comma in a {flow: mapping} text starts a new key, whose
    # value is null; the file has no null on purpose.
    assert nulls == []
    for ref in refs:
        target: Any = SPEC
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(target, dict) and part in target, f"unresolved {ref}"
            target = target[part]


def fields_taken(hub: Hub, body: dict) -> set[str]:
    """The fields the hub takes where `body` has `not_a_field`, from
    serde's refusal of it, which lists them all."""
    status, out = hub.call("POST", "/v1/nodes", body)
    assert status == 400, out
    listed = re.search(r"unknown field `not_a_field`, expected one of (.*) at line", out["error"])
    assert listed, out
    return set(re.findall(r"`(\w+)`", listed.group(1)))


def test_the_registration_schemas_name_the_fields_the_hub_takes(one_hub):
    schemas = SPEC["components"]["schemas"]
    register = fields_taken(one_hub, {"not_a_field": 1})
    assert register == set(schemas["Register"]["properties"])
    retry = fields_taken(one_hub, {"uid": "n", "stream": True, "retry": {"not_a_field": 1}})
    assert retry == set(schemas["Retry"]["properties"])


def test_the_version_is_the_hubs(hub):
    assert SPEC["info"]["version"] == hub.ok("GET", "/health")["version"]


@pytest.mark.parametrize("path, method, op", OPERATIONS, ids=IDS)
def test_every_operation_is_served_and_answers_a_documented_status(one_hub, path, method, op):
    body = {} if "requestBody" in op else None
    status, out = one_hub.call(method.upper(), concrete(path), body)
    route_missing = status == 404 and isinstance(out, dict) and out.get("error") == "no such route"
    assert status != 405 and not route_missing, (status, out)
    assert documented(op, status), (status, out)


@pytest.mark.parametrize("path, method, op", OPERATIONS, ids=IDS)
def test_without_a_token_only_public_operations_answer(one_hub, path, method, op):
    status, out = one_hub.call(method.upper(), concrete(path), token=None)
    if is_public(op):
        assert status != 401, (status, out)
    else:
        assert status == 401 and documented(op, 401), (status, out)


@pytest.mark.parametrize("path", list(SPEC["paths"]))
def test_a_wrong_method_is_a_documented_405_with_the_documented_allow(one_hub, path):
    ops = {m: op for m, op in SPEC["paths"][path].items() if m in METHODS}
    assert "patch" not in ops  # the wrong method below
    status, headers, raw = one_hub.request("PATCH", concrete(path))
    assert status == 405, (status, raw)
    allowed = {m.strip().lower() for m in headers["Allow"].split(",")}
    # Every GET route answers HEAD too (see the file's description).
    assert allowed == set(ops) | ({"head"} if "get" in ops else set()), headers["Allow"]
    for method, op in ops.items():
        assert documented(op, 405), method


@pytest.mark.parametrize("path, method, op", [o for o in OPERATIONS if "requestBody" in o[2]],
                         ids=[i for i, o in zip(IDS, OPERATIONS) if "requestBody" in o[2]])
def test_a_body_over_the_limit_is_a_documented_413(one_hub, path, method, op):
    status, out = one_hub.call(method.upper(), concrete(path), raw=b" " * OVER_THE_LIMIT)
    assert status == 413 and documented(op, 413), (status, out)


def test_a_walk_through_the_api_answers_documented_statuses(hub, receivers):
    # The receiver never learns w's secret: what the hub posts to it fails
    # the check and may come again.
    r = receivers(exactly_once=False)
    steps = [
        ("POST", "/v1/nodes", {"uid": "w", "webhook": r.url, "connected": False}, 201),
        ("POST", "/v1/nodes", {"uid": "w", "webhook": r.url}, 409),
        ("POST", "/v1/nodes", {"uid": "s", "stream": True}, 201),
        ("POST", "/v1/nodes", {"uid": "x", "webhook": "http://10.9.9.9/"}, 403),
        ("GET", "/v1/nodes", None, 200),
        ("GET", "/v1/nodes/{uid}", None, 200),
        ("POST", "/v1/nodes/{uid}/subscribe", {"pattern": "a.*"}, 204),
        ("POST", "/v1/nodes/{uid}/secret", None, 200),
        ("POST", "/v1/nodes/{uid}/connected", None, 204),
        ("POST", "/v1/nodes/{uid}/disconnected", None, 204),
        ("POST", "/v1/emit", {"events": [{"topic": "a.b", "payload": 1}]}, 200),
        ("POST", "/v1/emit_to", {"target": "w", "events": [{"topic": "t"}]}, 200),
        ("POST", "/v1/emit_root", {"action": "x"}, 200),
        ("POST", "/v1/emit_root_to", {"target": "w", "action": "x"}, 200),
        ("GET", "/v1/stats", None, 200),
        ("GET", "/v1/stats/history", None, 200),
        ("GET", "/metrics", None, 200),
        ("GET", "/health", None, 200),
        ("GET", "/", None, 200),
        ("DELETE", "/v1/nodes/{uid}?drain_ms=100", None, 200),
        ("DELETE", "/v1/nodes/{uid}", None, 404),
    ]
    for method, path, body, expected in steps:
        status, out = hub.call(method, concrete(path, "w"), body)
        assert status == expected, (method, path, status, out)
        template = path.split("?")[0]
        assert documented(SPEC["paths"][template][method.lower()], status), (method, path, status)
    for method, path in [("POST", "/v1/nodes/{uid}/connected"), ("POST", "/v1/nodes/{uid}/secret")]:
        status, out = hub.call(method, concrete(path, "s"))
        assert status == 409 and documented(SPEC["paths"][path]["post"], 409), (path, status, out)
    status, out = hub.call("DELETE", "/v1/nodes/s")
    assert status == 204 and documented(SPEC["paths"]["/v1/nodes/{uid}"]["delete"], 204), (status, out)


def test_the_registration_limits_are_the_hubs(hub):
    props = SPEC["components"]["schemas"]["Register"]["properties"]
    most = props["concurrency"]["maximum"]
    assert hub.call("POST", "/v1/nodes", {"uid": "c1", "stream": True, "concurrency": most})[0] == 201
    assert hub.call("POST", "/v1/nodes", {"uid": "c2", "stream": True, "concurrency": most + 1})[0] == 400
    for name in ("queue_capacity", "root_capacity"):
        most = props[name]["maximum"]
        assert hub.call("POST", "/v1/nodes", {"uid": f"{name}1", "stream": True, name: most})[0] == 201
        assert hub.call("POST", "/v1/nodes", {"uid": f"{name}2", "stream": True, name: most + 1})[0] == 400
    longest = props["uid"]["maxLength"]
    assert hub.call("POST", "/v1/nodes", {"uid": "u" * longest, "stream": True})[0] == 201
    assert hub.call("POST", "/v1/nodes", {"uid": "v" * (longest + 1), "stream": True})[0] == 400
    assert hub.call("POST", "/v1/nodes", {"uid": "", "stream": True})[0] == 400


def test_the_node_view_schema_names_the_fields_a_view_has(hub):
    hook = hub.ok("POST", "/v1/nodes", {"uid": "w", "webhook": "http://127.0.0.1:9/hook", "connected": False})
    stream = hub.ok("POST", "/v1/nodes", {"uid": "s", "stream": True})
    views = hub.ok("GET", "/v1/nodes")
    props = set(SPEC["components"]["schemas"]["NodeView"]["properties"])
    assert set(hook) - {"secret"} | set(stream) == props
    assert {k for v in views for k in v} == props
