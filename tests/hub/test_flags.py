"""Flags and TOML keys behave as docs/HUB.md lists them: the
`--membership-events` switch, `--allow-host` entries, which match a
webhook's host however an IPv6 literal, case or a trailing dot is written,
and `--max-connections-per-address`, whose bad values stop the hub."""

from __future__ import annotations

import subprocess

import pytest

from hubkit import TOKEN, TRUST, Hub, wait_until

PULL = "chronica.pull_current_state"


def membership_notices(hub: Hub, receivers) -> list[str]:
    """Registers a then b and answers the root actions a got besides its
    pull. A user event to a marks the end: a node's root lane goes first,
    and b's notice was queued before it."""
    a, b = receivers(), receivers()
    hub.register_webhook("a", a)
    hub.register_webhook("b", b)
    hub.ok("POST", "/v1/emit_to", {"target": "a", "events": [{"topic": "marker"}]})
    wait_until(lambda: len(a.user_events()) == 1, what="the marker")
    return [e["topic"] for e in a.root_events() if e["topic"] != PULL]


@pytest.mark.parametrize("flags, toml, on", [
    ([], None, False),
    (["--membership-events"], None, True),                      # a bare switch
    (["--membership-events=true"], None, True),
    (["--membership-events", "true"], None, True),
    (["--membership-events=false"], None, False),
    (["--membership-events", "--batch-size", "8"], None, True),  # a flag after the switch
    ([], "membership_events = true", True),
    (["--membership-events=false"], "membership_events = true", False),  # the flag wins
])
def test_membership_events_switch(hub_bin, tmp_path, receivers, flags, toml, on):
    if toml is not None:
        (tmp_path / "hub.toml").write_text(toml + "\n")
        flags = [*flags, "--config", str(tmp_path / "hub.toml")]
    h = Hub(hub_bin, *flags, log_path=str(tmp_path / "hub.log"))
    try:
        assert membership_notices(h, receivers) == (["chronica.node_joined"] if on else [])
    finally:
        h.stop()


ALLOWED = ["::1", "[::2]:8443", "Example.COM.", "hooks.example", "[0:0:0:0:0:0:0:3]"]


@pytest.mark.parametrize("url, status", [
    ("http://[::1]:9/hook", 201),                  # --allow-host ::1
    ("http://[0:0:0:0:0:0:0:1]/hook", 201),        # the same address, written long
    ("https://[::2]:8443/", 201),                  # [::2]:8443
    ("http://[::2]:8080/", 403),                   # wrong port
    ("https://[::2]/", 403),
    ("http://[::3]/", 201),                        # [0:0:0:0:0:0:0:3]
    ("http://[::4]/", 403),
    ("http://example.com/", 201),                  # Example.COM.
    ("http://EXAMPLE.com./", 201),
    ("http://example.com:1234/", 201),             # no port in the entry: any port
    ("http://example.com../", 403),                # only one trailing dot goes
    ("http://www.example.com/", 403),
    ("http://hooks.example./x", 201),              # hooks.example
    ("http://Hooks.Example/x", 201),
    ("http://u@example.com/", 403),                # credentials stay refused
    ("http://u:p@[::1]/", 403),
])
def test_allow_host_entries_match_however_the_host_is_written(hub_bin, tmp_path, url, status):
    flags = [arg for entry in ALLOWED for arg in ("--allow-host", entry)]
    h = Hub(hub_bin, *flags, log_path=str(tmp_path / "hub.log"))
    try:
        # Registered disconnected: nothing is sent to these hosts.
        got, body = h.call("POST", "/v1/nodes", {"uid": "w", "webhook": url, "connected": False})
        assert got == status, (url, got, body)
        if status == 403:
            assert body["error"], body
    finally:
        h.stop()


@pytest.mark.parametrize("entry", ["user@example.com", "example.com/path", "http://example.com",
                                   "example.com:http", "[::1", "[::1]x", "::1:99999:", "", "."])
def test_a_malformed_allow_host_entry_stops_the_hub_at_start(hub_bin, entry):
    done = subprocess.run(
        [hub_bin, "--listen", "127.0.0.1:0", "--trust-token", TRUST, "--token", TOKEN, "--allow-host", entry],
        capture_output=True, text=True, timeout=10,
    )
    assert done.returncode == 2, (entry, done.returncode, done.stderr)
    assert "allow_hosts" in done.stderr, done.stderr


@pytest.mark.parametrize("flags, named", [
    (["--max-connections-per-address=-1"], "invalid value '-1' for '--max-connections-per-address"),
    (["--max-connections-per-address", "two"], "invalid value 'two' for '--max-connections-per-address"),
    (["--max-connections-per-address", "1.5"], "invalid value '1.5' for '--max-connections-per-address"),
    # More than the cap would never apply: a mistake worth naming.
    (["--max-connections", "4", "--max-connections-per-address", "5"], "max_connections_per_address 5"),
])
def test_a_bad_max_connections_per_address_stops_the_hub_at_start(hub_bin, flags, named):
    done = subprocess.run(
        [hub_bin, "--listen", "127.0.0.1:0", "--trust-token", TRUST, "--token", TOKEN, *flags],
        capture_output=True, text=True, timeout=10,
    )
    assert done.returncode == 2, (flags, done.returncode, done.stderr)
    assert named in done.stderr, done.stderr
