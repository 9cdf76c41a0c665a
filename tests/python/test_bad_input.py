"""Bad input: TypeError for wrong types, ValueError / the right ChronicaError
subclass for bad values; nothing crashes the interpreter."""

import pytest

import chronica
from conftest import Recorder


def test_exception_hierarchy():
    for cls in (
        chronica.UnknownNodeError,
        chronica.DuplicateNodeError,
        chronica.QueueFullError,
        chronica.ClosedError,
        chronica.ReentrantError,
        chronica.InvalidArgumentError,
    ):
        assert issubclass(cls, chronica.ChronicaError)
    assert issubclass(chronica.InvalidArgumentError, ValueError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"queue_capacity": 0},
        {"queue_capacity": -1},
        {"root_capacity": 0},
        {"batch_size": 0},
        {"overflow": "sometimes"},
        {"block_timeout": -1.0},
        {"block_timeout": float("nan")},
    ],
)
def test_bad_director_values(kwargs):
    with pytest.raises(ValueError):
        chronica.Director(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"queue_capacity": "big"},
        {"overflow": 3},
        {"trust_token": 1},
        {"membership_events": "yes"},
        {"retry": {"initial": 1}},
        {"on_drop": 5},
    ],
)
def test_wrong_director_types(kwargs):
    with pytest.raises(TypeError):
        chronica.Director(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": -1},
        {"max": float("inf")},
        {"multiplier": 0.5},
        {"jitter": 2.0},
        {"initial": 2.0, "max": 1.0},
        {"max_retries": -1},
        {"initial": 0},
        {"initial": 0.0, "max": 0.0},
        {"initial": 1e-12, "backoff": "constant"},
    ],
)
def test_bad_retry_values(kwargs):
    with pytest.raises(chronica.InvalidArgumentError):
        chronica.Retry(**kwargs)


def test_a_zero_first_retry_delay_is_refused_everywhere():
    """SPEC 2.5, no busy loop: a zero first delay (every backoff is a
    multiple of it) is refused with a reason, and nothing is registered."""
    with pytest.raises(chronica.InvalidArgumentError, match="busy loop"):
        chronica.Retry(initial=0.0, max=0.0)
    with chronica.EventBus() as bus:
        for retry in ({"initial": 0}, {"backoff": "constant", "initial": 0.0}):
            with pytest.raises(chronica.InvalidArgumentError):
                bus.on("t", lambda e: None, retry=retry)
        assert bus.subscriptions == [] and bus.director.nodes() == []


@pytest.mark.parametrize("initial, shown", [(0.0, "0.0"), (1e-10, "1e-10"), (4e-10, "4e-10")])
def test_a_first_retry_delay_below_a_nanosecond_is_refused_as_such(initial, shown):
    """The engine counts whole nanoseconds, so 1e-10 s is a zero delay; the
    message said it "must be above 0 seconds", got 0.0000000001, which it
    was."""
    with pytest.raises(chronica.InvalidArgumentError) as raised:
        chronica.Retry(initial=initial)
    assert str(raised.value) == (
        f"retry initial must be at least 1 ns (1e-09 seconds; 0 would retry in a busy loop), got {shown}"
    )
    assert chronica.Retry(initial=1e-9).initial == 1e-9


# Ints too large (or too negative) for the engine's types are bad values like
# any other, not pyo3's OverflowError.
HUGE = [2**63, 2**64, 10**30, -(2**63) - 1]


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("name", ["queue_capacity", "root_capacity", "batch_size"])
def test_out_of_range_director_ints(name, value):
    with pytest.raises(chronica.InvalidArgumentError) as info:
        chronica.Director(**{name: value})
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("name", ["concurrency", "queue_capacity", "root_capacity"])
def test_out_of_range_register_ints(director, name, value):
    with pytest.raises(chronica.InvalidArgumentError):
        director.register("a", Recorder(), **{name: value})
    assert director.nodes() == []


def test_root_capacity_is_at_most_the_largest_lane(director):
    """The root lane is held to the user lanes' bound (2**31 - 1); it had
    none, so any count up to 2**63 - 1 was taken."""
    most = chronica._chronica.MAX_CAPACITY
    message = f"root_capacity must be at most {most}"
    for value in (most + 1, 2**63 - 1):
        with pytest.raises(chronica.InvalidArgumentError, match=message):
            chronica.Director(root_capacity=value)
        with pytest.raises(chronica.InvalidArgumentError, match=message):
            director.register("a", Recorder(), root_capacity=value)
        with pytest.raises(chronica.InvalidArgumentError, match=message):
            chronica.Distributed("memory://root-capacity", trust_token="t", root_capacity=value)
    assert director.nodes() == []
    chronica.Director(root_capacity=most).close()
    director.register("a", Recorder(), root_capacity=most)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": 2**32},
        {"max_retries": 2**63},
        {"max_retries": -(2**70)},
        {"initial": 10**400},
        {"max": 10**400},
        {"multiplier": -(10**400)},
        {"jitter": 10**400},
    ],
)
def test_out_of_range_retry_numbers(kwargs):
    with pytest.raises(chronica.InvalidArgumentError):
        chronica.Retry(**kwargs)


def test_out_of_range_seconds(director):
    with pytest.raises(chronica.InvalidArgumentError):
        chronica.Director(block_timeout=10**400)
    with pytest.raises(chronica.InvalidArgumentError):
        director.close(timeout=10**400)
    assert not director.closed


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dedup_capacity": 2**63},
        {"outbox_capacity": 2**64},
        {"max_in_flight": -(2**63) - 1},
        {"queue_capacity": 2**63},
        {"dedup_window": 10**400},
    ],
)
def test_out_of_range_distributed_numbers(kwargs):
    with pytest.raises(chronica.InvalidArgumentError):
        chronica.Distributed("memory://bad-ints", trust_token="t", **kwargs)


def test_out_of_range_event_bus_numbers():
    with pytest.raises(chronica.InvalidArgumentError):
        chronica.EventBus(queue_capacity=2**63)
    with chronica.EventBus() as bus:
        for options in ({"buffer": 2**63}, {"retry": {"max_retries": 2**32}}, {"retry": {"max_retries": -1}}):
            with pytest.raises(chronica.InvalidArgumentError):
                bus.on("t", lambda e: None, **options)
        assert bus.subscriptions == [] and bus.director.nodes() == []


@pytest.mark.parametrize("value", [1.5, "3", None])
def test_non_int_counts_stay_type_errors(value):
    with pytest.raises(TypeError):
        chronica.Director(queue_capacity=value)
    with pytest.raises(TypeError):
        chronica.Retry(max_retries=1.5)


class Boom(Exception):
    pass


class BadIndex:
    def __init__(self, error):
        self.error = error

    def __index__(self):
        raise self.error

    def __float__(self):
        raise self.error


CONVERTED = [
    ("queue_capacity", lambda v: chronica.Director(queue_capacity=v)),
    ("block_timeout", lambda v: chronica.Director(block_timeout=v)),
    ("initial", lambda v: chronica.Retry(initial=v)),
    ("max_retries", lambda v: chronica.Retry(max_retries=v)),
    ("timeout", lambda v: chronica.Director().close(v)),
]


@pytest.mark.parametrize("name, convert", CONVERTED, ids=[c[0] for c in CONVERTED])
@pytest.mark.parametrize("error", [Boom("boom"), KeyboardInterrupt()], ids=["exception", "keyboard_interrupt"])
def test_an_error_raised_while_converting_an_argument_goes_through(name, convert, error):
    """__index__ / __float__ raising used to be replaced by "NAME must be an
    int" (a TypeError), KeyboardInterrupt included."""
    with pytest.raises(type(error)) as raised:
        convert(BadIndex(error))
    assert raised.value is error


@pytest.mark.parametrize("name, convert", CONVERTED, ids=[c[0] for c in CONVERTED])
def test_a_type_error_while_converting_an_argument_names_it(name, convert):
    original = TypeError("__index__ returned non-int")
    with pytest.raises(TypeError, match=name) as raised:
        convert(BadIndex(original))
    assert raised.value.__cause__ is original


class BadIterable:
    def __init__(self, error):
        self.error = error

    def __iter__(self):
        raise self.error


def raising_generator(error):
    yield "a"
    raise error


TOPICS = [
    ("__iter__", BadIterable),
    ("generator", raising_generator),
]


@pytest.mark.parametrize("where, topics", TOPICS, ids=[t[0] for t in TOPICS])
@pytest.mark.parametrize("error", [Boom("boom"), KeyboardInterrupt()], ids=["exception", "keyboard_interrupt"])
def test_an_error_raised_while_iterating_topics_goes_through(director, where, topics, error):
    """An iterable whose __iter__ raised used to be reported as "topics
    must be a str or an iterable of str" (a TypeError), KeyboardInterrupt
    included."""
    with pytest.raises(type(error)) as raised:
        director.register("a", Recorder(), topics=topics(error))
    assert raised.value is error
    assert director.nodes() == []


def test_topics_that_are_not_strs_are_type_errors(director):
    with pytest.raises(TypeError, match="iterable of str") as raised:
        director.register("a", Recorder(), topics=5)
    assert isinstance(raised.value.__cause__, TypeError)
    with pytest.raises(TypeError, match="str only"):
        director.register("a", Recorder(), topics=["a", b"b"])
    # A str that cannot be encoded is a str: its own error, not a TypeError.
    with pytest.raises(UnicodeEncodeError):
        director.register("a", Recorder(), topics=["a", "\ud800"])
    assert director.nodes() == []


def test_retry_value():
    r = chronica.Retry(initial=0.5, max_retries=3)
    assert (r.initial, r.max, r.multiplier, r.jitter, r.max_retries) == (0.5, 5.0, 2.0, 0.1, 3)
    assert r == chronica.Retry(initial=0.5, max_retries=3)
    assert "max_retries=3" in repr(r)


def test_bad_registrations(director):
    director.register("a", Recorder())
    with pytest.raises(chronica.DuplicateNodeError):
        director.register("a", Recorder())
    with pytest.raises(TypeError):
        director.register("b", "not callable")
    with pytest.raises(TypeError):
        director.register(7, Recorder())
    with pytest.raises(ValueError):
        director.register("", Recorder())
    with pytest.raises(ValueError):
        director.register("x" * 100_000, Recorder())
    with pytest.raises(ValueError):
        director.register("b", Recorder(), concurrency=0)
    with pytest.raises(ValueError):
        director.register("b", Recorder(), concurrency=-3)
    with pytest.raises(TypeError):
        director.register("b", Recorder(), topics=[1, 2])
    with pytest.raises(ValueError):
        director.register("b", Recorder(), topics=["a.>.b"])
    with pytest.raises(TypeError):
        director.register("b", Recorder(), retry=5)
    with pytest.raises(TypeError):
        director.register("b", Recorder(), connected=None)
    with pytest.raises(chronica.UnknownNodeError):
        director.unregister("ghost")
    with pytest.raises(chronica.UnknownNodeError):
        director.node_connected("ghost")
    assert director.nodes() == ["a"]  # nothing half-registered


def test_bad_emits(director):
    director.register("a", Recorder())
    with pytest.raises(TypeError):
        director.emit(5, b"x")
    with pytest.raises(TypeError):
        director.emit("t", object())
    with pytest.raises(TypeError):
        director.emit("t", {1, 2})
    with pytest.raises(TypeError):
        director.emit("t", b"x", key=3.5)
    with pytest.raises(TypeError):
        director.emit("t", b"x", source=5)
    with pytest.raises(TypeError):
        director.emit_root(None)
    assert director.stats("a").accepted == 1


NOT_JSON = [float("nan"), {"x": float("inf")}, [1, -float("inf")]]


@pytest.mark.parametrize("value", NOT_JSON, ids=["nan", "inf_in_a_dict", "minus_inf_in_a_list"])
def test_payloads_json_cannot_represent_are_refused(director, fabric, value):
    """NaN and the infinities are not JSON (RFC 8259): json.dumps wrote them
    as NaN / Infinity by default, a payload no strict parser reads."""
    director.register("a", Recorder())
    with pytest.raises(ValueError):
        director.emit("t", value)
    with pytest.raises(ValueError):
        director.emit_to("a", "t", value)
    with pytest.raises(ValueError):
        director.emit_root("act", value)
    with pytest.raises(ValueError):
        fabric.emit("t", value)
    bus = chronica.EventBus(director)
    with pytest.raises(ValueError):
        bus.emit("t", value)
    assert director.stats("a").accepted == 1  # the pull-state root event only


def test_event_json_on_non_json_payload(director):
    r = Recorder()
    director.register("a", r)
    director.emit("t", b"\xff not json")
    (e,) = r.wait_user(1)
    with pytest.raises(ValueError):
        e.json()


def test_classes_cannot_be_built_from_python():
    with pytest.raises(TypeError):
        chronica.Event()
    with pytest.raises(TypeError):
        chronica.NodeStats()
