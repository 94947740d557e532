"""bodies.py: reading a request body within the size limit, from ASGI and from WSGI."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from census_receiver.bodies import DRAIN_LIMIT, BoundedBody, read_asgi_body, read_wsgi_body

from .support import Message

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

LIMIT = 100

# -- BoundedBody -------------------------------------------------------------------------------


def test_bounded_body_keeps_a_body_within_the_limit_whole() -> None:
    body = BoundedBody(LIMIT)
    assert body.add(b"a" * 60) and body.add(b"b" * 40)
    assert body.value() == b"a" * 60 + b"b" * 40
    assert body.size == LIMIT


def test_bounded_body_keeps_limit_plus_one_bytes_of_a_larger_body() -> None:
    body = BoundedBody(LIMIT)
    for piece in (b"a" * 70, b"b" * 70, b"c" * 70):
        assert body.add(piece)
    assert body.value() == b"a" * 70 + b"b" * 31  # enough to tell it is too big
    assert body.size == 210  # every byte seen is counted, kept or not


def test_bounded_body_says_stop_past_the_drain_limit() -> None:
    body = BoundedBody(LIMIT)
    assert body.add(b"x" * (LIMIT + DRAIN_LIMIT))  # exactly at the bound: go on
    assert not body.add(b"x")
    assert len(body.value()) == LIMIT + 1


def test_bounded_body_of_nothing_is_empty() -> None:
    body = BoundedBody(LIMIT)
    assert body.add(b"")
    assert (body.value(), body.size) == (b"", 0)


# -- read_asgi_body ----------------------------------------------------------------------------


def _read_asgi(messages: Iterable[Message], limit: int = LIMIT) -> tuple[bytes | None, int]:
    """Read with ``read_asgi_body``; the body and how many messages were received."""
    pending = iter(messages)
    first = next(pending)
    received = 1

    async def receive() -> Message:
        nonlocal received
        received += 1
        return next(pending)

    body = asyncio.run(read_asgi_body(receive, limit, first))
    return body, received


def _request(body: bytes, more: bool = False) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


def test_asgi_body_in_one_message() -> None:
    assert _read_asgi([_request(b"whole")]) == (b"whole", 1)


def test_asgi_body_in_one_message_over_the_limit_is_cut() -> None:
    assert _read_asgi([_request(b"x" * (LIMIT + 50))]) == (b"x" * (LIMIT + 1), 1)


def test_asgi_body_in_several_messages_is_joined() -> None:
    messages = [
        _request(b"one ", True),
        _request(b"", True),
        _request(b"two ", True),
        _request(b"3"),
    ]
    assert _read_asgi(messages) == (b"one two 3", 4)


def test_asgi_message_without_body_or_more_body_keys_is_empty() -> None:
    assert _read_asgi([{"type": "http.request"}]) == (b"", 1)


@pytest.mark.parametrize("before", [0, 1, 3])
def test_asgi_disconnect_gives_none(before: int) -> None:
    messages = [_request(b"part", True)] * before + [{"type": "http.disconnect"}]
    assert _read_asgi(messages) == (None, before + 1)


def test_asgi_body_over_the_limit_is_read_to_its_end_and_cut() -> None:
    messages = [_request(b"x" * 60, True)] * 4 + [_request(b"y" * 60)]
    body, received = _read_asgi(messages)
    assert body == b"x" * (LIMIT + 1)
    assert received == 5  # drained, so the answer goes out on a connection in step


def test_asgi_endless_body_stops_past_the_drain_limit() -> None:
    chunk = b"z" * 1_048_576

    def endless() -> Iterator[Message]:
        while True:
            yield _request(chunk, True)

    body, received = _read_asgi(endless())
    assert body == b"z" * (LIMIT + 1)
    assert received == (LIMIT + DRAIN_LIMIT) // len(chunk) + 1


# -- read_wsgi_body ----------------------------------------------------------------------------


class Chunks(io.RawIOBase):
    """A stream handing out at most ``size`` bytes per read, counting what was read."""

    def __init__(self, data: bytes, size: int = 7) -> None:
        self.data = data
        self.size = size
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.size, len(self.data) - self.read_bytes)
        buffer[:n] = self.data[self.read_bytes : self.read_bytes + n]
        self.read_bytes += n
        return n


class Untouchable(io.RawIOBase):
    """A stream that must not be read: its end cannot be known."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise AssertionError("read a stream with no length that the server does not end")


class Reset(io.RawIOBase):
    """A connection that breaks on the first read."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise ConnectionResetError("connection reset by peer")


def environ(stream: Any, length: str | None = None, *, terminated: bool = False) -> WSGIEnvironment:
    env: dict[str, Any] = {"wsgi.input": stream}
    if length is not None:
        env["CONTENT_LENGTH"] = length
    if terminated:
        env["wsgi.input_terminated"] = True
    return env


def test_wsgi_reads_exactly_the_declared_length() -> None:
    stream = io.BytesIO(b"the body" + b"the next request")
    assert read_wsgi_body(environ(stream, "8"), LIMIT) == b"the body"
    assert stream.tell() == 8


def test_wsgi_gathers_a_declared_length_over_several_reads() -> None:
    stream = Chunks(b"a" * 50)
    assert read_wsgi_body(environ(stream, "50"), LIMIT) == b"a" * 50


@pytest.mark.parametrize("stream", [io.BytesIO(b"short"), Chunks(b"short", size=2)])
def test_wsgi_short_read_gives_none(stream: Any) -> None:
    assert read_wsgi_body(environ(stream, "20"), LIMIT) is None


def test_wsgi_declared_length_over_the_limit_is_read_and_cut() -> None:
    stream = Chunks(b"b" * 300, size=64)
    assert read_wsgi_body(environ(stream, "300"), LIMIT) == b"b" * (LIMIT + 1)
    assert stream.read_bytes == 300


def test_wsgi_terminated_stream_without_length_is_read_to_its_end() -> None:
    stream = Chunks(b"c" * 90, size=16)
    assert read_wsgi_body(environ(stream, terminated=True), LIMIT) == b"c" * 90


def test_wsgi_terminated_stream_over_the_limit_is_cut() -> None:
    stream = io.BytesIO(b"d" * 1000)
    assert read_wsgi_body(environ(stream, terminated=True), LIMIT) == b"d" * (LIMIT + 1)
    assert stream.tell() == 1000


@pytest.mark.parametrize("length", [None, "", "not-a-number"])
def test_wsgi_no_usable_length_and_not_terminated_gives_an_empty_body(length: str | None) -> None:
    assert read_wsgi_body(environ(Untouchable(), length), LIMIT) == b""


def test_wsgi_unusable_length_on_a_terminated_stream_reads_to_its_end() -> None:
    stream = io.BytesIO(b"body")
    assert read_wsgi_body(environ(stream, "oops", terminated=True), LIMIT) == b"body"


def test_wsgi_zero_length_reads_nothing() -> None:
    assert read_wsgi_body(environ(io.BytesIO(b"next"), "0"), LIMIT) == b""


@pytest.mark.parametrize(
    ("length", "terminated"), [("10", False), (None, True), ("500", False)], ids=str
)
def test_wsgi_broken_connection_gives_none(length: str | None, terminated: bool) -> None:
    assert read_wsgi_body(environ(Reset(), length, terminated=terminated), LIMIT) is None


def test_wsgi_endless_terminated_stream_stops_past_the_drain_limit() -> None:
    class Endless(io.RawIOBase):
        read_bytes = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            buffer[: len(buffer)] = b"e" * len(buffer)
            self.read_bytes += len(buffer)
            return len(buffer)

    stream = Endless()
    assert read_wsgi_body(environ(stream, terminated=True), LIMIT) == b"e" * (LIMIT + 1)
    assert LIMIT + DRAIN_LIMIT < stream.read_bytes <= LIMIT + DRAIN_LIMIT + 65_536
