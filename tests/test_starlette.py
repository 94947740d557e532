"""The pure ASGI middleware: hand-driven scope/receive/send, then Starlette's TestClient."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from census_receiver import ConfigurationError, Event, WebhookReceiver
from census_receiver.bodies import DRAIN_LIMIT
from census_receiver.starlette import CensusWebhookMiddleware
from census_receiver.testing import make_delivery
from tests.adapter_contract import (
    LIMIT,
    PATH,
    WAIT,
    Probe,
    Req,
    delivery,
    make_probe,
    probing,
)
from tests.adapter_contract import (
    client_poster as poster,
)
from tests.conftest import SECRET
from tests.support import (
    Channel,
    Message,
    Receive,
    Scope,
    Send,
    body_messages,
    http_scope,
)
from tests.support import (
    run_asgi as run,
)

# -- hand-driven ASGI ------------------------------------------------------------------


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """A downstream app answering with the body it read, for pass-through checks."""
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


class RecordingReceiver(WebhookReceiver):
    """Remembers the size of each body the middleware hands over."""

    def __init__(self) -> None:
        super().__init__(secret=SECRET, max_body_size=LIMIT)
        self.sizes: list[int] = []

    def triage(self, body: Any, headers: Any = None, **options: Any) -> Any:
        # Where every delivery enters the core, whichever way the adapter calls in.
        self.sizes.append(len(body))
        return super().triage(body, headers, **options)


@pytest.fixture
def recording() -> Iterator[RecordingReceiver]:
    receiver = RecordingReceiver()
    yield receiver
    receiver.close()


def test_answers_a_delivery_sent_in_several_body_messages(recording: RecordingReceiver) -> None:
    d = make_delivery("sync.failed", secret=SECRET)
    channel = run(
        CensusWebhookMiddleware(echo, receiver=recording),
        http_scope(headers=d.headers.items()),
        Channel(body_messages(d.body, size=40)),
    )
    assert channel.status == 200
    assert channel.headers[b"content-type"] == b"application/json"
    assert channel.sent[1]["body"] == b'{"status": "ignored"}'
    assert recording.sizes == [len(d.body)]


def _raw_scope(headers: list[tuple[bytes, bytes]]) -> Scope:
    scope = http_scope()
    scope["headers"] = headers
    return scope


def test_a_hand_built_scope_with_a_capitalised_header_name_still_verifies(
    recording: RecordingReceiver,
) -> None:
    # Servers lower-case header names, as ASGI asks; a test's own scope may not.
    d = make_delivery("sync.failed", secret=SECRET)
    channel = run(
        CensusWebhookMiddleware(echo, receiver=recording),
        _raw_scope([(b"X-Signature", d.headers["X-Signature"].encode())]),
        Channel(body_messages(d.body)),
    )
    assert channel.status == 200
    assert recording.sizes == [len(d.body)]


@pytest.mark.parametrize("path", ["/other", "/webhooks/census/", "/webhooks/censusx", "/"])
def test_passes_other_paths_on_with_their_body_unread(
    recording: RecordingReceiver, path: str
) -> None:
    seen: list[tuple[Scope, Receive, Send]] = []
    channel = Channel(body_messages(b"payload " * 300))

    async def downstream(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))
        assert channel.received == 0  # nothing read before the app got the request
        await echo(scope, receive, send)

    scope = http_scope(path)
    run(CensusWebhookMiddleware(downstream, receiver=recording), scope, channel)
    assert seen == [(scope, channel.receive, channel.send)]
    assert channel.sent[1]["body"] == b"payload " * 300
    assert recording.sizes == []


@pytest.mark.parametrize("kind", ["lifespan", "websocket"])
def test_passes_non_http_scopes_on_even_on_the_webhook_path(
    recording: RecordingReceiver, kind: str
) -> None:
    seen: list[Scope] = []

    async def downstream(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await send({"type": f"{kind}.done"})

    scope = {"type": kind, "path": PATH, "root_path": "", "headers": []}
    channel = run(CensusWebhookMiddleware(downstream, receiver=recording), scope, Channel())
    assert seen == [scope]
    assert channel.sent == [{"type": f"{kind}.done"}]


def test_declared_length_over_the_limit_is_refused_before_reading(
    recording: RecordingReceiver,
) -> None:
    channel = run(
        CensusWebhookMiddleware(echo, receiver=recording),
        http_scope(headers=[("content-length", str(LIMIT + 1))]),
        Channel(body_messages(b"x" * (LIMIT + 1))),
    )
    assert channel.status == 413
    assert channel.received == 0
    assert recording.sizes == []


def test_streamed_body_over_the_limit_is_cut_at_the_limit_and_drained(
    recording: RecordingReceiver,
) -> None:
    messages = body_messages(b"x" * (LIMIT * 3))
    channel = run(
        CensusWebhookMiddleware(echo, receiver=recording), http_scope(), Channel(messages)
    )
    assert channel.status == 413
    assert recording.sizes == [LIMIT + 1]  # enough to know, never more
    assert channel.received == len(messages)  # the rest was read and dropped before answering


def test_draining_an_endless_body_stops_at_its_bound(recording: RecordingReceiver) -> None:
    chunk = b"x" * 65_536

    def endless() -> Iterator[Message]:
        while True:
            yield {"type": "http.request", "body": chunk, "more_body": True}

    channel = run(
        CensusWebhookMiddleware(echo, receiver=recording), http_scope(), Channel(endless())
    )
    assert channel.status == 413
    assert channel.received <= (LIMIT + DRAIN_LIMIT) // len(chunk) + 3


@pytest.mark.parametrize("size", [100, LIMIT * 3], ids=["mid-body", "while-draining"])
def test_client_leaving_mid_body_runs_nothing_and_logs_nothing(
    recording: RecordingReceiver, caplog: pytest.LogCaptureFixture, size: int
) -> None:
    calls: list[Event] = []
    recording.on("*")(calls.append)
    d = make_delivery("sync.failed", secret=SECRET)
    messages = body_messages(b"x" * size)
    messages[-1]["more_body"] = True  # ... and then the client is gone
    with caplog.at_level(logging.DEBUG, logger="census_receiver"):
        channel = run(
            CensusWebhookMiddleware(echo, receiver=recording),
            http_scope(headers=d.headers.items()),
            Channel(messages),
        )
    assert channel.sent == []
    assert calls == []
    assert recording.sizes == []
    assert caplog.records == []


@pytest.mark.parametrize(
    ("path", "root_path", "ours"),
    [
        ("/webhooks/census", "", True),
        ("/api/webhooks/census", "/api", True),  # the full path, as ASGI now specifies
        ("/webhooks/census", "/api", True),  # the path below root_path, as older stacks did
        ("/api/webhooks/census", "", False),
        ("/apix/webhooks/census", "/api", False),
        ("/api", "/api", False),
    ],
)
def test_matches_its_path_below_root_path_in_both_conventions(
    recording: RecordingReceiver, path: str, root_path: str, ours: bool
) -> None:
    channel = run(
        CensusWebhookMiddleware(echo, receiver=recording),
        http_scope(path, root_path=root_path, method="GET"),
        Channel(body_messages(b"")),
    )
    assert channel.status == (405 if ours else 200)


def test_path_must_start_with_a_slash(receiver: WebhookReceiver) -> None:
    with pytest.raises(ConfigurationError, match="path must start with '/'"):
        CensusWebhookMiddleware(echo, receiver=receiver, path="webhooks/census")


def test_slow_sync_handler_runs_in_a_thread_while_the_loop_serves_others() -> None:
    probe = make_probe()
    app = CensusWebhookMiddleware(echo, receiver=probe.receiver)
    d = delivery("sync.triggered")

    async def scenario() -> tuple[Channel, Channel]:
        slow = Channel(body_messages(d.body))
        task = asyncio.ensure_future(app(http_scope(headers=d.headers), slow.receive, slow.send))
        assert await asyncio.to_thread(probe.started.wait, WAIT)
        other = Channel(body_messages(b"meanwhile"))
        await asyncio.wait_for(app(http_scope("/other"), other.receive, other.send), WAIT)
        assert not task.done()  # the handler is still blocked, yet the loop answered
        probe.gate.set()
        await asyncio.wait_for(task, WAIT)
        return slow, other

    try:
        slow, other = asyncio.run(scenario())
    finally:
        probe.gate.set()
        probe.receiver.close()
    assert (other.status, other.sent[1]["body"]) == (200, b"meanwhile")
    assert (slow.status, probe.calls) == (200, ["sync.triggered"])


# -- through Starlette's TestClient ----------------------------------------------------


async def echo_endpoint(request: Request) -> Response:
    return Response(await request.body(), media_type=request.headers.get("content-type"))


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


def make_app(receiver: WebhookReceiver, **options: Any) -> Starlette:
    app = Starlette(routes=[Route("/echo", echo_endpoint, methods=["POST"]), Route("/", hello)])
    app.add_middleware(CensusWebhookMiddleware, receiver=receiver, **options)
    return app


@pytest.fixture
def probe() -> Iterator[Probe]:
    with probing() as p:
        yield p


def test_other_routes_get_their_body_unchanged(probe: Probe) -> None:
    client = TestClient(make_app(probe.receiver))
    body = bytes(range(256)) * 40  # larger than the webhook limit: not ours to refuse
    assert client.post("/echo", content=body).content == body
    streamed = client.post("/echo", content=iter([body[:5000], body[5000:]]))
    assert streamed.content == body
    assert client.get("/").text == "hello"
    assert probe.receiver.stats.count() == 0


def test_works_inside_a_mount(probe: Probe) -> None:
    inner = make_app(probe.receiver)
    app = Starlette(routes=[Mount("/hooks", app=inner), Route("/webhooks/census", hello)])
    client = TestClient(app)
    d = delivery("sync.failed")
    answer = client.post("/hooks/webhooks/census", content=d.body, headers=list(d.headers))
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})
    assert client.post("/hooks/echo", content=b"abc").content == b"abc"
    assert client.get("/webhooks/census").text == "hello"  # the outer app's own route
    assert probe.calls == ["sync.failed"]


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_works_behind_a_root_path(probe: Probe, prefix: str) -> None:
    # The TestClient puts the URL's path in scope["path"] as is: without the prefix,
    # as older stacks did, or with it, as ASGI now specifies (Starlette 0.27 routes
    # only the former; the middleware takes both).
    client = TestClient(make_app(probe.receiver, path="/hooks/census"), root_path="/api")
    d = delivery("sync.failed")
    answer = client.post(f"{prefix}/hooks/census", content=d.body, headers=list(d.headers))
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})
    assert client.get("/").text == "hello"


def test_websockets_and_lifespan_reach_the_app(probe: Probe) -> None:
    started: list[str] = []

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started.append("up")
        yield

    app = Starlette(routes=[WebSocketRoute(PATH, socket)], lifespan=lifespan)
    app.add_middleware(CensusWebhookMiddleware, receiver=probe.receiver)
    with TestClient(app) as client, client.websocket_connect(PATH) as ws:
        ws.send_text("ping")
        assert ws.receive_text() == "ping"
    assert started == ["up"]


def test_middleware_around_it_sees_its_answers(probe: Probe) -> None:
    # Middleware added last runs first; one added before ours wraps it and sees its answers.
    app = Starlette(routes=[Route("/", hello)])
    app.add_middleware(CensusWebhookMiddleware, receiver=probe.receiver)
    seen: list[int] = []

    class Spy:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            async def spy(message: Message) -> None:
                if message["type"] == "http.response.start":
                    seen.append(message["status"])
                await send(message)

            await self.app(scope, receive, spy)

    app.add_middleware(Spy)
    d = delivery("sync.success")
    response = TestClient(app).post(PATH, content=d.body, headers=list(d.headers))
    assert (response.status_code, seen, probe.calls) == (200, [200], ["sync.success"])


def test_json_routes_behind_it_read_their_body(probe: Probe) -> None:
    async def data(request: Request) -> JSONResponse:
        return JSONResponse(await request.json())

    app = Starlette(routes=[Route("/data", data, methods=["POST"])])
    app.add_middleware(CensusWebhookMiddleware, receiver=probe.receiver)
    assert TestClient(app).post("/data", json={"a": [1, 2]}).json() == {"a": [1, 2]}


def test_one_receiver_serves_concurrent_requests(probe: Probe) -> None:
    client = TestClient(make_app(probe.receiver))
    requests = [delivery("sync.failed", sync_run_id=n) for n in range(20)]
    errors: list[BaseException] = []

    def send(req: Req) -> None:
        try:
            assert poster(client)(req).status == 200
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(r,)) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert errors == []
    assert len(probe.calls) == 20


def test_importing_the_middleware_loads_no_framework() -> None:
    code = (
        "import sys, json\n"
        "before = set(sys.modules)\n"
        "import census_receiver.starlette\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(json.dumps(sorted(new - set(sys.stdlib_module_names) - {'census_receiver'})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
