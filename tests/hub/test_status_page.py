"""The status page in headless Chromium lists the nodes and their counters
after traffic; a screenshot is kept under artifacts/."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile

from conftest import ARTIFACTS
from hubkit import TOKEN, wait_until

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("no chromium on PATH (scripts/test-hub.sh installs Debian's chromium)")


def run_browser(*args: str) -> str:
    with tempfile.TemporaryDirectory(prefix="hub-chromium-") as profile:
        out = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                             capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_status_page_lists_nodes_and_counters(hub, receivers):
    a, b = receivers(), receivers()
    hub.register_webhook("orders-db", a)
    hub.register_webhook("search-index", b)
    hub.ok("POST", "/v1/nodes", {"uid": "mobile-feed", "stream": True})
    hub.emit(*({"topic": "orders.created", "payload": i} for i in range(25)))
    wait_until(lambda: hub.stats("search-index")["delivered"] == 26, what="delivery")
    wait_until(lambda: len(hub.ok("GET", "/v1/stats/history")) >= 2, what="two history samples")

    url = f"{hub.base}/#token={TOKEN}"
    dom = run_browser("--virtual-time-budget=4000", "--dump-dom", url)
    rows = dict(re.findall(r'<tr data-node="([^"]+)">(.*?)</tr>', dom, re.S))
    assert set(rows) == {"orders-db", "search-index", "mobile-feed"}, dom[:2000]
    cells = lambda uid: re.findall(r"<td[^>]*>(.*?)</td>", rows[uid])  # noqa: E731
    # node, kind, state, queue, accepted, delivered, ...
    assert cells("search-index")[:6] == ["search-index", "webhook", "connected", "0", "26", "26"]
    assert cells("mobile-feed")[1:5] == ["stream", "disconnected", "26", "26"]
    assert "3 nodes" in dom

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "hub-status.png"
    shot.unlink(missing_ok=True)
    run_browser("--virtual-time-budget=4000", "--window-size=1200,600", f"--screenshot={shot}", url)
    assert shot.exists() and shot.stat().st_size > 5000


def test_status_page_without_token_says_so(hub):
    dom = run_browser("--virtual-time-budget=3000", "--dump-dom", hub.base + "/")
    assert "answered 401" in dom and "#token=" in dom
