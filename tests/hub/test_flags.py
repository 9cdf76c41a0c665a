"""Flags and TOML keys behave as docs/HUB.md lists them: the
`--membership-events` switch."""

from __future__ import annotations

import pytest

from hubkit import Hub, wait_until

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

