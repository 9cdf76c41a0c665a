"""Type stubs for the compiled part of chronica (re-exported by ``chronica``)."""

import asyncio
from types import TracebackType
from typing import Any, Awaitable, Callable, Iterable, List, Literal, Optional, Protocol, Tuple, Type, Union, final

__version__: str
#: The largest lane capacity (``queue_capacity``, the bus's ``buffer``) the engine takes.
MAX_CAPACITY: int
#: The most parallel handler calls one bus subscription may ask for.
MAX_CONCURRENCY: int
#: Messages one subscription of a Python adapter holds delivered but unread;
#: its ``deliver`` raises QueueFullError, taking nothing, while that many wait.
MQ_SUBSCRIPTION_CAPACITY: int
__all__ = [
    "BrokerError",
    "ChronicaError",
    "ClosedError",
    "Director",
    "Distributed",
    "DistributedStats",
    "DuplicateNodeError",
    "Event",
    "InvalidArgumentError",
    "MAX_CAPACITY",
    "MAX_CONCURRENCY",
    "MQ_SUBSCRIPTION_CAPACITY",
    "NodeStats",
    "QueueFullError",
    "ReentrantError",
    "ResourceError",
    "Retry",
    "UnknownNodeError",
    "__version__",
    "_BusList",
    "_close_all",
    "_close_all_distributed",
    "_drain_deadline_passed",
]

_Payload = Union[bytes, bytearray, memoryview, str, Any]
"""bytes-like (taken as is), str (UTF-8), or any JSON-serialisable object
(NaN and the infinities raise ValueError: JSON has no such numbers)."""
_Key = Union[bytes, bytearray, memoryview, str]
_Callback = Union[Callable[[List["Event"]], object], Callable[[List["Event"]], Awaitable[object]]]

class ChronicaError(Exception):
    """Base class of every Chronica error."""

class UnknownNodeError(ChronicaError):
    """The named source or target uid is not registered."""

class DuplicateNodeError(ChronicaError):
    """A node with this uid is already registered."""

class QueueFullError(ChronicaError):
    """Under the 'block' overflow policy a target lane stayed full: for block_timeout, or at once where that wait could never end. try_emit returns None instead."""

class ClosedError(ChronicaError):
    """The director or event bus is closed; only stats remain readable."""

class ReentrantError(ChronicaError):
    """The call cannot be made from inside one of the director's own callbacks (closing it)."""

class ResourceError(ChronicaError):
    """The system refused a resource the director needed (a thread, a runtime)."""

class BrokerError(ChronicaError):
    """The broker could not be reached, or refused or failed an operation."""

class InvalidArgumentError(ChronicaError, ValueError):
    """An argument is out of its allowed range (also a ValueError)."""

@final
class Retry:
    """How a node's failed batch is retried (times in seconds); ``initial``
    must be at least 1 ns (a zero delay would retry in a busy loop), and
    ``max_retries`` None (retry forever) or an int (0: no re-attempt,
    dead-lettered at the first failure; C and the hub read 0 as
    unlimited); a bool raises TypeError there and in ``initial``,
    ``max``, ``multiplier`` and ``jitter``."""

    @property
    def initial(self) -> float: ...
    @property
    def max(self) -> float: ...
    @property
    def multiplier(self) -> float: ...
    @property
    def jitter(self) -> float: ...
    @property
    def max_retries(self) -> Optional[int]: ...
    @property
    def backoff(self) -> str: ...
    def __new__(
        cls,
        initial: float = 0.1,
        max: float = 5.0,
        multiplier: float = 2.0,
        jitter: float = 0.1,
        max_retries: Optional[int] = None,
        backoff: str = "exponential",
    ) -> "Retry": ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class NodeStats:
    """A consistent snapshot of one node's counters."""

    @property
    def accepted(self) -> int: ...
    @property
    def delivered(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def dead_lettered(self) -> int: ...
    @property
    def pending(self) -> int: ...
    @property
    def retries(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def last_error(self) -> Optional[str]: ...
    @property
    def connected(self) -> bool: ...
    def balanced(self) -> bool:
        """True when accepted == delivered + dropped + dead_lettered + pending."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class Event:
    """One event as a node receives it. Immutable."""

    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> Literal["user", "root"]: ...
    @property
    def topic(self) -> str: ...
    @property
    def source(self) -> Optional[str]: ...
    @property
    def key(self) -> Optional[bytes]: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def trust_token(self) -> Optional[str]: ...
    @property
    def timestamp_ms(self) -> int: ...
    @property
    def content_type(self) -> Optional[str]: ...
    @property
    def is_root(self) -> bool: ...
    def json(self) -> Any:
        """The payload decoded as JSON, as ``unmarshal("json")`` decodes it
        (SerializerMismatchError for another content type, DecodeError
        naming the topic for a payload that is not JSON)."""
    def unmarshal(self, serializer: Any = None) -> Any:
        """The payload decoded by ``serializer`` ("json", "msgpack", or an
        object with dumps and loads; None: the built-in one the event's
        content type names, JSON when it has none); raises
        SerializerMismatchError or DecodeError like ``EventBus.decode``."""

@final
class Director:
    """The hub: registers nodes and routes events to them."""

    def __new__(
        cls,
        queue_capacity: int = 65536,
        root_capacity: int = 1024,
        batch_size: int = 64,
        overflow: Literal["drop_oldest", "drop_newest", "block"] = "drop_oldest",
        block_timeout: float = 1.0,
        trust_token: str = "",
        membership_events: bool = False,
        retry: Optional[Retry] = None,
        on_drop: Optional[Callable[[str, Event, str], object]] = None,
        on_dead_letter: Optional[Callable[[str, List[Event], str], object]] = None,
        on_error: Optional[Callable[[str, str], object]] = None,
    ) -> "Director": ...
    def register(
        self,
        uid: str,
        callback: _Callback,
        topics: Union[None, str, Iterable[str]] = None,
        group: Optional[str] = None,
        concurrency: int = 1,
        connected: bool = True,
        retry: Optional[Retry] = None,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        queue_capacity: Optional[int] = None,
        root_capacity: Optional[int] = None,
        overflow: Optional[Literal["drop_oldest", "drop_newest", "block"]] = None,
        on_dead_letter: Optional[Callable[[str, List[Event], str], object]] = None,
    ) -> None:
        """Registers node ``uid``. ``queue_capacity``, ``root_capacity`` and
        ``overflow`` are this node's own (None: the director's), refused
        as the director's are; a ``block`` node waits up to the director's
        ``block_timeout``."""
    def unregister(self, uid: str) -> None:
        """Removes a node; ``uid`` can be registered again at once.

        Returns after the node's last callback has finished, also from
        another node's callback, except where that wait could never end:
        from the node's own callback, from a callback the node waits for
        (two callbacks unregistering each other: the second does not
        wait), and on the thread running the asyncio loop of an ``async
        def`` node (from a coroutine or from its own callback). There it
        returns at once and the node is released right after its callback
        in flight finishes.

        On the main thread Ctrl-C ends the wait: KeyboardInterrupt is
        raised once the node is out of the routes, and the node is
        released when its callback returns."""
    def unregister_draining(self, uid: str, timeout: float = 5.0) -> NodeStats:
        """Removes a node after letting it deliver what it holds, for at
        most ``timeout`` seconds; returns its final counters (see
        ``Director.unregister_draining`` in docs/PYTHON.md). On the main
        thread Ctrl-C ends the wait, as in ``unregister``; the drain goes
        on."""
    def subscribe(self, uid: str, pattern: str) -> None:
        """Adds a topic pattern to a node's subscription."""
    def emit(
        self,
        topic: str,
        payload: _Payload,
        source: Optional[str] = None,
        key: Optional[_Key] = None,
        content_type: Optional[str] = None,
    ) -> int:
        """Broadcasts to every subscriber except the source; returns the event id."""
    def emit_many(
        self,
        topic: str,
        payloads: Iterable[_Payload],
        source: Optional[str] = None,
        key: Optional[_Key] = None,
        content_type: Optional[str] = None,
    ) -> range:
        """``emit`` of each payload in order, in one engine call; returns the
        consecutive ids. Every payload is converted first (a bad one raises
        naming its index, nothing emitted); all or nothing under ``block``."""
    def emit_to(
        self,
        target: str,
        topic: str,
        payload: _Payload,
        source: Optional[str] = None,
        key: Optional[_Key] = None,
        content_type: Optional[str] = None,
    ) -> int:
        """Sends to exactly ``target``; returns the event id."""
    def try_emit(
        self,
        topic: str,
        payload: _Payload,
        source: Optional[str] = None,
        key: Optional[_Key] = None,
        content_type: Optional[str] = None,
    ) -> Optional[int]:
        """``emit`` that never waits: None at once, the event reaching no node,
        where a target under the ``block`` policy is full; else the event id.
        Other refusals raise as ``emit`` does."""
    def try_emit_to(
        self,
        target: str,
        topic: str,
        payload: _Payload,
        source: Optional[str] = None,
        key: Optional[_Key] = None,
        content_type: Optional[str] = None,
    ) -> Optional[int]:
        """``emit_to`` that never waits: None at once when ``target`` is full
        under the ``block`` policy; else the event id."""
    def emit_root(
        self,
        action: str,
        payload: Optional[_Payload] = None,
        target: Optional[str] = None,
        content_type: Optional[str] = None,
    ) -> int:
        """Sends a root (control) event to every node or to ``target``;
        ``content_type`` labels the payload as for ``emit``."""
    def node_connected(self, uid: str) -> None:
        """Resumes delivery to a node."""
    def node_disconnected(self, uid: str) -> None:
        """Pauses delivery to a node."""
    def stats(self, uid: str) -> NodeStats:
        """A snapshot of a node's counters."""
    def nodes(self) -> List[str]:
        """The registered uids, sorted."""
    @property
    def trust_token(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def close(self, timeout: float = 5.0) -> int:
        """Drains, stops, and returns the number of events left undelivered.

        On the main thread Ctrl-C ends the wait for callbacks in flight:
        KeyboardInterrupt is raised once the director is closed to new
        calls, and the close goes on in the background (the interpreter's
        exit waits for it)."""
    def __enter__(self) -> "Director":
        """Returns the director itself; ``__exit__`` closes it."""
    def __exit__(
        self,
        _exc_type: Optional[Type[BaseException]] = None,
        _exc: Optional[BaseException] = None,
        _tb: Optional[TracebackType] = None,
    ) -> bool:
        """Closes the director (if still open) with the default timeout."""

@final
class _BusList:
    """Private to ``chronica._bus``: an EventBus's subscriptions, admitted
    by the director and unlisted by their nodes (python/src/bus.rs)."""

    def __new__(cls, shared: Optional[Director] = None) -> "_BusList": ...
    @property
    def closed(self) -> bool: ...
    def register(
        self,
        director: Director,
        number: int,
        uid: str,
        sub: Any,
        callback: Callable[[List[Event]], Any],
        topic: str,
        group: Optional[str],
        concurrency: int,
        retry: Optional[Retry],
        queue_capacity: Optional[int],
        on_dead_letter: Optional[Callable[[str, List[Event], str], Any]],
    ) -> int: ...
    def off(self, director: Director, number: int, uid: str, timeout: float, drain: bool) -> NodeStats: ...
    def close(self, in_handler_of: int) -> List[Tuple[int, str, int]]: ...
    def reopen(self, numbers: List[int]) -> None: ...
    def end_all(self, director: Director, taken: List[Tuple[int, str, int]], timeout: float, current: int) -> int: ...
    def live(self) -> List[Any]: ...
    def stats(self, director: Director, number: int, uid: str, registration: int) -> NodeStats: ...

def _close_all(timeout: float = 2.0) -> int:
    """Closes every director still open and waits for the closes already
    under way (run by atexit)."""

def _drain_deadline_passed() -> bool:
    """True inside a bus subscription's handler once its drain's deadline
    (an ``off``'s or a close's) has passed."""

@final
class DistributedStats:
    """A snapshot of the distributed layer's counters."""

    @property
    def published(self) -> int: ...
    @property
    def publish_retries(self) -> int: ...
    @property
    def buffered(self) -> int: ...
    @property
    def buffer_dropped(self) -> int: ...
    @property
    def received(self) -> int: ...
    @property
    def injected(self) -> int: ...
    @property
    def duplicates(self) -> int: ...
    @property
    def foreign(self) -> int: ...
    @property
    def malformed(self) -> int: ...
    @property
    def dead_lettered(self) -> int: ...
    @property
    def rejected_unsigned(self) -> int: ...
    @property
    def rejected_forged(self) -> int: ...
    @property
    def rejected_stale(self) -> int: ...
    @property
    def broker_errors(self) -> int: ...
    @property
    def resubscribes(self) -> int: ...
    @property
    def group_sender_only(self) -> int: ...
    @property
    def publish_rejected(self) -> int: ...
    @property
    def unicast_not_here(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...

class _Deliver(Protocol):
    """Hands one received message to the layer, with the broker's timestamp
    (ms since the Unix epoch) if it has one. Never blocks: raises
    QueueFullError, taking nothing, while ``MQ_SUBSCRIPTION_CAPACITY``
    messages of the subscription wait unread, and ClosedError once the
    subscription ended. ``timestamp_ms`` is the broker's (ms since the Unix
    epoch); None or a negative one stamps the message on receipt."""

    def __call__(
        self,
        topic: str,
        value: _Payload,
        key: Optional[_Key] = None,
        headers: Optional[List[Tuple[str, str]]] = None,
        token: object = None,
        timestamp_ms: Optional[int] = None,
    ) -> None: ...

class _Adapter(Protocol):
    """A broker adapter written in Python (see ``Distributed``). It may also
    have ``release(token)``: a delivered message handed back unhandled,
    because the instance is leaving the subscription's group (give it to
    another subscriber of the group and stop delivering to this one). A
    ``publish`` that also takes a ``timestamp_ms`` keyword (or
    ``**kwargs``) gets the message's timestamp (ms since the Unix epoch)."""

    def publish(self, topic: str, value: bytes, key: Optional[bytes], headers: List[Tuple[str, str]]) -> object: ...
    def subscribe(self, pattern: str, group: str, deliver: _Deliver) -> object: ...
    def ack(self, token: Any) -> object: ...
    def close(self) -> object: ...

@final
class Distributed:
    """A director joined to a fabric of directors in other processes through a broker."""

    def __new__(
        cls,
        url: Union[str, _Adapter],
        instance_id: Optional[str] = None,
        topic_prefix: str = "chronica",
        ack_mode: Literal["enqueue", "delivery"] = "enqueue",
        dedup_window: float = 300.0,
        dedup_capacity: int = 1000000,
        outbox_capacity: int = 65536,
        max_in_flight: int = 4096,
        content_type: Optional[str] = None,
        foreign_topics: Union[None, str, Iterable[str]] = None,
        connect_timeout: float = 10.0,
        root_max_age: Optional[float] = None,
        group_watch_interval: float = 0.25,
        queue_capacity: int = 65536,
        root_capacity: int = 1024,
        batch_size: int = 64,
        overflow: Literal["drop_oldest", "drop_newest", "block"] = "drop_oldest",
        block_timeout: float = 1.0,
        trust_token: str = "",
        membership_events: bool = False,
        retry: Optional[Retry] = None,
        on_drop: Optional[Callable[[str, Event, str], object]] = None,
        on_dead_letter: Optional[Callable[[str, List[Event], str], object]] = None,
        on_error: Optional[Callable[[str, str], object]] = None,
    ) -> "Distributed": ...
    def register(
        self,
        uid: str,
        callback: _Callback,
        topics: Union[None, str, Iterable[str]] = None,
        group: Optional[str] = None,
        concurrency: int = 1,
        connected: bool = True,
        retry: Optional[Retry] = None,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        queue_capacity: Optional[int] = None,
        root_capacity: Optional[int] = None,
        overflow: Optional[Literal["drop_oldest", "drop_newest", "block"]] = None,
        on_dead_letter: Optional[Callable[[str, List[Event], str], object]] = None,
    ) -> None:
        """Registers local node ``uid``; a group is also joined on the broker."""
    def unregister(self, uid: str) -> None:
        """Removes a local node (see ``Director.unregister``: it does not
        wait on the thread running an ``async def`` node's loop, and
        Ctrl-C ends its wait on the main thread)."""
    def unregister_draining(self, uid: str, timeout: float = 5.0) -> NodeStats:
        """Removes a local node after letting it deliver what it holds (see
        ``Director.unregister_draining``)."""
    def subscribe(self, uid: str, pattern: str) -> None:
        """Adds a topic pattern to a local node's subscription."""
    def join_group(self, group: str) -> None:
        """Joins consumer ``group`` on the broker now (left again within
        ``group_watch_interval`` while the group has no member here); an
        empty ``group`` raises InvalidArgumentError and joins nothing."""
    def emit(
        self,
        topic: str,
        payload: _Payload,
        source: Optional[str] = None,
        key: Optional[_Key] = None,
        content_type: Optional[str] = None,
    ) -> int:
        """Broadcasts to every matching node of every instance; returns the wire id."""
    def emit_to(
        self,
        target: str,
        topic: str,
        payload: _Payload,
        source: Optional[str] = None,
        key: Optional[_Key] = None,
        content_type: Optional[str] = None,
    ) -> int:
        """Sends to node ``target`` wherever it lives."""
    def try_emit(
        self,
        topic: str,
        payload: _Payload,
        source: Optional[str] = None,
        key: Optional[_Key] = None,
        content_type: Optional[str] = None,
    ) -> Optional[int]:
        """``emit`` that never waits: None at once, the event reaching no node
        and not published, where a local node under the ``block`` policy is
        full; else the wire id. Other refusals raise as ``emit`` does."""
    def try_emit_to(
        self,
        target: str,
        topic: str,
        payload: _Payload,
        source: Optional[str] = None,
        key: Optional[_Key] = None,
        content_type: Optional[str] = None,
    ) -> Optional[int]:
        """``emit_to`` that never waits: None at once when ``target`` is a local
        node full under the ``block`` policy; else the event or wire id."""
    def emit_root(
        self,
        action: str,
        payload: Optional[_Payload] = None,
        target: Optional[str] = None,
        content_type: Optional[str] = None,
    ) -> int:
        """Sends a signed root event to every node of every instance or to
        ``target``; ``content_type`` labels the payload (signed with it)."""
    def node_connected(self, uid: str) -> None:
        """Resumes delivery to a local node."""
    def node_disconnected(self, uid: str) -> None:
        """Pauses delivery to a local node."""
    def stats(self) -> DistributedStats:
        """A snapshot of the distributed layer's counters."""
    def node_stats(self, uid: str) -> NodeStats:
        """A snapshot of a local node's counters."""
    def nodes(self) -> List[str]:
        """The local registered uids, sorted."""
    def flush(self, timeout: float = 5.0) -> bool:
        """Waits until every emit so far reached the broker; a close ends the wait."""
    @property
    def instance_id(self) -> str: ...
    @property
    def trust_token(self) -> str: ...
    @property
    def closed(self) -> bool:
        """True once ``close`` has begun (its fabric phase included)."""
    def close(self, timeout: float = 5.0) -> int:
        """Leaves the fabric, closes the director; returns unpublished + undelivered events.

        One ``timeout`` bounds both: the director drains for what the
        fabric's phase left of it (plus the second a publish stuck at the
        deadline is waited for, so that it is counted).

        Raises ClosedError once a close has begun (during another one's
        fabric phase too), ReentrantError from inside a Python adapter's method. On
        the main thread Ctrl-C ends the wait, as in ``Director.close``, in
        the fabric phase too: KeyboardInterrupt is raised once the fabric's
        close has begun, and the close goes on in the background."""
    def __enter__(self) -> "Distributed":
        """Returns the instance itself; ``__exit__`` closes it."""
    def __exit__(
        self,
        _exc_type: Optional[Type[BaseException]] = None,
        _exc: Optional[BaseException] = None,
        _tb: Optional[TracebackType] = None,
    ) -> bool:
        """Closes the instance (if still open) with the default timeout."""

def _close_all_distributed(timeout: float = 2.0) -> int:
    """Closes every distributed instance still open and waits for the closes
    already under way (run by atexit)."""
