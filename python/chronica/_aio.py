"""Running ``async def`` callbacks on an asyncio loop (internal).

The engine calls node callbacks on its own delivery threads. For a coroutine
function, the delivery thread submits the coroutine to the host's loop with
:func:`asyncio.run_coroutine_threadsafe` and waits for its result (waiting
releases the GIL), so order and retry work as for plain callbacks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import time
from typing import Any, Callable, Coroutine, List, Optional, Tuple

from ._chronica import InvalidArgumentError


class Closing:
    """Set when the director starts closing, so waits on a loop that will
    never run the coroutine (for instance the thread blocked in ``close``)
    end at the close deadline instead of hanging."""

    def __init__(self) -> None:
        self.deadline: Optional[float] = None

    def begin(self, timeout: float) -> None:
        """Marks the start of ``close(timeout)``."""
        self.deadline = time.monotonic() + timeout


def is_async(callback: Any) -> bool:
    """True for a coroutine function or an object whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
        getattr(callback, "__call__", None)
    )


def check_loop(loop: Any) -> None:
    """TypeError unless ``loop`` is None or an asyncio event loop, and
    :class:`chronica.InvalidArgumentError` for a closed one, which would
    never run a coroutine (every batch failed, retried forever); register
    checks ``loop=`` with it for every callback, a plain one too (which
    does not use it)."""
    if loop is None:
        return
    if not isinstance(loop, asyncio.AbstractEventLoop):
        raise TypeError(f"loop must be an asyncio event loop or None, got {type(loop).__name__}")
    if loop.is_closed():
        raise InvalidArgumentError("loop is closed: it would never run an async callback")


def adapt(
    callback: Callable[[List[Any]], Coroutine[Any, Any, Any]],
    loop: Optional[asyncio.AbstractEventLoop],
    closing: Closing,
) -> Tuple[Callable[[List[Any]], Any], asyncio.AbstractEventLoop]:
    """A plain callable that runs ``callback(events)`` on ``loop`` (or the
    loop running now) and returns or raises what the coroutine did, and
    that loop (``unregister`` on the thread running it must not wait for
    the callable). Raises :class:`chronica.InvalidArgumentError` when there
    is no loop to run on."""
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise InvalidArgumentError(
                "an async callback needs loop= or a running asyncio loop at register()"
            ) from None
    check_loop(loop)
    target = loop

    def call(events: List[Any]) -> Any:
        if target.is_closed():
            raise RuntimeError("the asyncio loop of this async callback is closed")
        future: "concurrent.futures.Future[Any]" = asyncio.run_coroutine_threadsafe(callback(events), target)
        while True:
            try:
                return future.result(timeout=0.05)
            except concurrent.futures.TimeoutError:
                if target.is_closed():
                    # Nothing will ever run the coroutine: fail the batch so
                    # that retry and dead-lettering apply.
                    future.cancel()
                    raise RuntimeError("the asyncio loop of this async callback closed") from None
                deadline = closing.deadline
                if deadline is not None and time.monotonic() >= deadline:
                    future.cancel()
                    raise TimeoutError("director closed while the async callback was running")

    call.__wrapped__ = callback  # type: ignore[attr-defined]
    return call, target
