"""Per-node webhook secrets: each webhook node's deliveries are signed with
its own secret, handed out once in the registration answer, so no other
node (all of which hold the trust token) can forge a delivery to it."""

from __future__ import annotations

import re

from hubkit import TRUST, sign, verify, wait_until


def signed_deliveries(r) -> list[tuple[bytes, str]]:
    """Every (raw body, signature) the receiver got, checked or not."""
    return [(p.body, p.signature) for p in r.posts()]


def test_each_node_verifies_with_its_own_secret_only(hub, receivers):
    a, b = receivers(), receivers()
    sa = hub.register_webhook("a", a)["secret"]
    sb = hub.register_webhook("b", b)["secret"]
    for s in (sa, sb):
        assert re.fullmatch(r"[0-9a-f]{64}", s), s  # 32 random bytes, hex
    assert sa != sb and TRUST not in (sa, sb)
    hub.emit({"topic": "t", "payload": 1})
    wait_until(lambda: len(a.user_events()) == 1 and len(b.user_events()) == 1, what="deliveries")
    assert a.bad_signatures == 0 and b.bad_signatures == 0

    # The pull_current_state every node gets carries the trust token ...
    assert b.root_events()[0]["trust_token"] == TRUST
    body, signature = signed_deliveries(a)[-1]
    assert verify(body, signature, sa)
    # ... but neither it nor another node's secret makes a valid signature.
    assert not verify(body, signature, TRUST) and not verify(body, signature, sb)
    forged_with_trust, forged_by_b = sign(body, TRUST), sign(body, sb)
    assert not verify(body, forged_with_trust, sa) and not verify(body, forged_by_b, sa)


def test_a_client_may_choose_the_secret(hub, receivers):
    r = receivers()
    chosen = "my-own-webhook-secret-0123456789"
    out = hub.ok("POST", "/v1/nodes", {"uid": "mine", "webhook": r.url, "secret": chosen})
    assert out["secret"] == chosen
    r.learn("mine", chosen)
    hub.emit({"topic": "t", "payload": 1})
    wait_until(lambda: len(r.user_events()) == 1, what="delivery")
    assert r.bad_signatures == 0


def test_bad_secrets_are_refused_and_change_nothing(hub, receivers):
    r = receivers()
    for secret in ("", "too-short", "x" * 257, "has spaces in it, 0123456789"):
        status, body = hub.call("POST", "/v1/nodes", {"uid": "n", "webhook": r.url, "secret": secret})
        assert status == 400 and "secret" in body["error"], (secret, status, body)
    status, body = hub.call("POST", "/v1/nodes", {"uid": "s", "stream": True, "secret": "x" * 32})
    assert status == 400 and "secret" in body["error"], body
    assert hub.ok("GET", "/v1/nodes") == []
    assert r.posts() == []


def test_the_secret_is_shown_only_at_registration(hub, receivers):
    r = receivers()
    secret = hub.register_webhook("quiet", r)["secret"]
    assert "secret" not in hub.ok("POST", "/v1/nodes", {"uid": "st", "stream": True})
    wait_until(lambda: len(r.root_events()) == 1, what="pull delivered")
    for path in ("/v1/nodes", "/v1/nodes/quiet", "/v1/stats", "/v1/stats/history", "/metrics", "/"):
        status, _, text = hub.request("GET", path)
        assert status == 200, path
        assert secret.encode() not in text, path
        assert b'"secret"' not in text, path
    with open(hub.log_path, "rb") as log:
        assert secret.encode() not in log.read()


def test_rotation_switches_every_later_signature_to_the_new_key(hub, receivers):
    r = receivers()
    old = hub.register_webhook("rot", r)["secret"]
    hub.emit({"topic": "t", "payload": 1})
    wait_until(lambda: len(r.user_events()) == 1, what="first delivery")

    out = hub.ok("POST", "/v1/nodes/rot/secret")
    new = out["secret"]
    assert out["uid"] == "rot" and re.fullmatch(r"[0-9a-f]{64}", new) and new != old
    r.learn("rot", new)
    hub.emit({"topic": "t", "payload": 2})
    wait_until(lambda: len(r.user_events()) == 2, what="delivery after rotation")
    body, signature = signed_deliveries(r)[-1]
    assert verify(body, signature, new) and not verify(body, signature, old)
    assert r.bad_signatures == 0
    assert new.encode() not in hub.request("GET", "/v1/nodes/rot")[2]


def test_a_batch_being_retried_is_signed_with_the_rotated_key(hub, receivers):
    r = receivers(exactly_once=False)
    old = hub.register_webhook("retry", r)["secret"]
    wait_until(lambda: len(r.root_events()) == 1, what="pull delivered")
    r.fail_with = 503
    hub.emit({"topic": "t", "payload": 1})
    wait_until(lambda: hub.stats("retry")["failures"] >= 1, what="a failed attempt")
    # The hub is told the new key before the receiver is: until then every
    # attempt fails its check, and none is signed with the old key.
    chosen = "rotated-secret-0123456789abcdef"
    assert hub.ok("POST", "/v1/nodes/retry/secret", {"secret": chosen})["secret"] == chosen
    r.learn("retry", chosen)
    r.fail_with = None
    wait_until(lambda: len(r.user_events()) == 1, what="the retried batch")
    body, signature = signed_deliveries(r)[-1]
    assert verify(body, signature, chosen) and not verify(body, signature, old)
    wait_until(lambda: hub.stats("retry")["pending"] == 0, what="settled")
    # The event was posted until a post passed the check with the new key:
    # failed ones (503, or 401 between the rotation and learn), then one 2xx.
    answers = r.assert_reposts_follow_failures()
    (event,) = [e["id"] for e in r.user_events()]
    assert len(answers[event]) >= 2 and answers[event][-1] == 200, answers[event]


def test_bad_rotations_are_refused_and_change_nothing(hub, receivers):
    r = receivers()
    secret = hub.register_webhook("keep", r)["secret"]
    hub.ok("POST", "/v1/nodes", {"uid": "st", "stream": True})
    cases = [
        ("/v1/nodes/keep/secret", {"secret": "too-short"}, 400, "secret"),
        ("/v1/nodes/keep/secret", {"secret": "x" * 32, "extra": 1}, 400, "extra"),
        ("/v1/nodes/st/secret", None, 409, "streaming"),
        ("/v1/nodes/nobody/secret", None, 404, "nobody"),
    ]
    for path, body, status, word in cases:
        got, out = hub.call("POST", path, body)
        assert got == status and word in out["error"], (path, body, got, out)
    got, out = hub.call("POST", "/v1/nodes/keep/secret", token=None)
    assert got == 401, (got, out)
    got, out = hub.call("POST", "/v1/nodes/keep/secret", raw=b"{not json")
    assert got == 400 and "malformed" in out["error"], (got, out)

    hub.emit({"topic": "t", "payload": 1})
    wait_until(lambda: len(r.user_events()) == 1, what="delivery")
    body, signature = signed_deliveries(r)[-1]
    assert verify(body, signature, secret) and r.bad_signatures == 0
