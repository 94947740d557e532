"""Slow, endless and oversized request bodies against real uvicorn and Werkzeug servers.

Raw sockets on 127.0.0.1: the ASGI middleware under uvicorn and the WSGI
middleware under Werkzeug's server keep at most ``limit + 1`` bytes of a body,
drop a bounded amount more, and answer 413 without the receiver verifying or
parsing anything. What the core was handed is seen through ``triage``, the
public step every adapter calls; what the server passed on, by wrapping the
ASGI ``receive``.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from census_receiver import Event, WebhookReceiver
from census_receiver.bodies import DRAIN_LIMIT
from census_receiver.starlette import CensusWebhookMiddleware
from census_receiver.testing import make_body, sign
from census_receiver.wsgi import CensusWebhookMiddleware as WSGIMiddleware
from tests.adapter_contract import PATH, WAIT, unreachable_asgi, unreachable_wsgi
from tests.conftest import SECRET
from tests.integration.conftest import Served, read_response
from tests.support import Message, Receive, Scope, Send

LIMIT = 64 * 1024
SIG = sign(make_body("sync.failed"), SECRET)


class RecordingReceiver(WebhookReceiver):
    """Remembers the size of each body an adapter hands to the core."""

    def __init__(self) -> None:
        super().__init__(secret=SECRET, max_body_size=LIMIT)
        self.sizes: list[int] = []
        self.handled: list[Event] = []
        self.on("*")(self.handled.append)

    def triage(self, body: Any, headers: Any = None, **options: Any) -> Any:
        self.sizes.append(len(body))
        return super().triage(body, headers, **options)


def counting(app: Any, pulled: list[int]) -> Any:
    """Wrap an ASGI app to count the body bytes it pulls from the server."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            pulled.append(len(message.get("body", b"")))
            return message

        await app(scope, counted, send)

    return wrapped


@dataclass
class RealServer:
    served: Served
    receiver: RecordingReceiver
    pulled: list[int]  # body bytes per receive() (uvicorn only)

    def refused_unread(self) -> None:
        """Every delivery was answered 413 by its size: never verified, parsed or handled."""
        reasons = {reason for (_, reason) in self.receiver.stats.counts()}
        assert reasons <= {"payload_too_large"}
        assert self.receiver.handled == []


@pytest.fixture(params=["uvicorn", "werkzeug"])
def real_server(
    request: pytest.FixtureRequest,
    uvicorn_server: Callable[[Any], Served],
    werkzeug_server: Callable[[Any], Served],
) -> Iterator[RealServer]:
    receiver = RecordingReceiver()
    pulled: list[int] = []
    if request.param == "uvicorn":
        app = CensusWebhookMiddleware(unreachable_asgi, receiver=receiver)
        served = uvicorn_server(counting(app, pulled))
    else:
        served = werkzeug_server(WSGIMiddleware(unreachable_wsgi, receiver=receiver))
    yield RealServer(served, receiver, pulled)
    receiver.close()


def _head(served: Served, framing: str) -> bytes:
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: {served.host}:{served.port}\r\n"
        f"X-Signature: {SIG}\r\n{framing}\r\n\r\n"
    ).encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_slow_chunked_client_makes_the_app_keep_at_most_the_limit(real_server: RealServer) -> None:
    # 1 KiB at a time, four times the limit, no Content-Length: the server reads it
    # piece by piece; the adapter keeps limit + 1 bytes, drops the rest, answers 413.
    served = real_server.served
    with socket.create_connection((served.host, served.port), timeout=WAIT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(_head(served, "Transfer-Encoding: chunked"))
        for _ in range(4 * LIMIT // 1024):
            sock.sendall(_chunk(b"x" * 1024))
        sock.sendall(b"0\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == 413 and b"larger than 65536 bytes" in body
    assert real_server.receiver.sizes == [LIMIT + 1]
    real_server.refused_unread()
    if real_server.pulled:  # uvicorn: every byte was read from the socket, and dropped
        assert sum(real_server.pulled) == 4 * LIMIT


def test_endless_client_is_answered_413_without_the_app_holding_its_body(
    real_server: RealServer,
) -> None:
    # The client never ends its body. The adapter stops keeping bytes at the limit,
    # reads and drops a bounded amount more, then answers while the client still sends.
    served = real_server.served
    piece = _chunk(b"y" * 65536)
    sent = 0
    with socket.create_connection((served.host, served.port), timeout=WAIT) as sock:
        sock.sendall(_head(served, "Transfer-Encoding: chunked"))
        try:
            while sent < 4 * DRAIN_LIMIT and not select.select([sock], [], [], 0)[0]:
                sock.sendall(piece)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending
        status, _, _ = read_response(sock)
    assert status == 413
    assert sent < 4 * DRAIN_LIMIT  # answered before the client ran out of patience
    if real_server.pulled:
        # uvicorn: the middleware read the limit and its bounded drain, each
        # overshot by at most one message of whatever size the server passed on.
        largest = max(real_server.pulled)
        assert sum(real_server.pulled) <= LIMIT + DRAIN_LIMIT + 2 * largest
    assert real_server.receiver.sizes == [LIMIT + 1]
    real_server.refused_unread()


def test_declared_huge_body_is_refused_before_any_byte_is_read(real_server: RealServer) -> None:
    served = real_server.served
    with socket.create_connection((served.host, served.port), timeout=WAIT) as sock:
        sock.sendall(_head(served, "Content-Length: 100000000"))  # and not one body byte
        status, headers, _ = read_response(sock)
    assert status == 413 and headers["content-type"] == "application/json"
    assert real_server.receiver.sizes == [] and sum(real_server.pulled) == 0
    assert real_server.receiver.stats.count(reason="payload_too_large") == 1
    real_server.refused_unread()
