"""Chronica: an embeddable event-distribution engine.

A :class:`Director` routes every emitted event into one ordered, bounded,
retrying queue per receiving node and calls each node's Python callback with
lists of :class:`Event` on the engine's own delivery threads.

    import chronica

    def printer(events):
        for e in events:
            print(e.topic, e.payload)

    with chronica.Director() as d:
        d.register("printer", printer)
        d.emit("greetings", b"hello")
"""

from __future__ import annotations

import atexit as _atexit

from ._chronica import (
    MQ_SUBSCRIPTION_CAPACITY,
    BrokerError,
    ChronicaError,
    ClosedError,
    Director,
    Distributed,
    DistributedStats,
    DuplicateNodeError,
    Event,
    InvalidArgumentError,
    NodeStats,
    QueueFullError,
    ReentrantError,
    ResourceError,
    Retry,
    UnknownNodeError,
    __version__,
    _close_all,
    _close_all_distributed,
)
from ._bus import DecodeError, EventBus, SerializerMismatchError, Subscription
from ._partial import PartialDeliveryError

#: Root action sent first to every newly registered node.
PULL_CURRENT_STATE = "chronica.pull_current_state"
#: Root action telling a node how many of its events were dropped.
LAGGED = "chronica.lagged"
#: Root action announcing a new node (with ``membership_events=True``).
NODE_JOINED = "chronica.node_joined"
#: Root action announcing a departed node (with ``membership_events=True``).
NODE_LEFT = "chronica.node_left"

__all__ = [
    "LAGGED",
    "MQ_SUBSCRIPTION_CAPACITY",
    "NODE_JOINED",
    "NODE_LEFT",
    "PULL_CURRENT_STATE",
    "BrokerError",
    "ChronicaError",
    "ClosedError",
    "DecodeError",
    "Director",
    "Distributed",
    "DistributedStats",
    "DuplicateNodeError",
    "Event",
    "EventBus",
    "InvalidArgumentError",
    "NodeStats",
    "PartialDeliveryError",
    "QueueFullError",
    "ReentrantError",
    "ResourceError",
    "Retry",
    "SerializerMismatchError",
    "Subscription",
    "UnknownNodeError",
    "__version__",
]


def _close_everything() -> None:
    """Closes every distributed instance, then every director, still open."""
    # Distributed instances first: they own their directors and leave the
    # fabric before closing them.
    _close_all_distributed()
    _close_all()


class _LastClose:
    """Closes what is still open when it is released (see ``_at_exit``)."""

    def __del__(self) -> None:
        _close_everything()


def _never_called(_sentinel: _LastClose) -> None:
    """Registered while ``atexit`` runs, so never called; see ``_at_exit``."""


def _at_exit() -> None:
    """Closes every director still open before the interpreter finalises:
    delivery threads must not try to enter Python while it shuts down (they
    would be ended by CPython mid-call, which aborts the process).

    Handlers registered before ``import chronica`` run after this one and may
    make new directors. ``atexit`` releases every callback once the last one
    has run, before finalisation starts, including callbacks registered while
    it runs (which it never calls): a :class:`_LastClose` held by such a
    registration closes those late directors then (CPython 3.6 to 3.13 all
    do this; tests/python/test_shutdown.py checks it)."""
    _close_everything()
    _atexit.register(_never_called, _LastClose())


_atexit.register(_at_exit)
