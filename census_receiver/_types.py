"""Type aliases shared by the core and the adapters; nothing here runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from .events import Event
    from .runs import RunRecord

__all__ = [
    "ASGIApp",
    "Body",
    "ErrorHook",
    "Handler",
    "HeaderPairs",
    "Headers",
    "Message",
    "Receive",
    "RunHook",
    "Scope",
    "Secret",
    "Send",
]

#: A secret as users give it: ``str`` (used as its UTF-8 bytes) or ``bytes``.
Secret: TypeAlias = "str | bytes"

#: A raw request body; hashed in place, never copied.
Body: TypeAlias = "bytes | bytearray | memoryview"

#: Header name/value pairs, ``str`` or ``bytes`` (ASGI's ``scope["headers"]`` as is).
HeaderPairs: TypeAlias = "Iterable[tuple[str, str]] | Iterable[tuple[bytes, bytes]]"

#: What the core accepts as headers: any mapping, or name/value pairs. Names match
#: case-insensitively; a mapping with ``getlist`` (Starlette, Werkzeug) is asked for
#: every value of the signature header, so repeated headers are seen.
Headers: TypeAlias = "Mapping[str, str] | HeaderPairs"

#: A handler takes the verified event; it may be ``async def``.
Handler: TypeAlias = "Callable[[Event], object]"

#: Called with the exception and the event when a handler fails; may be ``async def``.
ErrorHook: TypeAlias = "Callable[[BaseException, Event], object]"

#: Called with a sync run (finished, or overdue); may be ``async def``.
RunHook: TypeAlias = "Callable[[RunRecord], object]"

# ASGI, as in starlette/types.py, so no adapter needs Starlette itself.
Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
