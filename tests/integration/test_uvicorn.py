"""The ASGI middleware under a real uvicorn on 127.0.0.1, over real sockets."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from census_receiver import Event, WebhookReceiver
from census_receiver.starlette import CensusWebhookMiddleware
from census_receiver.testing import make_delivery
from tests.adapter_contract import LIMIT, PATH, WAIT, wait_for
from tests.conftest import SECRET
from tests.integration.conftest import (
    Served,
    connection,
    deliver_many,
    read_response,
    request_bytes,
    valid_request,
)


class Target:
    """A Starlette app behind the middleware, counting handled deliveries per run."""

    def __init__(self) -> None:
        self.receiver = WebhookReceiver(secret=SECRET, max_body_size=LIMIT)
        self.handled: Counter[int | None] = Counter()
        self.started = threading.Event()
        self.gate = threading.Event()
        lock = threading.Lock()

        @self.receiver.on("sync.failed")
        def count(event: Event) -> None:
            with lock:
                self.handled[event.sync_run_id] += 1

        @self.receiver.on("sync.triggered")
        def slow(event: Event) -> None:  # a blocking handler: must not stall the loop
            self.started.set()
            assert self.gate.wait(WAIT)

        async def echo(request: Request) -> Response:
            return Response(await request.body())

        app = Starlette(routes=[Route("/echo", echo, methods=["GET", "POST"])])
        app.add_middleware(CensusWebhookMiddleware, receiver=self.receiver)
        self.app = app


@pytest.fixture
def served(uvicorn_server: Callable[[Any], Served]) -> Iterator[tuple[Served, Target]]:
    target = Target()
    yield uvicorn_server(target.app), target
    target.gate.set()
    target.receiver.close()


def test_hundreds_of_concurrent_deliveries_are_each_handled_once(
    served: tuple[Served, Target],
) -> None:
    server, target = served
    statuses = deliver_many(server.url, range(300))
    assert Counter(statuses) == {200: 300}
    assert target.handled == dict.fromkeys(range(300), 1)


def test_forged_deliveries_are_all_refused(served: tuple[Served, Target]) -> None:
    server, target = served
    statuses = deliver_many(server.url, range(300), forged=True)
    assert Counter(statuses) == {401: 300}
    assert target.handled == {}


@pytest.mark.parametrize("chunk", [True, False], ids=["chunked", "content-length"])
def test_body_over_the_limit_is_answered_413_and_the_connection_stays_usable(
    served: tuple[Served, Target], chunk: bool
) -> None:
    server, target = served
    with connection(server) as sock:
        sock.sendall(request_bytes(b"x" * (LIMIT * 8), signature="x", chunk=chunk))
        status, headers, _ = read_response(sock)
        assert status == 413
        assert headers.get("connection") != "close"
        sock.sendall(valid_request(1))  # same connection, next request
        assert read_response(sock)[0] == 200
    assert target.handled == {1: 1}


def test_413_comes_before_the_body_when_the_client_waits_for_100_continue(
    served: tuple[Served, Target],
) -> None:
    server, _ = served
    with connection(server) as sock:
        head = request_bytes(b"", signature="x").replace(
            b"Content-Length: 0", f"Content-Length: {LIMIT * 100}\r\nExpect: 100-continue".encode()
        )
        sock.sendall(head)  # and nothing more: the answer must not wait for the body
        status, _, _ = read_response(sock)
    assert status == 413


def test_client_leaving_mid_body_leaves_the_server_healthy(
    served: tuple[Served, Target], caplog: pytest.LogCaptureFixture
) -> None:
    server, target = served
    uvicorn: Any = server.handle
    with caplog.at_level(logging.INFO):
        with connection(server) as sock:
            d = make_delivery("sync.failed", secret=SECRET)
            sock.sendall(request_bytes(d.body, signature=d.headers["X-Signature"])[:-20])
        wait_for(lambda: not uvicorn.server_state.connections)
        with connection(server) as sock:
            sock.sendall(valid_request(2))
            assert read_response(sock)[0] == 200
    assert target.handled == {2: 1}
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == []


def test_slow_sync_handler_does_not_stop_other_requests(served: tuple[Served, Target]) -> None:
    server, target = served
    d = make_delivery("sync.triggered", secret=SECRET)
    with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=server.url, timeout=WAIT) as client:
        slow = pool.submit(client.post, PATH, content=d.body, headers=d.headers)
        try:
            assert target.started.wait(WAIT)
            # While the handler blocks its thread, the loop serves other requests,
            # deliveries included.
            assert client.post("/echo", content=b"still here").content == b"still here"
            assert deliver_many(server.url, range(10)) == [200] * 10
            assert not slow.done()
        finally:
            target.gate.set()
        assert slow.result(WAIT).status_code == 200


def test_other_routes_get_their_body_unchanged(served: tuple[Served, Target]) -> None:
    server, target = served
    body = bytes(range(256)) * 64  # 16 KiB, far over the webhook limit

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        assert client.post("/echo", content=body).content == body
        assert client.post("/echo", content=pieces()).content == body
        assert client.get(PATH).status_code == 405
    assert target.receiver.stats.count(reason="handled") == 0
