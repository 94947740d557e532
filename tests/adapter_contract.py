"""The HTTP contract every adapter answers, as data, and the adapters it is run against.

``tests/test_contract.py`` runs every ``Case`` and every row against every
entry of ``ADAPTERS``: the ASGI middleware driven by hand and in a Starlette
and a FastAPI app under their TestClient, the FastAPI dependency, the WSGI
middleware, and the Flask view decorator and extension. Each adapter serves
``probe.receiver`` and turns a ``Req`` into a request of its own kind;
``check`` compares the answer with the ``Case``, as that adapter gives it (a
route or view that is part of handling answers for the handlers; FastAPI's
answers are ``{"detail": ...}``). The rows that need receiver options, two
requests or threads (duplicate, in progress, store down, store silent at the
deadline, workspace allowlist) are functions taking a ``post`` callable.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from werkzeug.test import Client, EnvironBuilder, run_wsgi_app

from census_receiver import Event, NonRetryableError, WebhookReceiver
from census_receiver.dedup import Claim, InMemoryDedupStore
from census_receiver.journal import SQLiteJournal
from census_receiver.testing import make_body, make_delivery, sign
from tests.conftest import SECRET
from tests.support import WAIT as WAIT  # the integration tests take it from here
from tests.support import Channel, body_messages, http_scope, run_asgi
from tests.support import wait_for as wait_for

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from tests.support import Receive, Scope, Send

PATH = "/webhooks/census"
LIMIT = 2048


@dataclass(frozen=True)
class Req:
    """A request to send: ``chunked`` means no Content-Length, the body in 500-byte pieces."""

    method: str = "POST"
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    chunked: bool = False
    path: str = PATH

    def pieces(self) -> Iterator[bytes]:
        for start in range(0, len(self.body), 500):
            yield self.body[start : start + 500]


@dataclass(frozen=True)
class Answer:
    """What came back: status, headers (names lower-cased) and the body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        """The one message of the answer, whatever its key (``status``, ``error``, ``detail``)."""
        decoded = self.json()
        assert isinstance(decoded, dict) and len(decoded) == 1, self.body
        (value,) = decoded.values()
        assert isinstance(value, str)
        return value


Post = Callable[[Req], Answer]


def signed(body: bytes, *, secret: str = SECRET, **extra: str) -> Req:
    headers = (("Content-Type", "application/json"), ("X-Signature", sign(body, secret)))
    return Req(body=body, headers=headers + tuple(extra.items()))


def delivery(event: str, **fields: Any) -> Req:
    return signed(make_body(event, **fields))


def with_signature(body: bytes, *values: str) -> Req:
    """``body`` with these ``X-Signature`` values, each in a header of its own."""
    return Req(body=body, headers=tuple(("X-Signature", v) for v in values))


@dataclass
class Probe:
    """A receiver whose handlers, and the adapter's route or view, record their calls."""

    receiver: WebhookReceiver
    calls: list[str] = field(default_factory=list)
    routed: list[str] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event = field(default_factory=threading.Event)


@contextmanager
def probing(**options: Any) -> Iterator[Probe]:
    """``make_probe``, whose waiting handler is released and threads stopped on exit."""
    probe = make_probe(**options)
    try:
        yield probe
    finally:
        probe.gate.set()
        probe.receiver.close()


def make_probe(**options: Any) -> Probe:
    """A receiver (limit ``LIMIT``) with handlers that count, fail, give up or wait.

    ``sync.failed`` / ``sync.success`` are recorded; ``sync.alert.raised`` fails
    (500); ``sync.alert.resolved`` gives up (200 dropped); ``sync.triggered``
    waits for ``probe.gate`` (set ``probe.started`` first); anything else is
    ignored.
    """
    receiver = WebhookReceiver(secret=SECRET, max_body_size=LIMIT, **options)
    probe = Probe(receiver)

    @receiver.on("sync.failed", "sync.success")
    def record(event: Event) -> None:
        probe.calls.append(event.event)

    @receiver.on("sync.alert.raised")
    def fail(event: Event) -> None:
        probe.calls.append(event.event)
        raise RuntimeError("the handler broke")

    @receiver.on("sync.alert.resolved")
    def give_up(event: Event) -> None:
        probe.calls.append(event.event)
        raise NonRetryableError("no point retrying")

    @receiver.on("sync.triggered")
    def wait(event: Event) -> None:
        probe.started.set()
        assert probe.gate.wait(WAIT)
        probe.calls.append(event.event)

    return probe


@dataclass(frozen=True)
class Case:
    """One row of the contract: a request, the answer's status and body, handler calls."""

    id: str
    request: Req
    status: int
    answer: dict[str, str] | None  # {"error": ""} means any error message
    calls: int = 0
    allow: str | None = None


_FAILED = make_delivery("sync.failed", secret=SECRET)
_SIG = _FAILED.headers["X-Signature"]
_DIGEST = base64.b64decode(_SIG)
_BIG = make_body("sync.failed", padding="x" * LIMIT)
_ERROR = {"error": ""}
_OK = {"status": "ok"}
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# A body whose signature holds both "+" and "/", so its URL-safe spelling differs.
_URLSAFE_BODY = next(
    body
    for body in (make_body("sync.failed", sync_run_id=n) for n in range(1000, 100_000))
    if {"+", "/"} <= set(sign(body, SECRET))
)


def _non_canonical(signature: str) -> str:
    """The same digest with the 2 unused bits of the 43rd character set: not canonical."""
    index = _B64.index(signature[42])
    return signature[:42] + _B64[index + 1] + signature[43:]


def _refused(id: str, request: Req, status: int = 401) -> Case:
    return Case(id, request, status, _ERROR)


def _malformed(id: str, body: bytes) -> Case:
    return Case(id, signed(body), 400, _ERROR)


CASES: tuple[Case, ...] = (
    Case("handled", delivery("sync.failed"), 200, _OK, 1),
    Case("no-handler", delivery("sync.started"), 200, {"status": "ignored"}),
    Case("unknown-event", delivery("sync.renamed"), 200, {"status": "ignored"}),
    Case("handler-raised", delivery("sync.alert.raised"), 500, _ERROR, 1),
    Case("handler-gave-up", delivery("sync.alert.resolved"), 200, {"status": "dropped"}, 1),
    # X-Signature: exactly one, canonical standard base64 of the digest, ASCII spaces aside.
    Case("signature-with-spaces", with_signature(_FAILED.body, f" {_SIG}\t"), 200, _OK, 1),
    _refused("no-signature", Req(body=_FAILED.body)),
    _refused("empty-signature", with_signature(_FAILED.body, "")),
    _refused("hex-signature", with_signature(_FAILED.body, _DIGEST.hex())),
    _refused(
        "url-safe-signature",
        with_signature(_URLSAFE_BODY, sign(_URLSAFE_BODY, SECRET).translate({43: 45, 47: 95})),
    ),
    _refused("unpadded-signature", with_signature(_FAILED.body, _SIG.rstrip("="))),
    _refused("non-canonical-signature", with_signature(_FAILED.body, _non_canonical(_SIG))),
    _refused("truncated-signature", with_signature(_FAILED.body, _SIG[:-4])),
    _refused("non-ascii-signature", with_signature(_FAILED.body, _SIG[:-2] + "\xe9=")),
    _refused("no-break-space-around", with_signature(_FAILED.body, _SIG + "\xa0")),
    _refused("wrong-secret", signed(_FAILED.body, secret="another")),
    _refused("repeated-signature", signed(_FAILED.body, **{"x-signature": _SIG})),
    _refused("valid-and-junk", with_signature(_FAILED.body, _SIG, "junk")),
    _refused("empty-and-valid", with_signature(_FAILED.body, "", _SIG)),
    _refused("folded-signature", with_signature(_FAILED.body, f"{_SIG}, {_SIG}")),
    # The order of the checks: size, then signature, then the payload.
    _refused("forged-not-json", signed(b"not json", secret="another")),
    _refused("too-large", signed(_BIG), 413),
    _refused("too-large-forged", signed(_BIG, secret="another"), 413),
    _refused("too-large-chunked", Req(body=_BIG, headers=signed(_BIG).headers, chunked=True), 413),
    _malformed("not-json", b"not json"),
    _malformed("json-array", b"[1, 2]"),
    _malformed("no-ids", make_body("sync.failed", sync_id=None)),
    _malformed("deep-nesting", b"[" * 500 + b"]" * 500),
    _malformed("duplicate-keys", b'{"event": "sync.failed", "event": "sync.success"}'),
    _malformed("nan", b'{"event": "x", "n": NaN}'),
    _malformed("not-utf8", b'{"event": "\xff"}'),
    _malformed("markup", b'{"event": 1, "</script>\\n": "<b>"}'),
    Case("get", Req(method="GET"), 405, _ERROR, allow="POST"),
    Case("put", Req("PUT", _FAILED.body, signed(_FAILED.body).headers), 405, _ERROR, allow="POST"),
)

#: Chunked, but within the limit: read to the end without a Content-Length.
CHUNKED_OK = Case(
    "handled-chunked",
    Req(body=_FAILED.body, headers=signed(_FAILED.body).headers, chunked=True),
    200,
    _OK,
    1,
)


# -- the adapters -----------------------------------------------------------------------


@dataclass(frozen=True)
class Adapter:
    """One way to put a receiver on the web, and how its answers read.

    ``serve(probe)`` is a context in which ``post`` sends a ``Req`` to an app
    serving ``probe.receiver`` at ``PATH``.
    """

    name: str
    serve: Callable[[Probe], AbstractContextManager[Post]]
    #: The user's route or view runs after the handlers, as part of handling, and
    #: answers 200 ``ok`` for every delivery it runs for.
    endpoint: bool = False
    #: Answers other than the route's own are FastAPI's ``{"detail": ...}``.
    detail: bool = False

    def expected(self, case: Case) -> tuple[dict[str, str] | None, int]:
        """The answer this adapter gives for ``case``, and how many times its route runs."""
        if case.answer is None:
            return None, 0
        (text,) = case.answer.values()
        if self.endpoint and case.status == 200 and text in ("ok", "ignored"):
            return _OK, 1
        return ({"detail": text} if self.detail else case.answer), 0


async def unreachable_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("the webhook path never reaches the wrapped app")


def unreachable_wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    raise AssertionError("the webhook path never reaches the wrapped app")


def asgi_poster(app: Any) -> Post:
    """Drive an ASGI app by hand: the headers go into the scope as given, repeats too."""

    def post(req: Req) -> Answer:
        headers = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in req.headers]
        if not req.chunked:
            headers.append((b"content-length", str(len(req.body)).encode()))
        scope = http_scope(req.path, method=req.method, headers=headers)
        channel = run_asgi(app, scope, Channel(body_messages(req.body)))
        names = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in channel.headers.items()
        }
        return Answer(channel.sent[0]["status"], names, channel.body)

    return post


def builder_for(req: Req) -> EnvironBuilder:
    return EnvironBuilder(
        path=req.path,
        method=req.method,
        input_stream=io.BytesIO(req.body) if req.body or req.chunked else None,
        headers=list(req.headers),
        environ_base={"REMOTE_ADDR": "127.0.0.1"},  # as every WSGI server sets it
    )


def environ_for(req: Req) -> WSGIEnvironment:
    environ = builder_for(req).get_environ()
    if req.chunked:  # as a server does for a chunked request: no length, stream ends itself
        del environ["CONTENT_LENGTH"]
        environ["wsgi.input_terminated"] = True
    return environ


def wsgi_poster(app: Any) -> Post:
    """Send ``Req`` through Werkzeug's Client; chunked ones through ``run_wsgi_app``.

    The Client rebuilds the environ and would give a chunked request its length back.
    """
    client = Client(app)

    def post(req: Req) -> Answer:
        if req.chunked:
            app_iter, status, headers = run_wsgi_app(app, environ_for(req), buffered=True)
            body = b"".join(app_iter)
            pairs = {k.lower(): v for k, v in headers.items()}
            return Answer(int(status.split()[0]), pairs, body)
        response = client.open(builder_for(req))
        pairs = {k.lower(): v for k, v in response.headers.items()}
        return Answer(response.status_code, pairs, response.get_data())

    return post


def client_poster(client: Any) -> Post:
    """Send ``Req`` through an httpx-style client (Starlette's and FastAPI's TestClient).

    Header values go as latin-1 bytes, so non-ASCII ones arrive as sent.
    """

    def post(req: Req) -> Answer:
        response = client.request(
            req.method,
            req.path,
            content=req.pieces() if req.chunked else req.body,
            headers=[(n, v.encode("latin-1")) for n, v in req.headers],
        )
        return Answer(response.status_code, dict(response.headers), response.content)

    return post


@contextmanager
def _asgi(probe: Probe) -> Iterator[Post]:
    from census_receiver.starlette import CensusWebhookMiddleware

    yield asgi_poster(CensusWebhookMiddleware(unreachable_asgi, receiver=probe.receiver))


@contextmanager
def _starlette(probe: Probe) -> Iterator[Post]:
    from starlette.applications import Starlette

    with _middleware_in(Starlette(), probe) as post:
        yield post


@contextmanager
def _fastapi_middleware(probe: Probe) -> Iterator[Post]:
    from fastapi import FastAPI

    with _middleware_in(FastAPI(), probe) as post:
        yield post


@contextmanager
def _middleware_in(app: Any, probe: Probe) -> Iterator[Post]:
    """The ASGI middleware added to a Starlette (or FastAPI) app, posted to by its TestClient."""
    from starlette.testclient import TestClient

    from census_receiver.starlette import CensusWebhookMiddleware

    app.add_middleware(CensusWebhookMiddleware, receiver=probe.receiver, path=PATH)
    with TestClient(app) as client:
        yield client_poster(client)


@contextmanager
def _fastapi_dependency(probe: Probe) -> Iterator[Post]:
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient

    from census_receiver.fastapi import census_event

    app = FastAPI()
    verified_event = Depends(census_event(probe.receiver))

    # Every method reaches the dependency, so it answers 405 itself.
    @app.api_route(PATH, methods=["GET", "POST", "PUT"])
    async def census(event: Event = verified_event) -> dict[str, str]:
        probe.routed.append(event.event)
        return {"status": "ok"}

    with TestClient(app) as client:
        yield client_poster(client)


@contextmanager
def _wsgi(probe: Probe) -> Iterator[Post]:
    from census_receiver.wsgi import CensusWebhookMiddleware

    yield wsgi_poster(CensusWebhookMiddleware(unreachable_wsgi, receiver=probe.receiver, path=PATH))


@contextmanager
def _flask_view(probe: Probe) -> Iterator[Post]:
    from flask import Flask

    from census_receiver.flask import census_webhook

    app = Flask("census_contract")

    # Every method reaches the decorator, so it answers 405 itself.
    @app.route(PATH, methods=["GET", "POST", "PUT"])
    @census_webhook(probe.receiver)
    def census(event: Event) -> None:
        probe.routed.append(event.event)

    yield wsgi_poster(app)


@contextmanager
def _flask_extension(probe: Probe) -> Iterator[Post]:
    from flask import Flask

    from census_receiver.flask import CensusWebhooks

    app = Flask("census_contract")
    CensusWebhooks(app, receiver=probe.receiver)
    yield wsgi_poster(app)


ADAPTERS: tuple[Adapter, ...] = (
    Adapter("asgi", _asgi),
    Adapter("starlette", _starlette),
    Adapter("fastapi-middleware", _fastapi_middleware),
    Adapter("fastapi-dependency", _fastapi_dependency, endpoint=True, detail=True),
    Adapter("wsgi", _wsgi),
    Adapter("flask-view", _flask_view, endpoint=True),
    Adapter("flask-extension", _flask_extension),
)


def check(case: Case, answer: Answer, probe: Probe, adapter: Adapter) -> None:
    """Assert ``answer`` is what the contract says for ``case``, as ``adapter`` gives it."""
    assert answer.status == case.status, answer.body
    expected, routed = adapter.expected(case)
    text = answer.text
    if expected is not None:
        ((key, want),) = expected.items()
        assert set(answer.json()) == {key}, answer.body
        if want:
            assert text == want
    assert len(probe.calls) == case.calls
    assert len(probe.routed) == routed
    if case.allow is not None:
        assert answer.headers.get("allow") == case.allow
    check_small_json(answer, case.request)


def check_small_json(answer: Answer, request: Req) -> None:
    """Every answer is a short JSON object that no page could act on and echoes no signature."""
    assert answer.headers.get("content-type") == "application/json"
    assert answer.headers.get("content-length", str(len(answer.body))) == str(len(answer.body))
    assert len(answer.body) < 300
    assert not any(c in answer.body for c in b"<>&\n\r")
    for name, value in request.headers:
        if name.lower() == "x-signature" and value.strip():
            assert value.strip() not in answer.text


# -- the rows that need options, two requests or threads -------------------------------


def check_duplicate(post: Post, probe: Probe) -> None:
    """A second copy of a handled delivery: 200 duplicate, handlers not run again."""
    request = delivery("sync.failed", sync_run_id=77)
    assert (post(request).status, probe.calls) == (200, ["sync.failed"])
    routed = list(probe.routed)
    again = post(request)
    assert (again.status, again.text) == (200, "duplicate")
    assert probe.calls == ["sync.failed"]
    assert probe.routed == routed  # nor the route or view


def check_in_progress(post: Post, probe: Probe) -> None:
    """A copy arriving while the first is still handled: 409, then the first finishes 200."""
    request = delivery("sync.triggered", sync_run_id=78)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, request)
        assert probe.started.wait(WAIT)
        try:
            second = post(request)
        finally:
            probe.gate.set()
        assert first.result(WAIT).status == 200
    assert second.status == 409
    assert probe.calls == ["sync.triggered"]


class SilentStore(InMemoryDedupStore):
    """A dedup store that stops answering claims (a paused server) until ``answer`` is set."""

    blocking = True  # its calls wait, as a network store's do

    def __init__(self) -> None:
        super().__init__()
        self.answer = threading.Event()

    def claim(self, key: str) -> Claim:
        self.answer.wait(WAIT)
        return super().claim(key)


def check_deadline(post: Post, probe: Probe) -> None:
    """A store silent at the deadline: 503; once it answers, Census's retry is handled."""
    request = delivery("sync.failed", sync_run_id=79)
    answer = post(request)
    assert (answer.status, answer.text) == (503, "the deduplication store is unavailable")
    assert probe.calls == []
    store = probe.receiver.dedup
    assert isinstance(store, SilentStore)
    store.answer.set()
    # The claim that landed after the answer is released: a retry soon runs the handlers,
    # not only once its lease has run out.
    wait_for(lambda: post(request).status == 200)
    assert probe.calls == ["sync.failed"]


class DownStore:
    """A dedup store whose backend cannot be reached."""

    def claim(self, key: str) -> Claim:
        raise ConnectionError("store down")

    def complete(self, claim: Claim) -> None:
        raise ConnectionError("store down")

    def release(self, claim: Claim) -> None:
        raise ConnectionError("store down")


def check_store_down(post: Post, probe: Probe) -> None:
    """The dedup store is unreachable (fail closed): 503, handlers not run."""
    answer = post(delivery("sync.failed"))
    assert answer.status == 503 and answer.text
    assert (probe.calls, probe.routed) == ([], [])


def check_workspace_not_allowed(post: Post, probe: Probe) -> None:
    """A verified delivery from a workspace outside the allowlist: 403 naming it, counted."""
    answer = post(delivery("sync.failed", workspace_id=4242))
    assert answer.status == 403 and "4242" in answer.text
    # The signature is checked first: a forged one is refused as such.
    assert post(signed(make_body("sync.failed", workspace_id=4242), secret="another")).status == 401
    assert (probe.calls, probe.routed) == ([], [])
    assert post(delivery("sync.failed", workspace_id=3167)).status == 200
    assert probe.calls == ["sync.failed"]
    assert probe.receiver.stats.count(reason="workspace_not_allowed") == 1


def check_refusals_journaled(post: Post, probe: Probe) -> None:
    """With a journal, a refused request is noted in its rejection log, client address too."""
    journal = probe.receiver.journal
    assert isinstance(journal, SQLiteJournal)
    try:
        assert post(signed(make_body("sync.failed"), secret="another")).status == 401
        (rejection,) = journal.rejections()
        assert (rejection.status, rejection.reason) == (401, "invalid_signature")
        assert isinstance(rejection.remote, str) and rejection.remote  # each client's own
    finally:
        journal.close()
        shutil.rmtree(Path(journal.path).parent)


def _journal_in_a_temporary_folder() -> dict[str, Any]:
    return {"journal": SQLiteJournal(Path(tempfile.mkdtemp(prefix="census-contract-")) / "j.db")}


Row = tuple[str, Callable[[], dict[str, Any]], Callable[[Post, Probe], None]]

#: (row, receiver options, check) for the dedup rows of the contract.
DEDUP_ROWS: tuple[Row, ...] = (
    ("duplicate", lambda: {"dedup": InMemoryDedupStore()}, check_duplicate),
    ("in-progress", lambda: {"dedup": InMemoryDedupStore()}, check_in_progress),
    ("deadline", lambda: {"dedup": SilentStore(), "deadline": 0.1}, check_deadline),
    ("store-down", lambda: {"dedup": DownStore()}, check_store_down),
)

#: Every row of the contract that needs receiver options.
ROWS: tuple[Row, ...] = (
    *DEDUP_ROWS,
    ("workspace-not-allowed", lambda: {"allowed_workspaces": {3167}}, check_workspace_not_allowed),
    ("refusals-journaled", _journal_in_a_temporary_folder, check_refusals_journaled),
)
