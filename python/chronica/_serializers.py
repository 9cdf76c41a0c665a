"""Payload serializers of :class:`chronica.EventBus`: ``"json"`` (default),
``"msgpack"`` (the ``msgpack`` package, an optional dependency), or any
object with ``dumps(obj) -> bytes | str`` and ``loads(bytes) -> obj``
(optionally a ``content_type`` attribute)."""

from __future__ import annotations

import json
import types
from typing import Any

from ._chronica import InvalidArgumentError

JSON = "application/json"
MSGPACK = "application/msgpack"

# NaN and the infinities raise ValueError: json.dumps wrote them as NaN and
# Infinity by default, which is not JSON (RFC 8259). One encoder, made once.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


class JsonSerializer:
    """JSON through the standard library (``application/json``). NaN and
    the infinities raise ValueError: JSON has no such numbers."""

    content_type = JSON

    def dumps(self, obj: Any) -> bytes:
        return _ENCODER.encode(obj).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


class MsgpackSerializer:
    """MessagePack through the ``msgpack`` package (``application/msgpack``);
    reads what the Rust ``MessagePack`` serializer writes (maps with names)."""

    content_type = MSGPACK

    def __init__(self) -> None:
        try:
            import msgpack  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError('serializer="msgpack" needs the msgpack package: pip install msgpack') from e
        self._msgpack = msgpack

    def dumps(self, obj: Any) -> bytes:
        return bytes(self._msgpack.packb(obj, use_bin_type=True))

    def loads(self, data: bytes) -> Any:
        return self._msgpack.unpackb(data, raw=False)


def _content_type(obj: Any) -> str:
    """The label of a custom serializer without ``content_type``: named
    after its class, or, for a module (``serializer=pickle``), after the
    module, since every module's class is ``module`` and two different
    modules must not look alike; the standard ``json`` module writes JSON,
    so it is ``application/json``, as the ``"json"`` serializer is."""
    if isinstance(obj, types.ModuleType):
        return JSON if obj is json else f"application/x-{obj.__name__.lower()}"
    return f"application/x-{type(obj).__name__.lower()}"


class _Custom:
    """Adapts a user object with ``dumps`` / ``loads``."""

    def __init__(self, obj: Any) -> None:
        self._obj = obj
        self.content_type = str(getattr(obj, "content_type", _content_type(obj)))

    def dumps(self, value: Any) -> bytes:
        out = self._obj.dumps(value)
        return out.encode() if isinstance(out, str) else bytes(out)

    def loads(self, data: bytes) -> Any:
        return self._obj.loads(data)


def resolve(serializer: Any) -> Any:
    """The serializer object for ``"json"``, ``"msgpack"`` or a custom object.
    Raises :class:`chronica.InvalidArgumentError` for another name and
    ``TypeError`` for anything else without ``dumps`` and ``loads``."""
    if serializer is None or serializer == "json":
        return JsonSerializer()
    if serializer == "msgpack":
        return MsgpackSerializer()
    if isinstance(serializer, str):
        raise InvalidArgumentError(f'unknown serializer {serializer!r}: use "json", "msgpack" or an object with dumps/loads')
    if not (callable(getattr(serializer, "dumps", None)) and callable(getattr(serializer, "loads", None))):
        raise TypeError(
            'serializer must be "json", "msgpack" or an object with callable dumps() and loads() methods, '
            f"got {type(serializer).__name__}"
        )
    return _Custom(serializer)
