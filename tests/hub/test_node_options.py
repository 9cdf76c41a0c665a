"""A node's own `root_capacity`, `overflow` and `retry` at registration,
over the hub-wide flags (docs/HUB.md, Nodes' own settings), and the
`--retry-backoff` and `--retry` flags: each applies, a field left out
takes the hub's setting, and every bad value is a 400 that registers
nothing (or, for a flag, stops the hub at start)."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from hubkit import TOKEN, TRUST, Hub, balanced, wait_until


def user_payloads(receiver, node: str) -> list:
    return [e["payload"] for b in receiver.batches() if b["node"] == node for e in b["events"] if e["kind"] == "user"]


def test_a_drop_newest_node_keeps_its_oldest_events_under_a_drop_oldest_hub(hub, receivers):
    r = receivers()
    hub.register_webhook("newest", r, connected=False, queue_capacity=2, overflow="drop_newest")
    hub.register_webhook("hubs", r, connected=False, queue_capacity=2)  # the hub's drop_oldest
    hub.emit(*({"topic": "t", "payload": i} for i in range(5)))
    for uid in ("newest", "hubs"):
        s = hub.stats(uid)
        assert s["dropped"] == 3 and s["pending"] == 3 and balanced(s), (uid, s)  # 2 events + the pull
        hub.ok("POST", f"/v1/nodes/{uid}/connected")
    wait_until(lambda: len(r.user_events()) == 4, what="both nodes' events")
    assert user_payloads(r, "newest") == [0, 1]
    assert user_payloads(r, "hubs") == [3, 4]


def test_a_nodes_root_capacity_bounds_its_root_lane(hub, receivers):
    r = receivers()
    hub.register_webhook("small", r, connected=False, root_capacity=2)
    hub.register_webhook("hubs", r, connected=False)  # the hub's 1024
    for i in range(4):
        hub.ok("POST", "/v1/emit_root", {"action": f"a{i}"})
    # "hubs" holds its pull and the four actions; "small" its pull (pinned:
    # drop_oldest never evicts it) and the last action.
    small, hubs = hub.stats("small"), hub.stats("hubs")
    assert (small["accepted"], small["pending"], small["dropped"]) == (5, 2, 3), small
    assert (hubs["accepted"], hubs["pending"], hubs["dropped"]) == (5, 5, 0), hubs
    hub.ok("POST", "/v1/nodes/small/connected")
    wait_until(lambda: hub.stats("small")["pending"] == 0, what="small drained")
    roots = [e["topic"] for b in r.batches() if b["node"] == "small" for e in b["events"]]
    assert roots == ["chronica.pull_current_state", "chronica.lagged", "a3"], roots


def test_a_nodes_max_retries_dead_letters_while_another_retries_forever(hub, receivers):
    # The hub's policy is unlimited (--retry-max-retries 0, the default).
    r = receivers(exactly_once=False)
    r.fail_with = 500
    hub.register_webhook("capped", r, retry={"max_retries": 2, "initial_ms": 10, "max_ms": 40})
    hub.register_webhook("forever", r, retry={"initial_ms": 10, "max_ms": 40})
    hub.emit({"topic": "t", "payload": 1})
    wait_until(lambda: hub.stats("capped")["pending"] == 0, what="capped gave up")
    s = hub.stats("capped")
    # Two batches (the pull, the event), each one call and two re-attempts.
    assert (s["dead_lettered"], s["failures"], s["retries"], s["delivered"]) == (2, 6, 4, 0), s
    wait_until(lambda: hub.stats("forever")["retries"] > 4, what="forever past capped's budget")
    f = hub.stats("forever")
    assert f["dead_lettered"] == 0 and f["pending"] == 2 and balanced(f), f
    assert hub.stats("capped") == s, "capped stopped for good"


def test_retry_false_is_no_re_attempt_and_max_retries_0_is_unlimited(hub_bin, tmp_path, receivers):
    # Under a hub of --retry-max-retries 3, a node's "retry": false never
    # re-attempts; its "max_retries": 0 is unlimited, as the flag's 0.
    h = Hub(hub_bin, "--retry-max-retries", "3", "--retry-initial-ms", "10", "--retry-max-ms", "20",
            log_path=str(tmp_path / "hub.log"))
    try:
        r = receivers(exactly_once=False)
        r.fail_with = 500
        h.register_webhook("none", r, retry=False)
        h.register_webhook("unlimited", r, retry={"max_retries": 0})
        h.register_webhook("hubs", r)
        wait_until(lambda: h.stats("none")["pending"] == 0 and h.stats("hubs")["pending"] == 0,
                   what="none and hubs gave up")
        assert (h.stats("none")["failures"], h.stats("none")["retries"]) == (1, 0)
        assert (h.stats("hubs")["failures"], h.stats("hubs")["retries"]) == (4, 3)
        wait_until(lambda: h.stats("unlimited")["retries"] > 3, what="unlimited past the hub's 3")
        assert h.stats("unlimited")["dead_lettered"] == 0
    finally:
        h.stop()


def test_the_retry_false_flag_is_the_hubs_no_re_attempt(hub_bin, tmp_path, receivers):
    h = Hub(hub_bin, "--retry", "false", log_path=str(tmp_path / "hub.log"))
    try:
        r = receivers(exactly_once=False)
        r.fail_with = 500
        h.register_webhook("hubs", r)
        h.register_webhook("own", r, retry={"max_retries": 0})
        wait_until(lambda: h.stats("hubs")["dead_lettered"] == 1, what="hubs gave up")
        assert (h.stats("hubs")["failures"], h.stats("hubs")["retries"]) == (1, 0)
        wait_until(lambda: h.stats("own")["retries"] > 1, what="own retries")
    finally:
        h.stop()


def test_backoff_shapes_from_the_flag_and_a_nodes_retry(hub_bin, tmp_path, receivers):
    # Delays 100, 200, 300, 400 ms (linear) against 100, 400, 1600 ms
    # (exponential, multiplier 4), no jitter. The delays are lower bounds, so
    # the exponential node cannot reach 4 re-attempts before 8.5 s, however
    # late the linear one reaches them (after 1 s).
    h = Hub(hub_bin, "--retry-backoff", "linear", "--retry-initial-ms", "100", "--retry-max-ms", "10000",
            "--retry-multiplier", "4", "--retry-jitter", "0", log_path=str(tmp_path / "hub.log"))
    try:
        r = receivers(exactly_once=False)
        r.fail_with = 500
        h.register_webhook("linear", r)
        h.register_webhook("exponential", r, retry={"backoff": "exponential"})
        start = time.monotonic()
        wait_until(lambda: h.stats("linear")["retries"] >= 4, what="linear's fourth re-attempt")
        if time.monotonic() - start < 8:
            assert h.stats("exponential")["retries"] < 4
    finally:
        h.stop()


def test_a_blocking_node_under_a_drop_oldest_hub_waits_off_the_async_workers(hub_bin, tmp_path, receivers):
    # Emits that wait for room in a node's lane must leave the async
    # workers (as under --overflow block), or enough of them stop the hub
    # answering anything until they time out.
    h = Hub(hub_bin, "--block-timeout-ms", "3000", log_path=str(tmp_path / "hub.log"))
    try:
        r = receivers()
        h.register_webhook("full", r, connected=False, queue_capacity=1, overflow="block")
        h.emit({"topic": "t", "payload": 0})
        waiting = [
            threading.Thread(target=lambda: h.call("POST", "/v1/emit", {"events": [{"topic": "t"}]}, timeout=60))
            for _ in range(max(16, 2 * (os.cpu_count() or 1)))
        ]
        for t in waiting:
            t.start()
        # Each of them waits its 3 s for room; /health must not. The sleep
        # lets them reach the full lane first (nothing shows they did).
        time.sleep(0.5)
        started = time.monotonic()
        assert h.call("GET", "/health", token=None, timeout=60)[0] == 200
        took = time.monotonic() - started
        for t in waiting:
            t.join()
        assert took < 2.0, f"/health took {took:.2f} s behind the waiting emits"
    finally:
        h.stop()


SETTINGS = ("queue_capacity", "root_capacity", "overflow", "retry")


def test_a_nodes_view_shows_the_settings_it_runs_with_its_own_or_the_hubs(hub_bin, tmp_path, receivers):
    h = Hub(hub_bin, "--queue-capacity", "100", "--root-capacity", "10", "--overflow", "drop_newest",
            "--retry-max-retries", "7", "--retry-initial-ms", "30", "--retry-max-ms", "900",
            "--retry-jitter", "0.25", log_path=str(tmp_path / "hub.log"))
    try:
        r = receivers()
        hubs_retry = {"backoff": "exponential", "initial_ms": 30, "max_ms": 900, "multiplier": 2.0,
                      "jitter": 0.25, "max_retries": 7}
        own = h.register_webhook("own", r, queue_capacity=8, root_capacity=3, overflow="block",
                                 retry={"backoff": "linear", "initial_ms": 20, "max_retries": 0})
        expected = {
            "own": {"queue_capacity": 8, "root_capacity": 3, "overflow": "block",
                    # max_retries 0 is unlimited, as the registration read it.
                    "retry": {**hubs_retry, "backoff": "linear", "initial_ms": 20, "max_retries": 0}},
            "hubs": {"queue_capacity": 100, "root_capacity": 10, "overflow": "drop_newest", "retry": hubs_retry},
            "never": {"queue_capacity": 100, "root_capacity": 5, "overflow": "drop_newest", "retry": False},
        }
        assert {k: own[k] for k in SETTINGS} == expected["own"], own
        h.register_webhook("hubs", r)
        h.ok("POST", "/v1/nodes", {"uid": "never", "stream": True, "root_capacity": 5, "retry": False})
        for uid, want in expected.items():
            view = h.ok("GET", f"/v1/nodes/{uid}")
            assert {k: view[k] for k in SETTINGS} == want, (uid, view)
        listed = {v["uid"]: {k: v[k] for k in SETTINGS} for v in h.ok("GET", "/v1/nodes")}
        assert listed == expected
        # The view's settings, posted back, register the same node.
        h.ok("DELETE", "/v1/nodes/hubs")
        h.register_webhook("hubs", r, **expected["hubs"])
        view = h.ok("GET", "/v1/nodes/hubs")
        assert {k: view[k] for k in SETTINGS} == expected["hubs"], view
    finally:
        h.stop()


BAD = [
    ({"root_capacity": 0}, "root_capacity must be at least 1"),
    ({"queue_capacity": 0}, "queue_capacity must be at least 1"),
    # The engine's largest lane, the root lane's too (it had no bound).
    ({"root_capacity": 2**31}, "root_capacity must be at most 2147483647"),
    ({"root_capacity": 2**64 - 1}, "root_capacity must be at most 2147483647"),
    ({"queue_capacity": 2**31}, "queue_capacity must be at most 2147483647"),
    # A value of the wrong type is serde's refusal, which names line and
    # column rather than the field.
    ({"root_capacity": -1}, "malformed JSON body"),
    ({"root_capacity": "2"}, "malformed JSON body"),
    ({"overflow": "Block"}, 'overflow "Block": expected drop_oldest, drop_newest or block'),
    ({"overflow": "oldest"}, "expected drop_oldest, drop_newest or block"),
    ({"overflow": 1}, "malformed JSON body"),
    ({"retry": {"initial_ms": 0}}, "initial_delay must be above zero"),
    ({"retry": {"jitter": 1.5}}, "jitter must be between"),
    ({"retry": {"multiplier": 0.5}}, "multiplier must be a finite number"),
    ({"retry": {"initial_ms": 1000}}, "max_delay must not be smaller"),  # over the hub's 400
    ({"retry": {"backoff": "random"}}, 'retry backoff "random": expected exponential, linear or constant'),
    ({"retry": {"max_retries": -1}}, "malformed JSON body"),
    ({"retry": {"initial": 10}}, "unknown field `initial`"),
    ({"retry": 3}, "no re-attempt"),
    ({"retry": "none"}, "no re-attempt"),
]


@pytest.mark.parametrize("extra, message", BAD, ids=[repr(b) for b, _ in BAD])
@pytest.mark.parametrize("kind", ["webhook", "stream"])
def test_a_bad_value_is_a_400_that_registers_nothing(hub, receivers, kind, extra, message):
    r = receivers()
    where = {"webhook": r.url} if kind == "webhook" else {"stream": True}
    status, out = hub.call("POST", "/v1/nodes", {"uid": "n", **where, **extra})
    assert status == 400, out
    assert message in out["error"], out
    assert all(f"unknown field `{key}`" not in out["error"] for key in extra), out
    assert hub.call("GET", "/v1/nodes/n")[0] == 404
    assert hub.ok("GET", "/v1/nodes") == []
    assert r.posts() == []


@pytest.mark.parametrize("flags, named", [
    (["--root-capacity", "2147483648"], "root_capacity must be at most 2147483647"),
    (["--queue-capacity", "2147483648"], "queue_capacity must be at most 2147483647"),
    (["--retry-backoff", "random"], 'retry backoff "random": expected exponential, linear or constant'),
    (["--retry-backoff", "constant", "--retry-initial-ms", "0"], "initial_delay"),
    (["--retry", "maybe"], "invalid value 'maybe' for '--retry"),
    (["--retry", "false", "--retry-max-retries", "3"], "retry_max_retries"),
])
def test_a_bad_capacity_or_retry_flag_stops_the_hub_at_start(hub_bin, flags, named):
    done = subprocess.run(
        [hub_bin, "--listen", "127.0.0.1:0", "--trust-token", TRUST, "--token", TOKEN, *flags],
        capture_output=True, text=True, timeout=10,
    )
    assert done.returncode == 2, (flags, done.returncode, done.stderr)
    assert named in done.stderr, done.stderr


def test_retry_backoff_and_retry_are_toml_keys_too(hub_bin, tmp_path, receivers):
    (tmp_path / "hub.toml").write_text('retry_backoff = "constant"\nretry = false\n')
    h = Hub(hub_bin, "--config", str(tmp_path / "hub.toml"), log_path=str(tmp_path / "hub.log"))
    try:
        r = receivers(exactly_once=False)
        r.fail_with = 500
        h.register_webhook("hubs", r)
        wait_until(lambda: h.stats("hubs")["dead_lettered"] == 1, what="no re-attempt")
        assert h.stats("hubs")["retries"] == 0
    finally:
        h.stop()
    (tmp_path / "bad.toml").write_text('retry_backoff = "spiral"\n')
    done = subprocess.run(
        [hub_bin, "--listen", "127.0.0.1:0", "--trust-token", TRUST, "--token", TOKEN,
         "--config", str(tmp_path / "bad.toml")],
        capture_output=True, text=True, timeout=10,
    )
    assert done.returncode == 2 and 'retry backoff "spiral"' in done.stderr, done.stderr
