"""What a client without a token can hold (docs/HUB.md, Limits): a
connection that does not send its request headers, or a body it declared,
in time is closed; and past `--max-connections` a connection is closed at
once, so the slots held cannot keep the hub from answering for long; with
`--max-connections-per-address`, past that many from one address too. Each
such connection is counted in `/metrics`.

Linux routes all of 127/8 to the loopback interface, so a client socket
bound to 127.0.0.2 before connecting is another address to the hub."""

from __future__ import annotations

import socket
import time

import pytest

from hubkit import TOKEN, Hub, wait_until


def closed_within(s: socket.socket, limit: float) -> tuple[bytes, float]:
    """Reads `s` until the hub closes it: what it sent, and how long that
    took. Fails if it is still open after `limit` seconds."""
    s.settimeout(limit)
    start, got = time.monotonic(), b""
    try:
        while chunk := s.recv(4096):
            got += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"connection still open after {limit}s; got {got!r}") from None
    return got, time.monotonic() - start


def is_closed(s: socket.socket) -> bool:
    """Whether the hub closed `s` (which it never answers), without waiting."""
    s.settimeout(0.05)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def health(hub: Hub) -> int | None:
    """GET /health's status, or None when the connection was refused or closed."""
    try:
        return hub.call("GET", "/health", token=None)[0]
    except OSError:
        return None


CONNECTION_METRICS = ("chronica_hub_connections_refused_total", "chronica_hub_connection_timeouts_total")


def connection_samples(text: str) -> dict[str, int]:
    """The connection counters of a /metrics text, by sample name and labels."""
    samples = (line.rsplit(" ", 1) for line in text.splitlines() if line.startswith(CONNECTION_METRICS))
    return {name: int(value) for name, value in samples}


def connection_metrics(hub: Hub) -> dict[str, int]:
    status, text = hub.call("GET", "/metrics")
    assert status == 200, text
    return connection_samples(text)


REASONS = ("max_connections", "max_connections_per_address")


def counted(refused: dict[str, int] | None = None, header: int = 0, body: int = 0) -> dict[str, int]:
    """connection_metrics() as it should read: `refused` by reason, every
    other label value zero."""
    out = {f'chronica_hub_connections_refused_total{{reason="{r}"}}': 0 for r in REASONS}
    for reason, n in (refused or {}).items():
        out[f'chronica_hub_connections_refused_total{{reason="{reason}"}}'] = n
    out['chronica_hub_connection_timeouts_total{phase="header"}'] = header
    out['chronica_hub_connection_timeouts_total{phase="body"}'] = body
    return out


class Clients:
    """GET requests to a hub, each on a new connection from a given
    address, counting the connections the hub closed unanswered: refused,
    where no timeout can be the cause.

    The count is what a test compares with the hub's: a connection the hub
    served and closed (`Connection: close`) frees its slot a moment after
    the client has read the answer, so the next connection may or may not
    find it taken, and only the client can tell."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.refused = 0

    def try_get(self, source: str, path: str = "/health", token: str | None = None,
                keep: bool = False) -> tuple[int, bytes, socket.socket] | None:
        """The status, the body and the socket (kept alive when `keep`,
        else closed), or None when the hub closed the connection
        unanswered."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5, source_address=(source, 0))
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        close = "" if keep else "Connection: close\r\n"
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}{close}\r\n".encode())
        got = b""
        try:
            while b"\r\n\r\n" not in got:
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionResetError
                got += chunk
        except ConnectionResetError:
            s.close()
            self.refused += 1
            return None
        head, _, body = got.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                      if line.startswith(b"content-length:"))
        while len(body) < length:
            body += s.recv(65536)
        if not keep:
            s.close()
        return int(head.split(b" ")[1]), body, s

    def get(self, source: str, path: str = "/health", token: str | None = None,
            keep: bool = False) -> tuple[int, bytes, socket.socket]:
        """try_get until served (bounded)."""
        got: list[tuple[int, bytes, socket.socket]] = []

        def served() -> bool:
            answer = self.try_get(source, path, token, keep)
            if answer is not None:
                got.append(answer)
            return answer is not None

        wait_until(served, 5, f"GET {path} from {source} served")
        return got[0]

    def hold(self, source: str) -> socket.socket:
        """A connection from `source`, served once and kept alive."""
        status, body, s = self.get(source, keep=True)
        assert status == 200, body
        return s

    def metrics(self, source: str) -> dict[str, int]:
        """The connection counters, scraped from `source`."""
        status, text, _ = self.get(source, "/metrics", TOKEN)
        assert status == 200, text
        return connection_samples(text.decode())


@pytest.fixture
def start(hub_bin, tmp_path):
    hubs: list[Hub] = []

    def make(*flags: str) -> Hub:
        hubs.append(Hub(hub_bin, *flags, log_path=str(tmp_path / f"hub{len(hubs)}.log")))
        return hubs[-1]

    yield make
    for h in hubs:
        h.stop()


@pytest.mark.parametrize("sent", [
    b"",                                   # connected, then silent
    b"G",                                  # one byte of a request line
    b"GET /health HTTP/1.1\r\nHost: x\r\n",  # all but the blank line
])
def test_a_request_whose_headers_do_not_arrive_in_time_is_closed(start, sent):
    hub = start("--header-timeout-ms", "500")
    with socket.create_connection(("127.0.0.1", hub.port), timeout=5) as s:
        s.sendall(sent)
        got, took = closed_within(s, 5)
    # hyper closes it without an answer; the bound is the point, the
    # lower end shows it was the timeout and not an immediate refusal.
    assert got == b"", got
    assert 0.4 < took < 3, took
    assert health(hub) == 200


def test_half_an_http2_preface_is_refused_rather_than_held(start):
    # Only HTTP/1.1 is served: the sniffing for HTTP/2 that axum::serve
    # did waited, with no timeout, for the rest of the preface.
    hub = start()
    with socket.create_connection(("127.0.0.1", hub.port), timeout=5) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n")
        got, took = closed_within(s, 5)
    assert got.startswith(b"HTTP/1.1 400 "), got
    assert took < 2, took


def test_a_declared_body_that_does_not_arrive_in_time_is_answered_408(start):
    hub = start("--body-timeout-ms", "500")
    head = (f"POST /v1/emit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", hub.port), timeout=5) as s:
        s.sendall(head + b'{"events": [')
        got, took = closed_within(s, 5)
    assert got.startswith(b"HTTP/1.1 408 "), got
    assert b"content-type: application/json" in got.lower() and b'"error"' in got, got
    assert 0.4 < took < 3, took
    assert health(hub) == 200


def test_past_max_connections_a_connection_is_closed_and_slots_free_up(start):
    hub = start("--max-connections", "8", "--header-timeout-ms", "30000")
    idle = [socket.create_connection(("127.0.0.1", hub.port), timeout=5) for _ in range(8)]
    try:
        for s in idle:
            s.sendall(b"G")
        # Every slot is held (the header timeout is far off): one more
        # connection is closed at once rather than left waiting.
        with socket.create_connection(("127.0.0.1", hub.port), timeout=5) as extra:
            extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            got, took = closed_within(extra, 3)
        assert got == b"" and took < 2, (got, took)
        # One holder leaves: its slot serves the next client.
        idle.pop().close()
        wait_until(lambda: health(hub) == 200, 5, "/health with a slot free")
    finally:
        for s in idle:
            s.close()


def test_connections_refused_for_want_of_a_slot_are_counted(start):
    hub = start("--max-connections", "4", "--header-timeout-ms", "30000")
    assert connection_metrics(hub) == counted(), "every series is there from the start, at zero"
    clients = Clients(hub.port)
    holders = [clients.hold("127.0.0.1") for _ in range(4)]
    try:
        for _ in range(3):
            assert clients.try_get("127.0.0.2") is None, "every slot is held"
    finally:
        # Kept-alive connections that leave count as neither refused nor
        # timed out.
        for s in holders:
            s.close()
    assert clients.refused >= 3
    assert clients.metrics("127.0.0.1") == counted({"max_connections": clients.refused})


def test_connections_ended_by_the_header_or_body_timeout_are_counted(start):
    hub = start("--header-timeout-ms", "500", "--body-timeout-ms", "500")
    head = (f"POST /v1/emit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n").encode()
    stalls = [
        b"",                                        # silent: header
        b"GET /health HTTP/1.1\r\nHost: x\r\n",     # a head never ended: header
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",  # answered, then idle kept alive: header
        head + b'{"events": [',                      # a body never ended: 408, body
    ]
    conns = [socket.create_connection(("127.0.0.1", hub.port), timeout=5) for _ in stalls]
    try:
        for s, sent in zip(conns, stalls):
            s.sendall(sent)
        answers = [closed_within(s, 5)[0] for s in conns]
    finally:
        for s in conns:
            s.close()
    assert [a.split(b" ", 2)[1] if a else b"" for a in answers] == [b"", b"", b"200", b"408"], answers
    # The hub counts a header timeout once the connection is gone; the
    # client may see the close first.
    expected = counted(header=3, body=1)
    wait_until(lambda: connection_metrics(hub) == expected, 5, f"the counts {expected}")


def test_idle_connections_at_max_connections_time_out_and_health_answers(start):
    hub = start("--max-connections", "8", "--header-timeout-ms", "500")
    idle = [socket.create_connection(("127.0.0.1", hub.port), timeout=5) for _ in range(8)]
    try:
        for s in idle:
            s.sendall(b"G")
        # The holders never leave; the header timeout frees their slots.
        wait_until(lambda: health(hub) == 200, 5, "/health after the idle connections time out")
        for s in idle:
            closed_within(s, 3)
    finally:
        for s in idle:
            s.close()


def test_the_default_cap_leaves_descriptors_for_webhooks(hub_bin, tmp_path, receivers):
    # The hub under a 256-file limit, as the audit ran it; the default cap
    # fits below it, so connections nobody closes cannot take the
    # descriptors a webhook POST needs.
    wrapper = tmp_path / "hub.sh"
    wrapper.write_text(f'#!/bin/sh\nulimit -n 256\nexec "{hub_bin}" "$@"\n')
    wrapper.chmod(0o755)
    hub = Hub(str(wrapper), "--header-timeout-ms", "60000", log_path=str(tmp_path / "hub.log"))
    idle: list[socket.socket] = []
    try:
        r = receivers()
        hub.register_webhook("a", r)
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", hub.port), timeout=5))
            idle[-1].sendall(b"G")
        # The first connections hold every slot; the hub closed the rest.
        # One holder leaving lets one client in.
        wait_until(lambda: is_closed(idle[-1]), 5, "the last connection closed")
        idle.pop(0).close()
        status: list[int] = []

        def emitted() -> bool:
            try:
                status.append(hub.call("POST", "/v1/emit", {"events": [{"topic": "t"}]})[0])
            except OSError:
                return False
            return True

        wait_until(emitted, 10, "an emit with a slot free")
        assert status[-1] == 200, status
        wait_until(lambda: len(r.user_events()) == 1, 10, "the webhook delivery")
    finally:
        for s in idle:
            s.close()
        hub.stop()


def test_past_max_connections_per_address_that_address_is_refused_and_others_served(start):
    hub = start("--max-connections-per-address", "2", "--header-timeout-ms", "30000")
    clients = Clients(hub.port)
    holders = [clients.hold("127.0.0.1"), clients.hold("127.0.0.1")]
    try:
        # 127.0.0.1 holds its two; a third from it is closed unanswered.
        assert clients.try_get("127.0.0.1") is None
        # Another address is served meanwhile, and may keep a connection.
        holders.append(clients.hold("127.0.0.2"))
        assert clients.try_get("127.0.0.2") is not None
        # One of 127.0.0.1's connections leaves: its slot is reusable.
        holders.pop(0).close()
        holders.append(clients.hold("127.0.0.1"))
        assert clients.try_get("127.0.0.1") is None, "the address is back at its limit"
        # Scraped from an address of its own: never refused.
        before = clients.refused
        assert clients.metrics("127.0.0.3") == counted({"max_connections_per_address": clients.refused})
        assert clients.refused == before >= 2
    finally:
        for s in holders:
            s.close()
