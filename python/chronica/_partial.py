"""``chronica.PartialDeliveryError``: how a callback says it handled part
of its list before failing."""

from __future__ import annotations

import operator

from ._chronica import ChronicaError, InvalidArgumentError


class PartialDeliveryError(ChronicaError):
    """Raised by a node callback that handled the first ``delivered`` events
    of its list and then failed: the engine counts those as delivered and
    retries (or, after ``max_retries``, dead-letters) only the rest, with the
    retry budget and backoff starting afresh when ``delivered > 0``. The
    message becomes the node's ``last_error``. Raise it ``from`` the
    original exception to keep the chain. With ``of_next_event=True`` the
    failure is the next event's alone, as for a handler of one event at a
    time: after ``max_retries`` only that event is dead-lettered, and the
    events after it, never attempted, are delivered next (without it the
    whole rest of the list is dead-lettered). A ``delivered`` that is not an
    int (a bool neither; int-like values such as numpy's are taken) raises
    TypeError, a negative one InvalidArgumentError."""

    def __init__(self, delivered: int, message: str = "", *, of_next_event: bool = False) -> None:
        """``delivered``: how many leading events of the list were handled;
        ``message``: the node's ``last_error`` (default "failed after N
        events"); ``of_next_event``: the failure is the next event's alone
        (see the class documentation)."""
        if isinstance(delivered, bool) or not hasattr(type(delivered), "__index__"):
            raise TypeError(f"delivered must be an int, got {type(delivered).__name__}")
        delivered = operator.index(delivered)
        if delivered < 0:
            raise InvalidArgumentError(f"delivered must be an int of at least 0, got {delivered!r}")
        super().__init__(message or f"failed after {delivered} events")
        #: How many leading events of the list were handled.
        self.delivered = delivered
        #: Whether the failure is the next event's alone.
        self.of_next_event = bool(of_next_event)
