"""End-to-end tests of the HTTP API and webhook delivery against a running
chronica-hub with real HTTP receivers."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import threading
import time

import pytest

from hubkit import OTHER_TOKEN, TRUST, Hub, balanced, verify, wait_until


def test_routing_by_topic_and_source(hub, receivers):
    a, b, c = receivers(), receivers(), receivers()
    hub.register_webhook("a", a, topics=["orders.>"])
    hub.register_webhook("b", b, topics=["users.*"])
    hub.register_webhook("c", c)
    hub.emit({"topic": "orders.created", "payload": {"n": 1}},
             {"topic": "users.login", "payload": {"n": 2}},
             {"topic": "orders.paid", "payload": {"n": 3}, "source": "a"},
             {"topic": "other", "payload": {"n": 4}, "source": "c"})
    wait_until(lambda: len(c.user_events()) == 3 and len(a.user_events()) == 1 and len(b.user_events()) == 1,
               what="routing")
    assert [e["payload"]["n"] for e in a.user_events()] == [1]  # not its own event 3
    assert [e["payload"]["n"] for e in b.user_events()] == [2]
    assert [e["payload"]["n"] for e in c.user_events()] == [1, 2, 3]  # not its own event 4
    e = c.user_events()[2]
    assert e["topic"] == "orders.paid" and e["source"] == "a" and "trust_token" not in e


def test_order_across_many_requests(hub, receivers):
    r = receivers()
    hub.register_webhook("r", r)
    ids = []
    for chunk in range(20):
        ids += hub.emit(*({"topic": "t", "payload": chunk * 50 + i, "key": "k"} for i in range(50)))
    assert ids == sorted(ids) and len(set(ids)) == 1000
    wait_until(lambda: len(r.user_events()) == 1000, what="1000 events")
    got = r.user_events()
    assert [e["id"] for e in got] == ids
    assert [e["payload"] for e in got] == list(range(1000))
    assert got[0]["key"] == "k"
    s = hub.stats("r")
    wait_until(lambda: hub.stats("r")["pending"] == 0, what="drain")
    s = hub.stats("r")
    assert balanced(s) and s["delivered"] == 1001 and s["failures"] == 0


def test_state_pull_on_registration(hub, receivers):
    a, b = receivers(), receivers()
    hub.register_webhook("alpha", a)
    hub.register_webhook("beta", b)
    wait_until(lambda: len(b.root_events()) == 1, what="pull_current_state")
    pull = b.root_events()[0]
    assert pull["topic"] == "chronica.pull_current_state"
    assert pull["payload"] == {"peers": ["alpha"]}
    assert pull["trust_token"] == TRUST
    wait_until(lambda: len(a.root_events()) == 1, what="alpha's pull")
    assert a.root_events()[0]["payload"] == {"peers": []}


def test_emit_to_and_root_routes(hub, receivers):
    a, b = receivers(), receivers()
    hub.register_webhook("a", a, topics=["nothing.matches"])
    hub.register_webhook("b", b)
    hub.ok("POST", "/v1/emit_to", {"target": "a", "events": [{"topic": "direct", "payload_b64": "AAEC"}]})
    hub.ok("POST", "/v1/emit_root", {"action": "resync", "payload": {"why": "test"}})
    hub.ok("POST", "/v1/emit_root_to", {"target": "b", "action": "only-b"})
    wait_until(lambda: len(a.user_events()) == 1 and len(b.root_events()) == 3, what="direct and root events")
    direct = a.user_events()[0]
    assert direct["topic"] == "direct" and base64.b64decode(direct["payload_b64"]) == b"\x00\x01\x02"
    assert b.user_events() == []
    assert [e["topic"] for e in b.root_events()][1:] == ["resync", "only-b"]
    wait_until(lambda: any(e["topic"] == "resync" for e in a.root_events()), what="root to a")
    status, body = hub.call("POST", "/v1/emit_to", {"target": "ghost", "events": [{"topic": "x"}]})
    # As for an unknown source on /v1/emit: nothing was emitted, and it says so.
    assert (status, body["emitted"]) == (404, []), body
    assert hub.call("POST", "/v1/emit_root_to", {"action": "x"})[0] == 400


def test_retry_after_500_then_recovery(hub, receivers):
    r = receivers(exactly_once=False)
    r.fail_with = 500
    hub.register_webhook("flaky", r)
    hub.emit(*({"topic": "t", "payload": i} for i in range(5)))
    wait_until(lambda: hub.stats("flaky")["failures"] >= 3, what="failures")
    s = hub.stats("flaky")
    assert "500" in (s["last_error"] or "") and s["delivered"] == 0 and balanced(s)
    r.fail_with = None
    wait_until(lambda: len(r.user_events()) == 5, what="recovery")
    assert [e["payload"] for e in r.user_events()] == [0, 1, 2, 3, 4]
    wait_until(lambda: hub.stats("flaky")["pending"] == 0, what="drain")
    s = hub.stats("flaky")
    assert s["retries"] >= 3 and s["delivered"] == 6 and balanced(s)
    # Every failure the hub counted is a 500 this receiver answered, and
    # each batch came again only after one of them.
    answers = r.assert_reposts_follow_failures()
    assert sum(p.status == 500 for p in r.posts()) == s["failures"]
    assert all(a[-1] == 200 and set(a[:-1]) <= {500} for a in answers.values()), answers


def test_signatures_verify_on_the_receiver(hub, receivers):
    r = receivers()
    secret = hub.register_webhook("signed", r)["secret"]
    hub.emit({"topic": "t", "payload": "x"})
    wait_until(lambda: len(r.user_events()) == 1, what="delivery")
    assert r.bad_signatures == 0 and len(r.posts()) >= 2
    body = json.dumps(r.batches()[-1]).encode()
    assert not verify(body, "0" * 64, secret)
    assert not verify(body + b" ", None, secret)


def test_disconnected_node_holds_then_flushes(hub, receivers):
    r = receivers()
    hub.register_webhook("later", r, connected=False)
    hub.emit(*({"topic": "t", "payload": i} for i in range(10)))
    s = hub.stats("later")
    assert not s["connected"] and s["pending"] == 11 and r.posts() == []
    hub.ok("POST", "/v1/nodes/later/connected")
    wait_until(lambda: len(r.user_events()) == 10, what="flush")
    hub.ok("POST", "/v1/nodes/later/disconnected")
    hub.emit({"topic": "t", "payload": 10})
    assert hub.stats("later")["pending"] == 1
    hub.ok("POST", "/v1/nodes/later/connected")
    wait_until(lambda: len(r.user_events()) == 11, what="second flush")


def test_unregister_and_register_again(hub, receivers):
    r = receivers()
    hub.register_webhook("gone", r)
    assert hub.call("POST", "/v1/nodes", {"uid": "gone", "webhook": r.url})[0] == 409
    assert hub.call("DELETE", "/v1/nodes/gone")[0] == 204
    assert hub.call("GET", "/v1/nodes/gone")[0] == 404
    assert hub.call("DELETE", "/v1/nodes/gone")[0] == 404
    hub.register_webhook("gone", r)
    hub.ok("POST", "/v1/nodes/gone/subscribe", {"pattern": "a.*"})
    assert hub.ok("GET", "/v1/nodes/gone")["topics"] == ["a.*"]


def test_a_draining_delete_delivers_what_the_node_held(hub, receivers):
    r = receivers(exactly_once=False)
    hub.register_webhook("w", r)
    wait_until(lambda: hub.stats("w")["pending"] == 0, what="the pull")
    r.fail_with = 503  # the node now holds what it gets, retrying
    hub.emit(*({"topic": "t", "payload": i} for i in range(5)))
    wait_until(lambda: hub.stats("w")["failures"] > 0, what="a failed delivery")
    answer: list = []
    delete = threading.Thread(
        target=lambda: answer.append(hub.call("DELETE", "/v1/nodes/w?drain_ms=30000", timeout=60)))
    delete.start()
    wait_until(lambda: hub.call("GET", "/v1/nodes/w")[0] == 404, what="w to leave the routes")
    assert r.user_events() == []
    r.fail_with = None
    delete.join(60)
    (status, last), = answer
    assert status == 200, last
    assert [e["payload"] for e in r.user_events()] == list(range(5))
    assert (last["accepted"], last["delivered"], last["dropped"], last["pending"]) == (6, 6, 0, 0), last
    assert last["failures"] > 0
    answers = r.assert_reposts_follow_failures()
    assert sum(p.status == 503 for p in r.posts()) == last["failures"]
    assert all(a[-1] == 200 for a in answers.values()), answers


def test_a_draining_delete_ends_at_its_deadline(hub, receivers):
    r = receivers(exactly_once=False)
    r.fail_with = 503
    hub.register_webhook("w", r)
    hub.emit({"topic": "t", "payload": 1})
    status, last = hub.call("DELETE", "/v1/nodes/w?drain_ms=300", timeout=60)
    assert status == 200, last
    assert (last["delivered"], last["dropped"], last["pending"]) == (0, 2, 0), last
    assert balanced(last)
    # Every attempt was refused: nothing was acknowledged.
    assert r.posts() and all(not p.acknowledged for p in r.posts())


@pytest.mark.parametrize("query", ["drain_ms=soon", "drain_ms=-1", "drain=5", "drain_ms=1&x=2"])
def test_a_bad_delete_query_is_refused_and_changes_nothing(hub, receivers, query):
    r = receivers()
    hub.register_webhook("w", r)
    status, body = hub.call("DELETE", f"/v1/nodes/w?{query}")
    assert status == 400 and "error" in body, (status, body)
    assert hub.call("GET", "/v1/nodes/w")[0] == 200


def test_bad_tokens_are_rejected(hub):
    for token in (None, "", "client-token-", "client-token-1x", "CLIENT-TOKEN-1"):
        status, body = hub.call("GET", "/v1/nodes", token=token)
        assert status == 401, (token, status)
        assert "token" in body["error"] or "Authorization" in body["error"]
    assert hub.call("GET", "/v1/nodes", token=OTHER_TOKEN)[0] == 200
    assert hub.call("POST", "/v1/emit", {"events": [{"topic": "t"}]}, token="nope")[0] == 401
    assert hub.call("GET", "/metrics", token=None)[0] == 401
    assert hub.call("GET", "/health", token=None)[0] == 200


def test_malformed_and_oversized_bodies_change_nothing(hub, receivers):
    r = receivers()
    hub.register_webhook("n", r)
    wait_until(lambda: hub.stats("n")["delivered"] == 1, what="pull delivered")
    before = hub.stats("n")

    status, body = hub.call("POST", "/v1/emit", raw=b'{"events": [{"topic": "t",')
    assert status == 400 and "malformed JSON" in body["error"]
    status, body = hub.call("POST", "/v1/emit", {"events": [{"topic": "t", "colour": 1}]})
    assert status == 400 and "unknown field" in body["error"]
    status, body = hub.call("POST", "/v1/emit", {"events": []})
    assert status == 400 and "at least one" in body["error"]
    status, body = hub.call("POST", "/v1/emit", {"events": [{"topic": "ok"}, {"topic": "t", "payload_b64": "!!"}]})
    assert status == 400 and "events[1]" in body["error"]
    status, body = hub.call("POST", "/v1/emit", {"events": [{"topic": "ok"}, {"topic": "t", "source": "ghost"}]})
    assert status == 404
    big = {"events": [{"topic": "t", "payload": "x" * 70_000}]}
    status, body = hub.call("POST", "/v1/emit", big)
    assert status == 413, status
    status, body = hub.call("POST", "/v1/nodes", raw=b"[1, 2")
    assert status == 400 and "malformed JSON" in body["error"]

    assert hub.stats("n") == before
    assert [n["uid"] for n in hub.ok("GET", "/v1/nodes")] == ["n"]


@pytest.mark.parametrize("method, path, status", [
    ("PUT", "/v1/nodes", 405),                  # wrong method on a known route
    ("DELETE", "/v1/emit", 405),
    ("POST", "/health", 405),                   # a public route too
    ("GET", "/v1/nodes/%FF", 400),              # uid not UTF-8 once decoded
    ("POST", "/v1/nodes/a%C3/connected", 400),
    ("GET", "/v1/nodes/s/stream", 400),         # the WebSocket route, no upgrade
    ("GET", "/v1/nodes/%zz", 404),              # a stray % is kept: unknown node
    ("GET", "/no/such/route", 404),
])
def test_every_error_is_json(hub, method, path, status):
    hub.ok("POST", "/v1/nodes", {"uid": "s", "stream": True})
    got, headers, raw = hub.request(method, path)
    assert got == status, (got, raw)
    assert headers["Content-Type"] == "application/json", headers["Content-Type"]
    body = json.loads(raw)
    assert set(body) == {"error"} and body["error"], body
    if status == 405:
        assert method in body["error"] and method not in headers["Allow"].split(",")


def test_a_head_on_the_websocket_route_is_answered_as_a_get_without_upgrade(hub):
    # Axum's own answer was a 405 without the `Allow` header HTTP requires.
    hub.ok("POST", "/v1/nodes", {"uid": "s", "stream": True})
    got, headers, raw = hub.request("HEAD", "/v1/nodes/s/stream")
    assert (got, raw) == (400, b""), (got, raw)
    assert headers["Content-Type"] == "application/json"


def raw_exchange(port: int, request: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Sends `request` as is on a fresh connection and reads until the hub
    closes it: every answer as (status, headers by lower-case name, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    answers = []
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        assert sep, f"incomplete head {head!r}"
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        n = int(headers.get("content-length", "0"))
        answers.append((status, headers, data[:n]))
        data = data[n:]
    return answers


# Requests hyper refuses itself, before any route runs. Each is sent whole
# and read whole by the hub (none exceeds its read buffer), so the hub
# closes a connection with nothing unread and the answer cannot be lost to
# a reset.
MANY_HEADERS = b"".join(b"x-h%d: v\r\n" % i for i in range(200))


UNPARSABLE = [
    (b"GARBAGE\r\n\r\n", 400),                                              # no request line
    (b"G(T /health HTTP/1.1\r\nHost: x\r\n\r\n", 400),                       # bad method
    (b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 400),                       # bad version
    (b"GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400),     # bad header
    (b"POST /v1/emit HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n", 400),
    (b"GET /health HTTP/1.1\r\nHost: x\r\n" + MANY_HEADERS + b"\r\n", 431),  # too many headers
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),        # target too long
]


@pytest.mark.parametrize("request_bytes, status", UNPARSABLE)
def test_unparsable_requests_get_json_errors(hub, request_bytes, status):
    [(got, headers, body)] = raw_exchange(hub.port, request_bytes)
    assert got == status, (got, headers, body)
    assert headers["content-type"] == "application/json", headers
    error = json.loads(body)
    assert set(error) == {"error"} and error["error"], error
    assert headers.get("connection") == "close"


def test_unparsable_requests_are_counted_in_metrics(hub):
    # hyper refuses them before the router, whose middleware counts every
    # other request; the listener counts them, under route "unparsed".
    for request_bytes, status in UNPARSABLE:
        assert raw_exchange(hub.port, request_bytes)[0][0] == status
    status, text = hub.call("GET", "/metrics")
    assert status == 200
    counted = sorted(l for l in text.splitlines() if 'route="unparsed"' in l)
    assert counted == [
        'chronica_hub_requests_total{method="other",route="unparsed",status="400"} 5',
        'chronica_hub_requests_total{method="other",route="unparsed",status="414"} 1',
        'chronica_hub_requests_total{method="other",route="unparsed",status="431"} 1',
    ], text


def test_a_refusal_after_a_kept_alive_request_leaves_the_first_answer_alone(hub):
    answers = raw_exchange(hub.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n")
    assert [a[0] for a in answers] == [200, 400], answers
    assert json.loads(answers[0][2])["status"] == "ok"
    assert answers[1][1]["content-type"] == "application/json"
    assert "malformed" in json.loads(answers[1][2])["error"]


def test_body_over_the_limit_is_a_json_413(hub):
    # The hub under test takes 65,536 bytes. It reads the body until the
    # limit and answers at once; the connection stays open (hyper reads the
    # rest), so the answer is read while the socket is still up.
    body = b"x" * 70000
    request = (b"POST /v1/emit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer client-token-1\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body))
    with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as s:
        s.sendall(request + body)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(65536)
    head, _, rest = head.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), head
    assert b"content-type: application/json" in head.lower(), head
    assert "limit" in json.loads(rest)["error"]


def test_webhook_host_outside_allow_list_refused(hub):
    for url in ("http://10.1.2.3/hook", "http://localhost:9/hook", "ftp://127.0.0.1/x"):
        status, body = hub.call("POST", "/v1/nodes", {"uid": "evil", "webhook": url})
        assert status == 403, (url, status)
        assert body["error"]
    # Not a URL at all: a bad request, not a refusal by the allow-list.
    for url in ("not a url", "//127.0.0.1/", "http://127.0.0.1 .evil.example/"):
        status, body = hub.call("POST", "/v1/nodes", {"uid": "evil", "webhook": url})
        assert status == 400 and "not a valid URL" in body["error"], (url, status, body)
    status, body = hub.call("POST", "/v1/nodes", {"uid": "evil", "webhook": "http://10.1.2.3/"})
    assert status == 403 and "allow-list" in body["error"]
    assert hub.ok("GET", "/v1/nodes") == []
    status, body = hub.call("POST", "/v1/nodes", {"uid": "both", "webhook": "http://127.0.0.1:1/", "stream": True})
    assert status == 400


def test_metrics_and_totals(hub, receivers):
    r = receivers()
    hub.register_webhook("m", r)
    hub.emit(*({"topic": "t", "payload": i} for i in range(7)))
    wait_until(lambda: hub.stats("m")["delivered"] == 8, what="delivery")
    status, text = hub.call("GET", "/metrics")
    assert status == 200
    assert 'chronica_node_delivered_total{node="m"} 8' in text
    assert 'chronica_node_pending{node="m"} 0' in text
    assert 'chronica_hub_requests_total{method="POST",route="/v1/emit",status="200"} 1' in text
    assert 'chronica_hub_request_duration_seconds_count{route="/v1/emit"} 1' in text
    assert "chronica_hub_webhook_duration_seconds_count" in text
    stats = hub.ok("GET", "/v1/stats")
    assert stats["totals"]["delivered"] == 8 and stats["nodes"][0]["uid"] == "m"


def test_totals_count_nodes_and_connected_nodes(hub, receivers):
    # A node's `connected` and `last_error` mean nothing summed: the totals
    # say how many nodes there are and how many are connected instead.
    r = receivers()
    hub.register_webhook("up", r)
    hub.register_webhook("down", r, connected=False)
    hub.emit({"topic": "t", "payload": 1})
    wait_until(lambda: hub.stats("up")["delivered"] == 2, what="delivery")
    totals = hub.ok("GET", "/v1/stats")["totals"]
    assert totals["nodes"] == 2 and totals["connected"] == 1, totals
    assert "last_error" not in totals, totals
    assert totals["delivered"] == 2 and totals["pending"] == 2, totals


def test_block_policy_waits_for_room_then_refuses_with_what_was_emitted(hub_bin, tmp_path, receivers):
    # Under block, emits that find room are made at once; one that finds a
    # node full waits (up to block_timeout) while other requests are served.
    h = Hub(hub_bin, "--overflow", "block", "--queue-capacity", "2", "--block-timeout-ms", "3000",
            log_path=str(tmp_path / "hub.log"))
    try:
        r = receivers()
        h.register_webhook("slow", r, connected=False)
        assert len(h.emit({"topic": "t", "payload": 0}, {"topic": "t", "payload": 1})) == 2
        timer = threading.Timer(0.3, lambda: h.ok("POST", "/v1/nodes/slow/connected"))
        timer.start()
        ids = h.emit({"topic": "t", "payload": 2})  # waits until "slow" drains
        timer.join()
        assert len(ids) == 1
        wait_until(lambda: [e["payload"] for e in r.user_events()] == [0, 1, 2], what="three delivered")
        h.ok("POST", "/v1/nodes/slow/disconnected")
        status, out = h.call("POST", "/v1/emit", {"events": [{"topic": "t", "payload": p} for p in (3, 4, 5)]})
        assert status == 503, out
        assert len(out["emitted"]) == 2, out  # 3 and 4 fit; 5 timed out
        s = h.stats("slow")
        assert s["dropped"] == 0 and s["pending"] == 2 and balanced(s)
    finally:
        h.stop()


def test_request_method_labels_are_bounded(hub):
    # Requests are counted before auth; an arbitrary method must not mint a
    # new metrics series.
    for method in ("FOO1", "FOO2", "BREW"):
        hub.call(method, "/health", token=None)
    status, text = hub.call("GET", "/metrics")
    assert status == 200
    for method in ("FOO1", "FOO2", "BREW"):
        assert f'method="{method}"' not in text
    assert 'method="other",route="/health"' in text
    assert 'method="GET",route="/health"' in text


def test_sigterm_exits_with_a_half_sent_request(hub_bin, tmp_path):
    h = Hub(hub_bin, log_path=str(tmp_path / "hub.log"))
    half = None
    try:
        # A client that sent half a request and nothing more.
        half = socket.create_connection(("127.0.0.1", h.port), timeout=5)
        half.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.2)
        h.proc.terminate()
        try:
            h.proc.wait(20)
        except subprocess.TimeoutExpired:
            raise AssertionError("hub still running 20 s after SIGTERM") from None
    finally:
        if half is not None:
            half.close()
        h.stop()


def test_a_webhook_node_whose_uid_a_header_cannot_carry_is_refused(hub):
    # The uid goes out in every POST's X-Chronica-Node header: such a node
    # used to register, then fail every delivery for good.
    for uid in ("ctl\u0001x", "nl\nx", "del\u007fx"):
        status, body = hub.call("POST", "/v1/nodes", {"uid": uid, "webhook": "http://127.0.0.1:1/"})
        assert status == 400 and "X-Chronica-Node" in body["error"], (uid, status, body)
    assert hub.ok("GET", "/v1/nodes") == []
    # Letters beyond ASCII travel fine; a streaming node sends no header.
    hub.ok("POST", "/v1/nodes", {"uid": "caf\u00e9", "webhook": "http://127.0.0.1:1/"})
    hub.ok("POST", "/v1/nodes", {"uid": "nl\nstream", "stream": True})


def test_a_pattern_subscribed_again_is_listed_once(hub, receivers):
    hub.register_webhook("n", receivers())
    for _ in range(3):
        hub.ok("POST", "/v1/nodes/n/subscribe", {"pattern": "same.topic"})
    assert hub.ok("GET", "/v1/nodes/n")["topics"] == ["same.topic"]


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_huge_webhook_answer_is_not_read_into_memory(hub):
    # The receiver answers 200 with 400 MB it writes until the hub hangs
    # up; the hub reads a little of it, not all (it held all of it).
    size, sent = 400 << 20, []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                head, body = request.split(b"\r\n\r\n", 1)
                length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")][0][15:])
                while len(body) < length:
                    body += conn.recv(65536)
                chunk, n = b"x" * (1 << 20), 0
                try:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
                    while n < size:
                        conn.sendall(chunk)
                        n += len(chunk)
                except OSError:
                    pass  # the hub hung up: what it did not read
                sent.append(n)

    threading.Thread(target=answer, daemon=True).start()
    before = peak_rss_mib(hub.proc.pid)
    hub.ok("POST", "/v1/nodes", {"uid": "n", "webhook": f"http://127.0.0.1:{server.getsockname()[1]}/"})
    hub.emit({"topic": "t", "payload": 1})
    wait_until(lambda: hub.stats("n")["delivered"] == 2, 20, "both events delivered")
    server.close()
    grown = peak_rss_mib(hub.proc.pid) - before
    assert grown < 100, f"the hub's peak memory grew by {grown:.0f} MiB for a {size >> 20} MiB answer"
    assert all(n < size for n in sent), "the hub read every answer to its end"


def test_large_emits_leave_other_requests_answered(hub_bin, tmp_path):
    # Four requests of 100,000 events each: emitted on the request's own
    # async worker, they held every worker until done, and /health waited
    # as long as they took. The bound is relative to the emits' own time,
    # so a slow or loaded machine changes both alike.
    h = Hub(hub_bin, "--body-limit", str(8 << 20), log_path=str(tmp_path / "hub.log"))
    try:
        for i in range(20):
            h.ok("POST", "/v1/nodes", {"uid": f"s{i}", "stream": True})
        body = json.dumps({"events": [{}] * 100_000}).encode()
        done: list[float] = []

        def emit() -> None:
            start = time.monotonic()
            status, _ = h.call("POST", "/v1/emit", raw=body, timeout=300)
            assert status == 200
            done.append(time.monotonic() - start)

        emits = [threading.Thread(target=emit) for _ in range(4)]
        for t in emits:
            t.start()
        slowest_health = 0.0
        while any(t.is_alive() for t in emits):
            start = time.monotonic()
            assert h.call("GET", "/health", token=None, timeout=300)[0] == 200
            slowest_health = max(slowest_health, time.monotonic() - start)
        for t in emits:
            t.join()
        assert len(done) == 4
        assert slowest_health < max(done) / 4, f"/health took {slowest_health:.2f} s; the emits {max(done):.2f} s"
    finally:
        h.stop()
