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
    ],
)
def test_bad_retry_values(kwargs):
    with pytest.raises((ValueError, OverflowError)):
        chronica.Retry(**kwargs)


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
