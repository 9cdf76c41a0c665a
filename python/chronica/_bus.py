"""``chronica.EventBus``: the topic-centred facade (``on`` / ``off`` /
``emit`` / ``close``) over a :class:`chronica.Director`, written in Python.

Each subscription is a node ``bus.sub.<n>`` on the director. Handlers run on
the node's delivery threads and get one :class:`chronica.Event` per call
(``on_batch`` gives lists). A handler that raises is retried by the
subscription's retry policy from the failed event on (the dispatcher raises
:class:`chronica.PartialDeliveryError`, so events of the same batch already
handled count as delivered and are not handed again); after
``max_retries`` the failed event goes to ``dead_letter(event, text)`` and
the events after it are handed on.

The bus's list of subscriptions is Rust (``_BusList``, python/src/bus.rs,
over the Rust bus's own list, core/src/bus/list.rs): the director admits each subscription
under its membership lock unless a close came first, the node unlists it
as it is dropped (whatever ended it), and ``off`` / ``stats`` / ``close``
act on the node by uid and registration, never on one that took the uid
since (docs/BUS.md, "The Python bus's lifetime guarantees").
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import operator
import threading
from typing import Any, Callable, Dict, List, Optional

from . import _serializers
from ._aio import is_async
from ._chronica import (
    MAX_CAPACITY,
    MAX_CONCURRENCY,
    ClosedError,
    Director,
    DuplicateNodeError,
    Event,
    InvalidArgumentError,
    NodeStats,
    Retry,
    UnknownNodeError,
    _BusList,
    _drain_deadline_passed,
)
from ._partial import PartialDeliveryError


class _DrainEnded(PartialDeliveryError):
    """The subscription's drain reached its deadline (an ``off``'s or a
    close's) inside a list: the dispatcher stops there, and the rest of the
    list is what the drain left. Not a failure (``_interrupted``)."""

    _interrupted = True

    def __init__(self, delivered: int) -> None:
        super().__init__(delivered, "stopped at the drain's deadline")

_NUMBERS = itertools.count(1)
_LOCAL = threading.local()
# The largest lane capacity the engine takes (chronica::MAX_CAPACITY, 2**31 - 1),
# checked here so that the error names ``buffer``, not ``queue_capacity``.
MAX_BUFFER = MAX_CAPACITY
# Timeouts from here on do not fit the engine's Duration (seconds in a u64).
_MAX_SECONDS = 2.0**64


class DecodeError(InvalidArgumentError):
    """A payload does not decode, or not to the expected type; the message
    names the topic, the expected type and the content type."""


class SerializerMismatchError(DecodeError):
    """The event was encoded by another serializer than the decoding one
    (detected from the content type the event carries)."""


# Argument checks. The convention of the whole Python API (docs/PYTHON.md,
# "Errors"): a wrong type raises TypeError, a bad value InvalidArgumentError
# (a ValueError), each naming the argument; they run before anything
# changes, so a refused call leaves the bus as it was.


def _kind(value: Any) -> str:
    """The type name an error message gives for ``value``."""
    return type(value).__name__


def _real(what: str, value: Any) -> float:
    """``value`` as a float, with chronica.Retry's rules: a real number (not
    a str, even a numeric one, nor a bool) or TypeError; a number too large
    for a float is InvalidArgumentError. Both name ``what``."""
    kind = type(value)
    if isinstance(value, (str, bytes, bytearray, bool)) or not (hasattr(kind, "__float__") or hasattr(kind, "__index__")):
        raise TypeError(f"{what} must be a number, got {kind.__name__}")
    try:
        return float(value)
    except OverflowError:
        raise InvalidArgumentError(f"{what} is out of range for a float") from None
    except TypeError:  # a __float__ that refuses (complex before 3.10)
        raise TypeError(f"{what} must be a number, got {kind.__name__}") from None


def _seconds(name: str, value: Any) -> float:
    """A timeout as ``Director.close`` takes it: a number (TypeError
    otherwise), finite, at least 0 and below 2**64, which the engine's
    durations hold (InvalidArgumentError otherwise)."""
    seconds = _real(name, value)
    if not (math.isfinite(seconds) and seconds >= 0):
        raise InvalidArgumentError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    if seconds >= _MAX_SECONDS:
        raise InvalidArgumentError(f"{name} must be less than 2**64 seconds, got {value!r}")
    return seconds


def _count(name: str, value: Any, optional: bool = False) -> Any:
    """``value`` as a plain int, as ``Director.register`` takes its counts:
    an int or an int-like value (``__index__``, numpy's ints), not a bool
    (TypeError otherwise); None too when ``optional``. The range is the
    caller's to check."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name} must be an int{' or None' if optional else ''}, got {_kind(value)}")
    return operator.index(value)


def _subscription(value: Any) -> None:
    """TypeError unless ``value`` is a :class:`Subscription`."""
    if not isinstance(value, Subscription):
        raise TypeError(f"subscription must be a chronica.Subscription, got {_kind(value)}")


def _retry_number(settings: Dict[Any, Any], key: str, default: float) -> float:
    """``settings[key]`` (or ``default``) as a float (see ``_real``), errors
    naming the setting."""
    return _real(f"retry setting {key!r}", settings.get(key, default))


def _retry(retry: Any) -> Optional[Retry]:
    """A chronica.Retry from a Retry, a dict, or None. A setting of a wrong
    type raises TypeError, a bad value InvalidArgumentError, each naming
    the setting (the range of ``max_retries`` is checked by Retry, under
    the same name)."""
    if retry is None or isinstance(retry, Retry):
        return retry
    if not isinstance(retry, dict):
        raise TypeError(f"retry must be a chronica.Retry, a dict, or None, got {_kind(retry)}")
    known = {"backoff", "initial", "max", "multiplier", "jitter", "max_retries"}
    unknown = set(retry) - known
    if unknown:
        raise InvalidArgumentError(f"unknown retry settings: {sorted(unknown, key=repr)}")
    backoff = retry.get("backoff", "exponential")
    if not isinstance(backoff, str):
        raise TypeError(f"retry setting 'backoff' must be a str, got {_kind(backoff)}")
    initial = _retry_number(retry, "initial", 0.1)
    multiplier = _retry_number(retry, "multiplier", 2.0)
    maximum = _retry_number(retry, "max", 5.0)
    jitter = _retry_number(retry, "jitter", 0.1)
    max_retries = retry.get("max_retries")
    if max_retries is not None and (isinstance(max_retries, bool) or not hasattr(type(max_retries), "__index__")):
        raise TypeError(f"retry setting 'max_retries' must be an int or None, got {_kind(max_retries)}")
    if backoff == "constant":
        multiplier, maximum = 1.0, max(initial, maximum) if "max" in retry else initial
    elif backoff not in ("linear", "exponential"):
        raise InvalidArgumentError(f"backoff must be 'constant', 'linear' or 'exponential', got {backoff!r}")
    return Retry(
        initial=initial,
        max=maximum,
        multiplier=multiplier,
        jitter=jitter,
        max_retries=max_retries,
        backoff=backoff,
    )


_JSON = _serializers.JsonSerializer()


def _decode(serializer: Any, event: Event, expected_type: Optional[type] = None) -> Any:
    """``event``'s payload decoded by ``serializer`` (a resolved one); see
    :meth:`EventBus.decode` for the errors."""
    want = serializer.content_type
    found = event.content_type
    if found is not None and found != want:
        raise SerializerMismatchError(
            f"event on topic {event.topic!r} was encoded as {found!r} but is decoded as {want!r} "
            "(serializer mismatch between producer and consumer)"
        )
    expected = expected_type.__name__ if expected_type is not None else "a value"
    try:
        value = serializer.loads(event.payload)
    except Exception as e:
        raise DecodeError(f"event on topic {event.topic!r} does not decode as {expected} ({want}): {e}") from e
    if expected_type is not None and not isinstance(value, expected_type):
        raise DecodeError(
            f"event on topic {event.topic!r} does not decode as {expected} ({want}): "
            f"got {type(value).__name__}"
        )
    return value


def unmarshal(event: Event, serializer: Any = None) -> Any:
    """``Event.unmarshal(serializer)``: the payload decoded by ``serializer``
    (``"json"``, ``"msgpack"``, or an object with ``loads`` and ``dumps``),
    with the errors of :meth:`EventBus.decode`. Without one, like the Rust
    ``EventExt::unmarshal``: the built-in serializer the event's content
    type names, JSON when it has none, and :class:`DecodeError` for a
    content type no built-in serializer has."""
    if serializer is None:
        found = event.content_type
        if found is None or found == _serializers.JSON:
            serializer = _JSON
        elif found == _serializers.MSGPACK:
            serializer = _serializers.MsgpackSerializer()
        else:
            raise DecodeError(
                f"event on topic {event.topic!r} has content type {found!r}, which no built-in serializer "
                "decodes: pass serializer="
            )
    else:
        serializer = _serializers.resolve(serializer)
    return _decode(serializer, event)


class _Dispatch:
    """The node callback of one subscription (see the module docstring)."""

    def __init__(self, number: int, handler: Callable[..., Any], batch: bool):
        self.number = number
        self.handler = handler
        self.batch = batch

    def __call__(self, events: List[Event]) -> None:
        users = [e for e in events if e.kind == "user"]
        if not users:
            return
        outer = getattr(_LOCAL, "current", 0)
        _LOCAL.current = self.number
        try:
            if self.batch:
                self._call(users)
            else:
                self._each(events)
        finally:
            _LOCAL.current = outer

    def _each(self, events: List[Event]) -> None:
        # The engine retries from the failed event on: the ones before it
        # count as delivered and are not handed again.
        for i, event in enumerate(events):
            if _drain_deadline_passed():
                raise _DrainEnded(i)
            if event.kind != "user":
                continue
            try:
                self._call(event)
            except BaseException as e:
                raise PartialDeliveryError(i, _describe(e), of_next_event=True) from e

    def _call(self, arg: Any) -> None:
        """Calls the handler; one that returned an awaitable (a plain
        function wrapping an ``async def``, which ``on`` cannot see) did not
        handle anything: the bus runs no loop to await it. So that fails
        the call (retried, then dead-lettered), and a coroutine is closed
        unrun, without Python's "never awaited" RuntimeWarning."""
        result = self.handler(arg)
        if result is not None and inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if callable(close):
                close()
            raise TypeError(_RETURNED_AWAITABLE)


_RETURNED_AWAITABLE = (
    "the handler returned a coroutine (or another awaitable), which the bus never awaits: "
    "EventBus handlers are plain functions (use Director.register with loop= for async)"
)


def _describe(e: BaseException) -> str:
    """An exception as the engine words a callback's error: ``Type: text``."""
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _dead_letter_hook(handler: Callable[[Event, str], Any], uid: str, events: List[Event], text: str) -> None:
    """A subscription node's dead-letter hook: ``handler(event, text)`` for
    each user event given up on."""
    for e in events:
        if e.kind == "user":
            handler(e, text)


class Subscription:
    """A live subscription made by :meth:`EventBus.on`. Calling it calls the
    handler (so ``@bus.on(...)`` keeps the function usable)."""

    def __init__(self, uid: str, topic: str, group: Optional[str], handler: Callable[..., Any], number: int):
        """Made by :meth:`EventBus.on`, not by hosts: the node's ``uid``,
        the ``topic`` pattern, the consumer ``group`` (or None), the
        ``handler``, and the bus's number for the subscription."""
        self.uid = uid
        self.topic = topic
        self.group = group
        self.handler = handler
        self._number = number
        # Which registration of ``uid`` is this subscription's node, set
        # once the director has admitted it: the bus reads and ends only
        # that node, whatever holds the uid by then.
        self._registration = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the handler with these arguments and returns what it returns."""
        return self.handler(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Subscription(uid={self.uid!r}, topic={self.topic!r}, group={self.group!r})"


class EventBus:
    """Topic-centred facade over a :class:`Director`.

    ``EventBus(director=None, serializer="json", **director_options)``: with
    no director the bus makes one from ``director_options`` and closes it on
    :meth:`close`; with a director it shares it (with plain nodes and other
    buses) and closes only its own subscriptions.

    A ``director`` that is not a :class:`Director` (a ``Distributed``
    neither) or a ``serializer`` that is neither a name nor an object with
    ``dumps`` and ``loads`` raises TypeError, an unknown serializer name
    InvalidArgumentError; ``director_options`` are ``Director``'s, with
    its errors, and ``on_dead_letter`` is refused (give ``dead_letter=``
    to :meth:`on`).
    """

    def __init__(self, director: Optional[Director] = None, serializer: Any = "json", **director_options: Any):
        """Makes a bus over ``director``, or over a director of its own
        built from ``director_options``; see the class documentation for
        the arguments and the errors."""
        if director is not None and not isinstance(director, Director):
            raise TypeError(f"director must be a chronica.Director or None, got {_kind(director)}")
        self.serializer = _serializers.resolve(serializer)
        if director is not None:
            if director_options:
                raise InvalidArgumentError("director options are only for a bus that makes its own director")
            self.director, self._owned = director, False
        else:
            if "on_dead_letter" in director_options:
                raise InvalidArgumentError("give dead-letter handlers to on(..., dead_letter=...)")
            self.director = Director(**director_options)
            self._owned = True
        # The subscriptions and their stages, in Rust (python/src/bus.rs):
        # the director admits a subscription under its membership lock,
        # and a node unlists itself as it is dropped, neither running any
        # Python. A sharing bus's list, collected with the bus, ends the
        # subscriptions still live on a thread of its own (a bus that made
        # its director leaves that to the director, which closes itself).
        self._list = _BusList(None if self._owned else self.director)

    # -- subscriptions -------------------------------------------------

    def on(
        self,
        topic: str,
        handler: Optional[Callable[[Event], Any]] = None,
        *,
        group: Optional[str] = None,
        concurrency: int = 1,
        buffer: Optional[int] = None,
        retry: Any = None,
        dead_letter: Optional[Callable[[Event, str], Any]] = None,
    ) -> Any:
        """Subscribes ``handler(event)`` to ``topic`` (``*`` one segment,
        ``>`` the rest) and returns a :class:`Subscription`. Without a
        handler, returns a decorator that subscribes the function and
        returns the subscription. ``group`` makes the subscription a member
        of a consumer group, ``concurrency`` (1 to 64) runs that many calls
        at once, ``buffer`` (at least ``concurrency``) bounds the events
        waiting, ``dead_letter(event, text)`` gets the events given up on.
        ``retry`` is a :class:`chronica.Retry`, None, or a dict of Retry's
        arguments (``backoff``, ``initial``, ``max``, ``multiplier``,
        ``jitter``, ``max_retries``).

        An argument of a wrong type (a topic or group that is not a str, a
        handler or dead_letter that is not callable, a count that is not an
        int, a bool included, a ``retry`` setting of a wrong type) raises
        TypeError, a bad value (an empty or malformed topic, an empty group,
        a count out of range, ``buffer`` above 2**31 - 1 included, an
        ``async def`` handler) InvalidArgumentError; each names the
        argument, and a refused call registers nothing. A handler that
        returns an awaitable (a wrapped ``async def``) fails each call, as
        a raise does: the bus never awaits it."""
        opts = dict(group=group, concurrency=concurrency, buffer=buffer, retry=retry, dead_letter=dead_letter)
        if handler is None:
            return lambda fn: self._subscribe(topic, fn, False, **opts)
        return self._subscribe(topic, handler, False, **opts)

    def on_batch(
        self,
        topic: str,
        handler: Optional[Callable[[List[Event]], Any]] = None,
        *,
        group: Optional[str] = None,
        concurrency: int = 1,
        buffer: Optional[int] = None,
        retry: Any = None,
        dead_letter: Optional[Callable[[Event, str], Any]] = None,
    ) -> Any:
        """Like :meth:`on`, but the handler gets lists of events (a raise
        retries the whole list); the arguments and their errors are
        :meth:`on`'s."""
        opts = dict(group=group, concurrency=concurrency, buffer=buffer, retry=retry, dead_letter=dead_letter)
        if handler is None:
            return lambda fn: self._subscribe(topic, fn, True, **opts)
        return self._subscribe(topic, handler, True, **opts)

    def _subscribe(
        self,
        topic: str,
        handler: Callable[..., Any],
        batch: bool,
        *,
        group: Optional[str],
        concurrency: int,
        buffer: Optional[int],
        retry: Any,
        dead_letter: Optional[Callable[[Event, str], Any]],
    ) -> Subscription:
        self._check_open()
        # Every check comes before the first change (see "Argument checks").
        if not isinstance(topic, str):
            raise TypeError(f"topic must be a str, got {_kind(topic)}")
        if not topic:
            raise InvalidArgumentError("topic must be a non-empty pattern")
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {_kind(handler)}")
        if is_async(handler):
            # A callable, but one whose calls only make coroutines that
            # nothing would run: a bad value, as an async callback without
            # a loop is for Director.register.
            raise InvalidArgumentError("EventBus handlers are plain functions (use Director.register for async)")
        if group is not None:
            if not isinstance(group, str):
                raise TypeError(f"group must be a str or None, got {_kind(group)}")
            if not group:
                raise InvalidArgumentError("group must be a non-empty string or None")
        concurrency = _count("concurrency", concurrency)
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise InvalidArgumentError(f"concurrency must be an int from 1 to {MAX_CONCURRENCY}, got {concurrency!r}")
        buffer = _count("buffer", buffer, optional=True)
        if buffer is not None:
            if buffer < concurrency:
                raise InvalidArgumentError(f"buffer must be an int of at least the concurrency, got {buffer!r}")
            # Checked here, not left to register: its error would name
            # queue_capacity, which the caller never gave.
            if buffer > MAX_BUFFER:
                raise InvalidArgumentError(f"buffer must be an int of at most {MAX_BUFFER}, got {buffer!r}")
        if dead_letter is not None and not callable(dead_letter):
            raise TypeError(f"dead_letter must be callable or None, got {_kind(dead_letter)}")
        policy = _retry(retry)
        number = next(_NUMBERS)
        uid = f"bus.sub.{number}"
        dispatch = _Dispatch(number, handler, batch)
        # The node's own hook, holding the dead-letter handler but not the
        # bus: the fiber keeps its hook, and through the bus it would keep
        # an owned director too, a cycle that only the cycle collector
        # (not reference counting) would end.
        on_dead_letter = None
        if dead_letter is not None:
            on_dead_letter = functools.partial(_dead_letter_hook, dead_letter)
        while True:
            sub = Subscription(uid, topic, group, handler, number)
            # Listed before it registers; the director admits it under its
            # membership lock, or refuses it (ClosedError) once a close has
            # taken the list: a close either ends it or makes this call fail.
            try:
                sub._registration = self._list.register(
                    self.director,
                    number,
                    uid,
                    sub,
                    dispatch,
                    topic,
                    group,
                    concurrency,
                    policy,
                    buffer,
                    on_dead_letter,
                )
                return sub
            except DuplicateNodeError:
                # A plain node took this uid: take the next number for the
                # uid, as the Rust bus does (the subscription keeps its own
                # number, by which its handler knows it).
                uid = f"bus.sub.{next(_NUMBERS)}"

    def off(self, subscription: Subscription, timeout: float = 5.0) -> NodeStats:
        """Ends a subscription: its node leaves the routes at once (nothing
        emitted from then on reaches it), delivers what it holds until none
        is left or ``timeout`` seconds pass, and is unregistered; events
        still pending then go to another group member or are reported as
        dropped. Returns the node's final stats (those events counted as
        dropped, nothing pending). From inside its own handler it neither
        drains nor waits, and from inside another callback of the director
        it does not wait (the drain goes on); the stats are then those of
        the moment.

        Racing the bus's :meth:`close`, either this call ends the
        subscription or the close does, and this call then raises
        :class:`chronica.ClosedError` once it has: either way no call of
        the handler runs any more when it returns (except from inside a
        callback of the director, which cannot wait for them). A close of
        the bus that finds this call draining cuts the drain short at the
        close's own timeout, also one that comes just as the drain starts.
        A close of the director that begins while this call is ending the
        subscription ends it in this call's stead: the call returns the
        node's final stats once it has.

        A ``subscription`` that is not a :class:`Subscription` or a
        ``timeout`` that is not a number (a bool neither) raises TypeError,
        a negative, not finite or too large ``timeout`` (2**64 seconds or
        more, refused by ``Director.close`` too) InvalidArgumentError, both
        before anything changes; a subscription that is not (or no longer) one of this
        bus's raises :class:`chronica.UnknownNodeError`, changing nothing:
        also one whose node was unregistered straight on the director,
        even if another node has taken its uid since (that node is left
        alone). After a close of the bus or of its director it raises
        :class:`chronica.ClosedError`."""
        _subscription(subscription)
        timeout = _seconds("timeout", timeout)
        number = subscription._number
        # The Rust bus's off (core/src/bus/ending.rs): takes the subscription,
        # or waits for the call ending it; unregisters it draining, not from
        # inside its own handler; after a close of the director, waits for
        # it to end. UnknownNodeError: it was not this call's to end.
        drain = getattr(_LOCAL, "current", 0) != number
        try:
            return self._list.off(self.director, number, subscription.uid, timeout, drain)
        except UnknownNodeError:
            raise self._ended(subscription) from None

    def _ended(self, subscription: Subscription) -> Exception:
        """Why a subscription that this call does not end is no longer there."""
        if self._list.closed or self.director.closed:
            return ClosedError("event bus is closed")
        return UnknownNodeError(f"unknown node {subscription.uid!r}")

    def stats(self, subscription: Subscription) -> NodeStats:
        """The current stats of a subscription's node; after a close of the
        director, its final ones. TypeError for a ``subscription`` that is
        not a :class:`Subscription`; :class:`chronica.UnknownNodeError` once
        it has ended (by an ``off``, or an unregister of its uid straight on
        the director: a node that took the uid since is never read)."""
        _subscription(subscription)
        return self._list.stats(self.director, subscription._number, subscription.uid, subscription._registration)

    @property
    def subscriptions(self) -> List[Subscription]:
        """The live subscriptions, oldest first: not those ended, however
        (``off``, an unregister of the uid on the director, a close)."""
        return self._list.live()

    # -- emitting and decoding ----------------------------------------

    def emit(self, topic: str, payload: Any, key: Any = None) -> int:
        """Emits ``payload`` on ``topic``: bytes-like payloads go as they are
        (no content type); anything else is encoded by the bus's serializer
        and labelled with its content type. Returns the event id. A
        ``topic`` that is not a str raises TypeError before the payload is
        encoded, a ``key`` that is neither bytes-like nor a str TypeError,
        a payload the serializer refuses the serializer's error."""
        self._check_open()
        if not isinstance(topic, str):
            raise TypeError(f"topic must be a str, got {_kind(topic)}")
        if isinstance(payload, (bytes, bytearray, memoryview)):
            return self.director.emit(topic, bytes(payload), key=key)
        data = self.serializer.dumps(payload)
        return self.director.emit(topic, data, key=key, content_type=self.serializer.content_type)

    def decode(self, event: Event, expected_type: Optional[type] = None) -> Any:
        """Decodes an event's payload with the bus's serializer. Raises
        :class:`SerializerMismatchError` when the event carries another
        content type, :class:`DecodeError` when the payload does not decode
        (or not to ``expected_type``), TypeError when ``event`` is not an
        event (an object with an Event's ``topic``, ``payload`` and
        ``content_type``) or ``expected_type`` is neither a class nor None."""
        if not all(hasattr(event, name) for name in ("topic", "payload", "content_type")):
            raise TypeError(f"event must be a chronica.Event, got {_kind(event)}")
        if expected_type is not None and not isinstance(expected_type, type):
            raise TypeError(f"expected_type must be a type or None, got {_kind(expected_type)}")
        return _decode(self.serializer, event, expected_type)

    # -- lifetime ------------------------------------------------------

    def _check_open(self) -> None:
        if self._list.closed:
            raise ClosedError("event bus is closed")

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._list.closed

    def close(self, timeout: float = 5.0) -> int:
        """Closes the bus; returns the events left undelivered. A bus that
        made its director closes it; a sharing bus ends its subscriptions.
        ``timeout`` is checked as :meth:`off` checks it, before the bus
        changes: a refused close leaves it open.

        No subscription of the bus is left when it returns: an ``on``
        racing it either registers first, and the close ends it too, or
        raises ClosedError, having registered nothing; one that an ``off``
        is ending is waited for (except from inside a callback of the
        director, which cannot wait), its drain cut short at this close's
        ``timeout`` (what it leaves is in the ``off``'s stats, not in this
        result). From inside one of this bus's
        handlers it raises :class:`chronica.ReentrantError` and changes
        nothing, as the close would have to wait for that handler. Where
        Ctrl-C ends the wait of a bus's own director's close (see
        ``Director.close``), the bus is closed all the same."""
        self._check_open()
        timeout = _seconds("timeout", timeout)
        # Closes the list and takes every admitted subscription at once:
        # from here on an ``on`` is refused and an ``off`` waits for the
        # close to end its subscription.
        # Refused (ReentrantError, nothing changed) from inside one of this
        # bus's handlers, which the close would have to wait for.
        taken = self._list.close(getattr(_LOCAL, "current", 0))
        if self._owned:
            # The director's close ends every node it has admitted (which
            # unlists them as they are dropped). A refused one (from a
            # handler) gives the list back: the bus stays usable. One that
            # began (Ctrl-C ended its wait, and it goes on) does not: the
            # bus is closed with its director.
            try:
                return int(self.director.close(timeout=timeout))
            except BaseException:
                if not self.director.closed:
                    self._list.reopen([number for number, _, _ in taken])
                raise
        # The Rust bus's close: ends each (drained, but not the one whose
        # handler this thread runs) within ``timeout`` in all, then waits
        # for those an ``off`` (or a close of the director) is ending.
        return self._list.end_all(self.director, taken, timeout, getattr(_LOCAL, "current", 0))

    def __enter__(self) -> "EventBus":
        """Returns the bus itself; ``__exit__`` closes it."""
        return self

    def __exit__(self, *exc: Any) -> None:
        """Closes the bus (if still open) with the default timeout."""
        if not self.closed:
            self.close()

    def __repr__(self) -> str:
        return f"EventBus(serializer={self.serializer.content_type!r}, subscriptions={len(self.subscriptions)})"
