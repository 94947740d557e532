"""The HTTP contract every adapter answers, as data, for the adapter test files.

Each adapter's tests build an app around ``probe.receiver``, turn a ``Req`` into
a request of the framework's own test client, and compare the answer with the
``Case``. The dedup rows (duplicate, in progress, store down, store silent at the deadline) are
functions taking a ``post`` callable, since they need two requests or threads.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from werkzeug.test import Client, EnvironBuilder, run_wsgi_app

from census_receiver import Event, NonRetryableError, WebhookReceiver
from census_receiver.dedup import Claim, InMemoryDedupStore
from census_receiver.testing import make_body, make_delivery, sign
from tests.conftest import SECRET

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

PATH = "/webhooks/census"
LIMIT = 2048
WAIT = 10.0  # seconds any wait in these tests may take before it counts as a failure


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
    """What came back: status, headers (names lower-cased) and the decoded JSON body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Post = Callable[[Req], Answer]


def wait_for(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def signed(body: bytes, *, secret: str = SECRET, **extra: str) -> Req:
    headers = (("Content-Type", "application/json"), ("X-Signature", sign(body, secret)))
    return Req(body=body, headers=headers + tuple(extra.items()))


def delivery(event: str, **fields: Any) -> Req:
    return signed(make_body(event, **fields))


@dataclass
class Probe:
    """A receiver whose handlers record what they were called with."""

    receiver: WebhookReceiver
    calls: list[str] = field(default_factory=list)
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
_BIG = make_body("sync.failed", padding="x" * LIMIT)
_ERROR = {"error": ""}

CASES: tuple[Case, ...] = (
    Case("handled", delivery("sync.failed"), 200, {"status": "ok"}, 1),
    Case("no-handler", delivery("sync.started"), 200, {"status": "ignored"}),
    Case("unknown-event", delivery("sync.renamed"), 200, {"status": "ignored"}),
    Case("handler-raised", delivery("sync.alert.raised"), 500, _ERROR, 1),
    Case("handler-gave-up", delivery("sync.alert.resolved"), 200, {"status": "dropped"}, 1),
    Case("no-signature", Req(body=_FAILED.body), 401, _ERROR),
    Case("empty-signature", Req(body=_FAILED.body, headers=(("X-Signature", ""),)), 401, _ERROR),
    Case(
        "hex-signature", Req(body=_FAILED.body, headers=(("X-Signature", "ab" * 32),)), 401, _ERROR
    ),
    Case("wrong-secret", signed(_FAILED.body, secret="another"), 401, _ERROR),
    Case(
        "repeated-signature",
        signed(_FAILED.body, **{"x-signature": _FAILED.headers["X-Signature"]}),
        401,
        _ERROR,
    ),
    Case("too-large", signed(_BIG), 413, _ERROR),
    Case(
        "too-large-chunked", Req(body=_BIG, headers=signed(_BIG).headers, chunked=True), 413, _ERROR
    ),
    Case("not-json", signed(b"not json"), 400, _ERROR),
    Case("json-array", signed(b"[1, 2]"), 400, _ERROR),
    Case("no-ids", delivery("sync.failed", sync_id=None), 400, _ERROR),
    Case("get", Req(method="GET"), 405, _ERROR, allow="POST"),
    Case(
        "put",
        Req(method="PUT", body=_FAILED.body, headers=signed(_FAILED.body).headers),
        405,
        _ERROR,
        allow="POST",
    ),
)

#: Chunked, but within the limit: read to the end without a Content-Length.
CHUNKED_OK = Case(
    "handled-chunked",
    Req(body=_FAILED.body, headers=signed(_FAILED.body).headers, chunked=True),
    200,
    {"status": "ok"},
    1,
)


def check(case: Case, answer: Answer, probe: Probe) -> None:
    """Assert ``answer`` is what the contract says for ``case``."""
    assert answer.status == case.status, answer.body
    if case.answer is not None:
        got = answer.json()
        if case.answer == _ERROR:
            assert set(got) == {"error"} and got["error"]
        else:
            assert got == case.answer
    assert answer.headers.get("content-type") == "application/json"
    assert len(probe.calls) == case.calls
    if case.allow is not None:
        assert answer.headers.get("allow") == case.allow


# -- WSGI apps ------------------------------------------------------------------------


def environ_for(req: Req) -> WSGIEnvironment:
    builder = EnvironBuilder(
        path=req.path,
        method=req.method,
        input_stream=io.BytesIO(req.body) if req.body or req.chunked else None,
        headers=list(req.headers),
    )
    environ = builder.get_environ()
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
        response = client.open(environ_for(req))
        pairs = {k.lower(): v for k, v in response.headers.items()}
        return Answer(response.status_code, pairs, response.get_data())

    return post


def client_poster(client: Any) -> Post:
    """Send ``Req`` through an httpx-style client (Starlette's and FastAPI's TestClient)."""

    def post(req: Req) -> Answer:
        response = client.request(
            req.method,
            req.path,
            content=req.pieces() if req.chunked else req.body,
            headers=list(req.headers),
        )
        return Answer(response.status_code, dict(response.headers), response.content)

    return post


# -- the dedup rows --------------------------------------------------------------------


def check_duplicate(post: Post, probe: Probe) -> None:
    """A second copy of a handled delivery: 200 duplicate, handlers not run again."""
    request = delivery("sync.failed", sync_run_id=77)
    assert (post(request).status, probe.calls) == (200, ["sync.failed"])
    again = post(request)
    assert (again.status, again.json()) == (200, {"status": "duplicate"})
    assert probe.calls == ["sync.failed"]


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
    assert (answer.status, answer.json()["error"]) == (
        503,
        "the deduplication store is unavailable",
    )
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
    assert (answer.status, set(answer.json())) == (503, {"error"})
    assert probe.calls == []


#: (row, receiver options, check) for the dedup rows of the contract.
DEDUP_ROWS: tuple[tuple[str, Callable[[], dict[str, Any]], Callable[[Post, Probe], None]], ...] = (
    ("duplicate", lambda: {"dedup": InMemoryDedupStore()}, check_duplicate),
    ("in-progress", lambda: {"dedup": InMemoryDedupStore()}, check_in_progress),
    ("deadline", lambda: {"dedup": SilentStore(), "deadline": 0.1}, check_deadline),
    ("store-down", lambda: {"dedup": DownStore()}, check_store_down),
)
