"""The WSGI middleware, through Werkzeug's test Client and with hand-built environs."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from flask import request as flask_request
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from census_receiver import ConfigurationError, Event, WebhookReceiver
from census_receiver.bodies import DRAIN_LIMIT
from census_receiver.testing import make_delivery
from census_receiver.wsgi import CensusWebhookMiddleware, EnvironHeaders
from tests.adapter_contract import (
    LIMIT,
    PATH,
    Probe,
    Req,
    delivery,
    probing,
)
from tests.adapter_contract import (
    wsgi_poster as poster,
)
from tests.conftest import SECRET

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


@Request.application
def echo(request: Request) -> Response:
    """A downstream app answering with the body it read."""
    return Response(request.get_data(), content_type=request.content_type)


@pytest.fixture
def probe() -> Iterator[Probe]:
    with probing() as p:
        yield p


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("path", ["/echo", "/webhooks/census/", "/webhooks"])
def test_other_paths_get_their_body_unchanged(probe: Probe, path: str, chunked: bool) -> None:
    post = poster(CensusWebhookMiddleware(echo, receiver=probe.receiver))
    body = bytes(range(256)) * 40  # over the webhook limit: not ours to refuse
    answer = post(Req(body=body, path=path, chunked=chunked))
    assert (answer.status, answer.body) == (200, body)
    assert probe.receiver.stats.count() == 0


def test_path_is_matched_below_script_name(probe: Probe) -> None:
    hooks = CensusWebhookMiddleware(echo, receiver=probe.receiver)
    post = poster(DispatcherMiddleware(echo, {"/hooks": hooks}))
    d = delivery("sync.failed")
    assert post(d).body == d.body  # outside the mount: the echo app's, untouched
    answer = post(Req(body=d.body, headers=d.headers, path="/hooks/webhooks/census"))
    assert (answer.status, answer.json(), probe.calls) == (200, {"status": "ok"}, ["sync.failed"])


def test_path_must_start_with_a_slash(receiver: WebhookReceiver) -> None:
    with pytest.raises(ConfigurationError, match="path must start with '/'"):
        CensusWebhookMiddleware(echo, receiver=receiver, path="census")


# -- reading wsgi.input ----------------------------------------------------------------


def call(app: Any, environ: WSGIEnvironment) -> tuple[str, dict[str, str], bytes]:
    got: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        got.extend([status, dict(headers)])
        return lambda data: None

    body = b"".join(app(environ, start_response))
    return got[0], got[1], body


def raw_environ(stream: Any, *, length: str | None, terminated: bool = False) -> WSGIEnvironment:
    d = make_delivery("sync.failed", secret=SECRET)
    environ = EnvironBuilder(
        path=PATH, method="POST", headers=list(d.headers.items())
    ).get_environ()
    environ["wsgi.input"] = stream
    environ.pop("CONTENT_LENGTH", None)
    if length is not None:
        environ["CONTENT_LENGTH"] = length
    if terminated:
        environ["wsgi.input_terminated"] = True
    return environ


class Endless(io.RawIOBase):
    """A request stream that never ends, counting what was read from it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), 1000)
        buffer[:n] = b"x" * n
        self.read_bytes += n
        return n


class Unreadable(io.RawIOBase):
    """A stream that must not be read."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise AssertionError("the middleware read a stream it could not know the end of")


class Broken(io.RawIOBase):
    """The connection breaks on the first read, as a server reports it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise ConnectionResetError("connection reset by peer")


def test_reads_only_the_declared_length(receiver: WebhookReceiver) -> None:
    d = make_delivery("sync.failed", secret=SECRET)
    stream = io.BytesIO(d.body + b"next request bytes")
    app = CensusWebhookMiddleware(echo, receiver=receiver)
    status, _, _ = call(app, raw_environ(stream, length=str(len(d.body))))
    assert status == "200 OK"
    assert stream.tell() == len(d.body)


@pytest.mark.parametrize("length", [None, "not-a-number"])
def test_without_a_usable_length_reads_nothing_unless_the_server_ends_the_stream(
    receiver: WebhookReceiver, length: str | None
) -> None:
    app = CensusWebhookMiddleware(echo, receiver=receiver)
    status, _, _ = call(app, raw_environ(Unreadable(), length=length))
    assert status.startswith("401")  # an empty body carries no valid signature
    d = make_delivery("sync.failed", secret=SECRET)
    status, _, _ = call(app, raw_environ(io.BytesIO(d.body), length=length, terminated=True))
    assert status == "200 OK"


def test_endless_terminated_stream_is_cut_and_drained_within_bounds(
    receiver: WebhookReceiver,
) -> None:
    limited = WebhookReceiver(secret=SECRET, max_body_size=LIMIT)
    stream = Endless()
    status, _, _ = call(
        CensusWebhookMiddleware(echo, receiver=limited),
        raw_environ(io.BufferedReader(stream), length=None, terminated=True),
    )
    limited.close()
    assert status.startswith("413")
    assert LIMIT < stream.read_bytes <= LIMIT + DRAIN_LIMIT + 2 * 65_536


def test_over_limit_terminated_stream_is_drained_to_its_end(receiver: WebhookReceiver) -> None:
    limited = WebhookReceiver(secret=SECRET, max_body_size=LIMIT)
    stream = io.BytesIO(b"x" * (LIMIT * 10))
    status, _, _ = call(
        CensusWebhookMiddleware(echo, receiver=limited),
        raw_environ(stream, length=None, terminated=True),
    )
    limited.close()
    assert status.startswith("413")
    assert stream.tell() == LIMIT * 10


@pytest.mark.parametrize(
    ("stream", "length"),
    [(io.BytesIO(b'{"event": "sync'), "500"), (Broken(), "500"), (Broken(), None)],
    ids=["short", "reset", "reset-chunked"],
)
def test_client_leaving_mid_body_runs_nothing_and_is_answered_like_any_refusal(
    probe: Probe, caplog: pytest.LogCaptureFixture, stream: Any, length: str | None
) -> None:
    app = CensusWebhookMiddleware(echo, receiver=probe.receiver)
    with caplog.at_level(logging.DEBUG, logger="census_receiver"):
        status, headers, body = call(
            app, raw_environ(stream, length=length, terminated=length is None)
        )
    # A half-closed client may still read: a JSON 400, as for every refusal.
    assert status == "400 Bad Request"
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(body))
    assert json.loads(body) == {"error": "the client sent less than its Content-Length"}
    assert probe.calls == []
    assert [r.getMessage() for r in caplog.records] == [
        "census delivery rejected (400 incomplete_body): "
        "the client sent less than its Content-Length"
    ]
    assert probe.receiver.stats.count(reason="incomplete_body") == 1


# -- the header mapping given to the core ----------------------------------------------


def test_environ_headers_look_up_names_in_any_case() -> None:
    environ = {
        "HTTP_X_SIGNATURE": "abc",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": "12",
        "wsgi.input": io.BytesIO(),
        "SERVER_NAME": "localhost",
    }
    headers = EnvironHeaders(environ)
    assert headers["X-Signature"] == headers["x-signature"] == "abc"
    assert headers["Content-Type"] == "application/json"
    assert sorted(headers) == ["content-length", "content-type", "x-signature"]
    assert len(headers) == 3
    assert "server-name" not in headers
    with pytest.raises(KeyError):
        headers["x-missing"]


def test_environ_headers_getlist_splits_folded_values() -> None:
    headers = EnvironHeaders({"HTTP_X_SIGNATURE": "one, two"})
    assert headers.getlist("x-signature") == ["one", "two"]
    assert headers.getlist("x-other") == []


def test_folded_repeated_signature_is_refused(probe: Probe) -> None:
    d = make_delivery("sync.failed", secret=SECRET)
    signature = d.headers["X-Signature"]
    environ = raw_environ(io.BytesIO(d.body), length=str(len(d.body)))
    environ["HTTP_X_SIGNATURE"] = f"{signature},{signature}"  # how servers fold a repeat
    status, _, body = call(CensusWebhookMiddleware(echo, receiver=probe.receiver), environ)
    assert status.startswith("401")
    assert b"more than once" in body
    assert probe.calls == []


# -- around other WSGI apps ------------------------------------------------------------


def test_wraps_a_flask_app(probe: Probe) -> None:
    app = Flask(__name__)

    @app.post("/data")
    def data() -> Any:
        return {"got": flask_request.get_json()}

    app.wsgi_app = CensusWebhookMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, receiver=probe.receiver
    )
    client = app.test_client()
    d = delivery("sync.failed")
    answer = client.post(PATH, data=d.body, headers=list(d.headers))
    assert (answer.status_code, answer.get_json()) == (200, {"status": "ok"})
    assert client.post("/data", json={"a": 1}).get_json() == {"got": {"a": 1}}
    assert client.get(PATH).headers["Allow"] == "POST"
    assert probe.calls == ["sync.failed"]


def test_async_handlers_run_under_wsgi(receiver: WebhookReceiver) -> None:
    seen: list[Event] = []

    @receiver.on("sync.failed")
    async def record(event: Event) -> None:
        seen.append(event)

    post = poster(CensusWebhookMiddleware(echo, receiver=receiver))
    assert post(delivery("sync.failed")).status == 200
    assert [e.event for e in seen] == ["sync.failed"]


def _plain_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("204 No Content", [])
    return []


def test_wraps_a_plain_wsgi_callable(probe: Probe) -> None:
    post = poster(CensusWebhookMiddleware(_plain_app, receiver=probe.receiver))
    assert post(Req(method="GET", path="/")).status == 204
    assert post(delivery("sync.success")).status == 200


def test_importing_the_middleware_loads_no_framework() -> None:
    code = (
        "import sys, json\n"
        "before = set(sys.modules)\n"
        "import census_receiver.wsgi\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(json.dumps(sorted(new - set(sys.stdlib_module_names) - {'census_receiver'})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
