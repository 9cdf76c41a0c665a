"""Two hubs sharing a NATS JetStream broker behave as one (issue 7 with the
distributed adapter of issue 6): an event emitted on one hub reaches the
webhook nodes of the other, sender exclusion holds across hubs, and a
unicast reaches the hub that owns its target. scripts/test-hub.sh starts
the broker (scripts/brokers.sh up nats) and exports CHRONICA_NATS_URL."""

import base64
import os
import uuid

import pytest

from hubkit import Hub, balanced, wait_until


@pytest.fixture
def nats_url() -> str:
    url = os.environ.get("CHRONICA_NATS_URL")
    if not url:
        pytest.fail("CHRONICA_NATS_URL is not set: run scripts/test-hub.sh, which starts the broker")
    return url


@pytest.fixture
def two_hubs(hub_bin, tmp_path, nats_url):
    prefix = f"hubtest-{uuid.uuid4().hex[:8]}"
    hubs = [
        Hub(hub_bin, "--adapter", nats_url, "--instance-id", f"{prefix}-{name}", "--topic-prefix", prefix,
            log_path=str(tmp_path / f"hub-{name}.log"))
        for name in ("a", "b")
    ]
    yield hubs
    for h in hubs:
        h.stop()


def test_events_cross_hubs_through_the_broker(two_hubs, receivers) -> None:
    a, b = two_hubs
    on_a, on_b = receivers(), receivers()
    a.register_webhook("writer", on_a)
    b.register_webhook("reader", on_b)
    ids = a.emit(*({"topic": "orders.created", "payload": f"order-{i}", "source": "writer"} for i in range(20)))
    assert len(ids) == 20
    wait_until(lambda: len(on_b.user_events()) == 20, 30, "events on the other hub")
    assert [e["payload"] for e in on_b.user_events()] == [f"order-{i}" for i in range(20)]
    # Sender exclusion holds across hubs: the writer never gets its own events.
    assert on_a.user_events() == []
    wait_until(lambda: balanced(b.stats("reader")) and b.stats("reader")["pending"] == 0, 10, "reader settled")


def test_unicast_reaches_the_hub_that_owns_the_target(two_hubs, receivers) -> None:
    a, b = two_hubs
    on_a, on_b = receivers(), receivers()
    a.register_webhook("local", on_a)
    b.register_webhook("remote", on_b)
    a.ok("POST", "/v1/emit_to", {"target": "remote", "events": [{"topic": "direct", "payload": "hi"}]})
    wait_until(lambda: len(on_b.user_events()) == 1, 30, "unicast on the other hub")
    assert on_b.user_events()[0]["payload"] == "hi"
    assert on_a.user_events() == []


def test_root_payloads_cross_hubs_as_given(two_hubs, receivers) -> None:
    # The content type crosses the broker with a root event, so raw bytes
    # that happen to be JSON still arrive as payload_b64, and null as null.
    a, b = two_hubs
    on_b = receivers()
    b.register_webhook("remote", on_b)
    raw_json = base64.b64encode(b'{"a":1}').decode()
    a.ok("POST", "/v1/emit_root_to", {"target": "remote", "action": "to.null", "payload": None})
    a.ok("POST", "/v1/emit_root_to", {"target": "remote", "action": "to.bytes", "payload_b64": raw_json})
    a.ok("POST", "/v1/emit_root", {"action": "all.bytes", "payload_b64": raw_json})
    sent = {"to.null", "to.bytes", "all.bytes"}
    wait_until(lambda: sent <= {e["topic"] for e in on_b.root_events()}, 30, "root events on the other hub")
    got = {e["topic"]: {k: e[k] for k in ("payload", "payload_b64") if k in e} for e in on_b.root_events()}
    assert got["to.null"] == {"payload": None}
    assert got["to.bytes"] == got["all.bytes"] == {"payload_b64": raw_json}
