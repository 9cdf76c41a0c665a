"""The Authorization header: the scheme `Bearer` in any case (RFC 7235
makes auth schemes case-insensitive), then one or more spaces or tabs,
then the token, which is compared exactly."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from hubkit import TOKEN


def status_with(hub, authorization: str) -> int:
    req = urllib.request.Request(hub.base + "/v1/nodes", headers={"Authorization": authorization})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.parametrize("authorization", [
    f"Bearer {TOKEN}",
    f"bearer {TOKEN}",
    f"BEARER {TOKEN}",
    f"bEaReR {TOKEN}",
    f"Bearer   {TOKEN}",
    f"Bearer\t{TOKEN}",
    f"BEARER \t {TOKEN}",
])
def test_the_scheme_is_case_insensitive_and_any_blanks_separate_it(hub, authorization):
    assert status_with(hub, authorization) == 200, repr(authorization)


@pytest.mark.parametrize("authorization", [
    f"Bearer{TOKEN}",             # no separator
    f"Basic {TOKEN}",
    f"Bearers {TOKEN}",
    f"Bear {TOKEN}",
    f"Bearer {TOKEN.upper()}",    # the token itself is case-sensitive
    f"Bearer {TOKEN} {TOKEN}",
    f"Bearer {TOKEN[:-1]}",
    "Bearer",
    "Bearer   ",
    TOKEN,
])
def test_anything_else_is_refused(hub, authorization):
    assert status_with(hub, authorization) == 401, repr(authorization)
