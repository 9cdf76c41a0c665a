"""A raising callback is retried by the policy; its message is kept."""

import threading

import pytest

import chronica
from conftest import settle, wait_for


def test_raising_callback_is_retried_until_it_succeeds(director):
    attempts = []
    delivered = []

    def flaky(events):
        users = [e for e in events if e.kind == "user"]
        if users:
            attempts.append(len(users))
            if len(attempts) <= 3:
                raise RuntimeError(f"boom {len(attempts)}")
            delivered.extend(e.payload for e in users)

    director.register("a", flaky, retry=chronica.Retry(initial=0.01, max=0.02, jitter=0.0))
    director.emit("t", b"one")
    wait_for(lambda: delivered == [b"one"])
    s = settle(director, "a")
    assert s.failures == 3
    assert s.retries == 3
    assert s.last_error == "RuntimeError: boom 3"
    assert s.delivered == s.accepted == 2
    assert s.balanced()


def test_max_retries_dead_letters_the_batch():
    dead = []
    errors = []
    hooked = threading.Event()

    def on_dead_letter(uid, events, error):
        dead.append((uid, [e.payload for e in events], error))
        hooked.set()

    with chronica.Director(
        retry=chronica.Retry(initial=0.005, max=0.01, max_retries=2),
        on_dead_letter=on_dead_letter,
        on_error=lambda uid, err: errors.append((uid, err)),
    ) as d:

        def always_fails(events):
            if any(e.kind == "user" for e in events):
                raise ValueError("nope")

        d.register("a", always_fails)
        d.emit("t", b"lost")
        assert hooked.wait(20)
        s = settle(d, "a")
        assert s.dead_lettered == 1
        assert s.failures == 3 and s.retries == 2
        assert s.last_error == "ValueError: nope"
        assert s.balanced()
        assert dead == [("a", [b"lost"], "ValueError: nope")]
        wait_for(lambda: len(errors) == 3)
        assert errors[0] == ("a", "ValueError: nope")


def test_max_retries_zero_is_no_retry_and_none_is_forever():
    """``max_retries=0`` dead-letters at the first failure; ``None`` never
    gives up. C's ``max_retries`` and the hub's ``--retry-max-retries``
    read 0 as unlimited (docs/PYTHON.md): this pins the Python meaning."""

    def always_fails(events):
        if any(e.kind == "user" for e in events):
            raise ValueError("nope")

    fast = {"initial": 0.005, "max": 0.005, "jitter": 0.0}
    with chronica.Director() as d:
        d.register("zero", always_fails, retry=chronica.Retry(max_retries=0, **fast))
        d.register("none", always_fails, retry=chronica.Retry(max_retries=None, **fast))
        d.emit("t", b"x")
        s = settle(d, "zero")
        assert (s.failures, s.retries, s.dead_lettered) == (1, 0, 1), s
        wait_for(lambda: d.stats("none").retries >= 5, what="five retries")
        assert d.stats("none").dead_lettered == 0


def test_reconnecting_retries_at_once(director):
    calls = []

    def cb(events):
        if any(e.kind == "user" for e in events):
            calls.append(1)
            if len(calls) == 1:
                raise OSError("link down")

    director.register("a", cb, retry=chronica.Retry(initial=3600.0, max=3600.0))
    director.emit("t", b"x")
    wait_for(lambda: director.stats("a").failures == 1)
    director.node_disconnected("a")
    director.node_connected("a")
    s = settle(director, "a")
    assert s.delivered == 2 and len(calls) == 2


def test_partial_delivery_retries_only_the_rest():
    calls = []

    def takes_two(events):
        users = [e.payload for e in events if e.kind == "user"]
        if not users:
            return
        calls.append(users)
        if len(calls) == 1:
            try:
                raise KeyError("third")
            except KeyError as e:
                raise chronica.PartialDeliveryError(2, "stopped at the third") from e

    with chronica.Director(retry=chronica.Retry(initial=0.01, jitter=0.0)) as d:
        d.register("a", takes_two, connected=False)
        for p in [b"1", b"2", b"3", b"4"]:
            d.emit("t", p)
        d.node_connected("a")
        wait_for(lambda: len(calls) == 2)
        s = settle(d, "a")
        assert calls == [[b"1", b"2", b"3", b"4"], [b"3", b"4"]]
        assert (s.delivered, s.failures, s.retries, s.dead_lettered) == (5, 1, 1, 0)
        assert s.last_error == "stopped at the third"
        assert s.balanced()


class _Two:
    def __index__(self):
        return 2


@pytest.mark.parametrize(
    "delivered, error, text",
    [
        (-1, chronica.InvalidArgumentError, "delivered must be an int of at least 0, got -1"),
        (-(2**70), chronica.InvalidArgumentError, "delivered must be an int of at least 0"),
        (True, TypeError, "delivered must be an int, got bool"),
        (1.5, TypeError, "delivered must be an int, got float"),
        ("2", TypeError, "delivered must be an int, got str"),
        (None, TypeError, "delivered must be an int, got NoneType"),
    ],
)
def test_partial_delivery_error_checks_its_count(delivered, error, text):
    """A wrong type is a TypeError, a negative count a bad value."""
    with pytest.raises(error, match=text) as info:
        chronica.PartialDeliveryError(delivered)
    assert error is not TypeError or not isinstance(info.value, ValueError)


def test_partial_delivery_error_takes_int_likes():
    assert chronica.PartialDeliveryError(0).delivered == 0
    assert isinstance(chronica.PartialDeliveryError(3, "x"), chronica.ChronicaError)
    two = chronica.PartialDeliveryError(_Two())
    assert type(two.delivered) is int and two.delivered == 2


def test_what_a_backoff_shape_ignores_is_not_checked() -> None:
    """``multiplier`` matters to exponential backoff only and ``max`` to all
    but constant, so only there are they checked; the bus's dict form and
    the C and Rust APIs agree."""
    constant = chronica.Retry(initial=10.0, multiplier=0.5, backoff="constant")
    assert (constant.initial, constant.max, constant.multiplier) == (10.0, 5.0, 0.5)
    chronica.Retry(initial=0.1, multiplier=0.0, backoff="linear")
    with pytest.raises(chronica.InvalidArgumentError, match="multiplier"):
        chronica.Retry(multiplier=0.5)
    with pytest.raises(chronica.InvalidArgumentError, match="max"):
        chronica.Retry(initial=10.0, backoff="linear")
    with chronica.Director() as d:
        d.register("n", lambda events: None, retry=constant)
        with chronica.EventBus(d) as bus:
            bus.on("t", lambda e: None, retry=constant)
            bus.on("t", lambda e: None, retry={"backoff": "constant", "initial": 10.0, "multiplier": 0.5})
