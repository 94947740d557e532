"""Helpers shared by the test modules: waiting, a clock, a secret to watch, ASGI requests by hand.

The ASGI aliases are spelled out here, as in ``starlette/types.py``, so tests
need neither Starlette nor the package's private modules to type an app. A
hand-driven request is a ``scope`` (``http_scope``) and a ``Channel`` whose
``receive`` hands out the body messages, then ``http.disconnect``, and whose
``send`` records the answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any, TypeAlias

__all__ = [
    "DISGUISED",
    "SENTINEL",
    "WAIT",
    "ASGIApp",
    "Channel",
    "Clock",
    "Disguised",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "body_messages",
    "http_scope",
    "run_asgi",
    "wait_for",
]

WAIT = 10.0  # seconds any wait in the tests may take before it counts as a failure

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

#: A secret that no error message may carry, whatever is wrong with a setting.
SENTINEL = "whsec_SENTINEL_must_not_leak"


class Disguised:
    """An object whose repr is a secret: messages must not call repr on a bad value."""

    def __repr__(self) -> str:
        return SENTINEL

    __str__ = __repr__


#: One, typed Any: it is passed where it is deliberately the wrong type.
DISGUISED: Any = Disguised()


class Clock:
    """Epoch seconds that only move when the test says so (``clock.now += 60``)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def wait_for(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def http_scope(
    path: str = "/webhooks/census",
    *,
    method: str = "POST",
    headers: Iterable[tuple[str, str]] | Iterable[tuple[bytes, bytes]] = (),
    root_path: str = "",
) -> Scope:
    """An HTTP scope as a server builds it; ``str`` header names are lower-cased, bytes kept."""
    raw = [
        (k.lower().encode("latin-1"), v.encode("latin-1"))
        if isinstance(k, str) and isinstance(v, str)
        else (k, v)
        for k, v in headers
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def body_messages(body: bytes, size: int = 500) -> list[Message]:
    """``body`` as ``http.request`` messages of ``size`` bytes (one empty one for no body)."""
    pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    return [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]


class Channel:
    """receive/send of one request: hands out ``messages``, then ``http.disconnect``."""

    def __init__(self, messages: Iterable[Message] = ()) -> None:
        self.pending: Iterator[Message] = iter(messages)
        self.received = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        self.received += 1
        return next(self.pending, {"type": "http.disconnect"})

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        return self.sent[0]["status"] if self.sent else None

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


def run_asgi(app: Any, scope: Scope, channel: Channel) -> Channel:
    """Run ``app`` on one request in a fresh event loop; the channel, with what was sent."""
    asyncio.run(asyncio.wait_for(app(scope, channel.receive, channel.send), WAIT))
    return channel
