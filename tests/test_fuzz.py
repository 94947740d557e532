"""Property tests: arbitrary requests through the core and through every adapter.

Hypothesis builds requests from arbitrary bodies (bytes, JSON of any shape,
Census-like payloads, mutations of real deliveries, sizes around the limit),
arbitrary header lists (several ``X-Signature`` headers, names in any case or
spelled with ``_``, random extra headers) and arbitrary signatures (valid,
valid with whitespace, wrong secret, other body, mutated, hex, URL-safe,
unpadded, non-canonical, padded with odd spaces, random text and bytes, empty,
absent). Each request goes through the sans-IO core (sync and async), the ASGI
middleware driven by hand (raw duplicate headers, arbitrary body chunking and
Content-Length), Starlette's and FastAPI's test clients, Werkzeug's test client
around the WSGI middleware, and Flask's test client (decorator and extension).

The properties, for every request:

- nothing unverified is dispatched: a body reaches JSON parsing, and an event
  reaches a handler, only if the request carried exactly one ``X-Signature``
  whose value (ASCII whitespace aside) is the canonical base64 HMAC-SHA256 of
  that exact body under the secret, computed here independently with
  ``hmac``, and the body is within the limit;
- a verified POST is never answered 401, and it is parsed exactly once, as sent;
- every answer has one of the contract's statuses and is a small JSON object.

What reached parsing is read from the receiver's counters: every delivery is
counted with a reason, and only the refusals of ``UNREAD`` come before the
body is read as JSON. What reached a handler is what a catch-all handler saw.

The default suite runs a few dozen examples per adapter. The long run is the
same properties with many more examples, marked ``fuzz`` and deselected by
default::

    python3 -m pytest -m fuzz                              # 5,000 examples per test
    CENSUS_FUZZ_EXAMPLES=50000 python3 -m pytest -m fuzz   # or as many as wanted
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from census_receiver import Event, WebhookReceiver
from census_receiver.answers import REASONS
from census_receiver.testing import EVENT_NAMES, make_body

from .adapter_contract import LIMIT, PATH, unreachable_asgi, unreachable_wsgi
from .conftest import SECRET
from .support import Channel, http_scope

CONTRACT_CODES = frozenset(REASONS.values())
OTHER_SECRET = "whsec_fuzz_other_secret"
FUZZ_EXAMPLES = int(os.environ.get("CENSUS_FUZZ_EXAMPLES", "5000"))
_COMMON = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
QUICK = settings(_COMMON, max_examples=25)
LONG = settings(_COMMON, max_examples=FUZZ_EXAMPLES)
_WHITESPACE = b" \t\r\n\x0b\x0c"
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


# -- what is sent ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One generated request; ``chunks`` and ``length`` are used by the hand-driven ASGI path."""

    method: str
    body: bytes
    headers: tuple[tuple[str, bytes], ...]
    chunks: tuple[int, ...] = ()
    length: str | None = "auto"


def expected_signature(body: bytes, secret: str = SECRET) -> bytes:
    """Census's recipe, independent of census_receiver."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())


def is_verified(request: Request, *, folds_underscores: bool = False) -> bool:
    """Whether the request is a delivery Census could have sent, by this module's own reading."""
    if len(request.body) > LIMIT:
        return False

    def signature_name(name: str) -> bool:
        lowered = name.lower()
        return lowered == "x-signature" or (folds_underscores and lowered == "x_signature")

    values = [v for n, v in request.headers if signature_name(n)]
    return len(values) == 1 and values[0].strip(_WHITESPACE) == expected_signature(request.body)


_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(20, 5000).map(lambda digits: 10**digits - 1)
    | st.floats()
    | st.text(max_size=20)
)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_ids = st.one_of(st.integers(), st.text(max_size=6), st.none(), st.booleans(), st.floats())
_field_names = st.sampled_from(
    ["workspace_id", "sync_id", "sync_run_id", "status", "alert_instance_id", "message", "details"]
)


@st.composite
def _payload_body(draw: st.DrawFn) -> bytes:
    payload: dict[str, Any] = draw(
        st.dictionaries(_field_names | st.text(max_size=6), _ids | _json, max_size=6)
    )
    event = draw(st.sampled_from(EVENT_NAMES) | st.text(max_size=30) | _json_leaf)
    if draw(st.booleans()):
        payload = {**json.loads(make_body(draw(st.sampled_from(EVENT_NAMES)))), **payload}
    payload["event"] = event
    return _dumps(payload)


@st.composite
def _mutated(draw: st.DrawFn, body: bytes) -> bytes:
    how = draw(st.sampled_from(["flip", "cut", "insert", "dup-key", "nest", "pad", "bom", "as-is"]))
    if how == "flip" and body:
        i = draw(st.integers(0, len(body) - 1))
        return body[:i] + bytes([body[i] ^ draw(st.integers(1, 255))]) + body[i + 1 :]
    if how == "cut":
        return body[: draw(st.integers(0, len(body)))]
    if how == "insert":
        i = draw(st.integers(0, len(body)))
        return body[:i] + draw(st.binary(min_size=1, max_size=8)) + body[i:]
    if how == "dup-key" and body.startswith(b"{"):
        return b'{"event": "sync.failed", ' + body[1:]
    if how == "nest":
        depth = draw(st.integers(1, 1500))
        return b'{"event": "x", "n": ' + b"[" * depth + b"]" * depth + b"}"
    if how == "pad":
        # Trailing whitespace is still JSON: sizes just under, at and over the limit.
        size = draw(st.integers(LIMIT - 3, LIMIT + 3))
        return body + b" " * max(0, size - len(body))
    if how == "bom":
        return b"\xef\xbb\xbf" + body
    return body


def _dumps(value: Any) -> bytes:
    try:
        return json.dumps(value).encode("utf-8")
    except ValueError:  # an integer too long to print: send one as bytes
        return b'{"event": "x", "n": ' + b"9" * 5000 + b"}"


_bodies = st.one_of(
    st.binary(max_size=300),
    _json.map(_dumps),
    _payload_body(),
    st.sampled_from(EVENT_NAMES).map(make_body),
).flatmap(_mutated)


@st.composite
def _signature_headers(draw: st.DrawFn, body: bytes) -> list[tuple[str, bytes]]:
    good = expected_signature(body)
    name = draw(st.sampled_from(["X-Signature", "x-signature", "X-SIGNATURE", "x-Signature"]))
    text = good.decode()
    index = _ALPHABET.index(text[42])
    policies: dict[str, Callable[[], list[bytes]]] = {
        "valid": lambda: [good],
        "valid-spaced": lambda: [b" \t" + good + b"  "],
        "valid-odd-space": lambda: [_surround(good, draw(st.sampled_from(_ODD_SPACES)))],
        "wrong-secret": lambda: [expected_signature(body, OTHER_SECRET)],
        "other-body": lambda: [expected_signature(body + b"x")],
        "random-digest": lambda: [base64.b64encode(draw(st.binary(min_size=32, max_size=32)))],
        "mutated": lambda: [_mutate_char(good, draw(st.integers(0, 43)), draw(st.integers(1, 63)))],
        "hex": lambda: [base64.b64decode(good).hex().encode()],
        "urlsafe": lambda: [good.translate(bytes.maketrans(b"+/", b"-_"))],
        "unpadded": lambda: [good.rstrip(b"=")],
        "non-canonical": lambda: [(text[:42] + _ALPHABET[index + 1 + index % 3] + "=").encode()],
        "text": lambda: [draw(st.text(max_size=60)).encode("utf-8")],
        "bytes": lambda: [draw(st.binary(max_size=60))],
        "empty": lambda: [b""],
        "absent": lambda: [],
        "twice": lambda: [good, good],
        "valid-and-junk": lambda: [good, draw(st.binary(max_size=50))],
        "folded": lambda: [good + b", " + good],
    }
    values = policies[draw(st.sampled_from(sorted(policies)))]()
    pairs = [(name, value) for value in values]
    if draw(st.integers(0, 9)) == 0:  # the same name spelled with "_": a different header
        pairs.append(("X_Signature", draw(st.sampled_from([good, b"junk"]))))
    return pairs


# Bytes that str.strip() or a lenient server might drop around a value (0xA0 and 0x85
# are what a latin-1 decoding server makes of U+00A0 / U+0085), and ASCII ones it must.
_ODD_SPACES = [b"\xa0", b"\x85", b"\x1c", b"\x1f", "\u2028".encode(), "\u3000".encode(), b"\x0b"]


def _surround(value: bytes, odd: bytes) -> bytes:
    return odd + value if odd[0] % 2 else value + odd


def _mutate_char(value: bytes, position: int, shift: int) -> bytes:
    chars = bytearray(value)
    if chars[position] != ord("="):
        chars[position] = ord(_ALPHABET[(_ALPHABET.index(chr(chars[position])) + shift) % 64])
    else:
        chars[position] = ord("A")
    return bytes(chars)


_extra_headers = st.lists(
    st.tuples(
        st.sampled_from(
            ["Content-Type", "User-Agent", "X-Census-Event", "Accept", "X-Forwarded-For"]
        ),
        st.binary(max_size=40),
    ),
    max_size=3,
)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    body = draw(_bodies)
    headers = draw(_signature_headers(body)) + draw(_extra_headers)
    headers = draw(st.permutations(headers))
    method = draw(st.sampled_from(["POST"] * 12 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    chunks = tuple(draw(st.lists(st.integers(0, 700), max_size=5)))
    length = draw(
        st.sampled_from(["auto", "auto", "auto", None, "0", "1", "-1", "abc", str(LIMIT + 1)])
    )
    return Request(method, body, tuple(headers), chunks, length)


# -- what is observed --------------------------------------------------------------------------


#: The reasons of a refusal made before the body is read as JSON.
UNREAD = frozenset(
    {
        "missing_signature",
        "invalid_signature",
        "payload_too_large",
        "method_not_allowed",
        "incomplete_body",
    }
)


@dataclass
class Watch:
    """A receiver with a catch-all handler, and what reached parsing and handlers."""

    receiver: WebhookReceiver
    handled: list[Event] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.handled.clear()
        self.receiver.stats.reset()

    def parsed(self) -> int:
        """Deliveries counted with a reason given once the body was read as JSON."""
        counts = self.receiver.stats.counts().items()
        return sum(n for (_, reason), n in counts if reason not in UNREAD)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


@pytest.fixture(scope="module")
def watch() -> Iterator[Watch]:
    receiver = WebhookReceiver([OTHER_SECRET + "-not-used", SECRET], max_body_size=LIMIT)
    w = Watch(receiver)

    @receiver.on("*")
    def record(event: Event) -> None:
        with w.lock:
            w.handled.append(event)

    @receiver.on("sync.alert.raised")
    def fail(event: Event) -> None:
        raise RuntimeError("a handler failed")

    yield w
    receiver.close()


def check(
    watch: Watch,
    request: Request,
    answer: Answer,
    *,
    keys: frozenset[str] = frozenset({"status", "error"}),
    folds_underscores: bool = False,
) -> None:
    verified = is_verified(request, folds_underscores=folds_underscores)
    assert answer.status in CONTRACT_CODES
    assert len(answer.body) < 300
    decoded = json.loads(answer.body)
    assert isinstance(decoded, dict) and len(decoded) == 1 and set(decoded) <= keys
    parsed = watch.parsed()
    if parsed or watch.handled:
        assert verified, "an unverified request was parsed or dispatched"
    assert parsed <= 1 and len(watch.handled) <= 1
    for event in watch.handled:  # the event is the body as sent
        assert dict(event.raw) == json.loads(request.body)
    if request.method != "POST":
        assert answer.status == 405
    elif verified:
        assert answer.status != 401 and parsed == 1
    else:
        assert answer.status in (401, 413)


def _pairs(request: Request) -> list[tuple[str, bytes]]:
    return list(request.headers)


def _raw_pairs(request: Request) -> list[tuple[bytes, bytes]]:
    return [(n.encode("latin-1"), v) for n, v in request.headers]


def _text_headers(request: Request) -> list[tuple[str, str]]:
    # WSGI servers hand header values over as latin-1 text; CR, LF and NUL never arrive.
    return [
        (n, v.decode("latin-1")) for n, v in request.headers if not any(c in v for c in b"\r\n\0")
    ]


def _without_unsendable(request: Request) -> Request:
    return Request(
        request.method,
        request.body,
        tuple((n, v) for n, v in request.headers if not any(c in v for c in b"\r\n\0")),
    )


def _property(run: Callable[..., None]) -> tuple[Callable[..., None], Callable[..., None]]:
    """The quick test for the default suite, and the long one for ``-m fuzz``."""
    quick = QUICK(given(request=requests())(run))
    long = pytest.mark.fuzz(LONG(given(request=requests())(run)))
    return quick, long


# -- the core ----------------------------------------------------------------------------------


def _core_sync(watch: Watch, request: Request) -> None:
    watch.reset()
    outcome = watch.receiver.check_request(request.method, str(len(request.body)))
    if outcome is None:
        outcome = watch.receiver.handle(request.body, _raw_pairs(request))
    check(watch, request, Answer(outcome.status, outcome.body))


test_core_sync, test_core_sync_long = _property(_core_sync)


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as r:
        yield r


def _core_async(watch: Watch, runner: asyncio.Runner, request: Request) -> None:
    watch.reset()
    outcome = watch.receiver.check_request(request.method, None)
    if outcome is None:
        outcome = runner.run(watch.receiver.handle_async(request.body, _raw_pairs(request)))
    check(watch, request, Answer(outcome.status, outcome.body))


test_core_async, test_core_async_long = _property(_core_async)


# -- ASGI, driven by hand: raw duplicate headers, any chunking, any Content-Length ------------


def _asgi(watch: Watch, runner: asyncio.Runner, request: Request) -> None:
    from census_receiver.starlette import CensusWebhookMiddleware

    watch.reset()
    app = CensusWebhookMiddleware(unreachable_asgi, receiver=watch.receiver, path=PATH)
    headers = [(n.lower().encode("latin-1"), v) for n, v in request.headers]
    if request.length == "auto":
        headers.append((b"content-length", str(len(request.body)).encode()))
    elif request.length is not None:
        headers.append((b"content-length", request.length.encode()))
    pieces, rest = [], request.body
    for size in request.chunks:
        pieces.append(rest[:size])
        rest = rest[size:]
    pieces.append(rest)
    channel = Channel(
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    )
    scope = http_scope(PATH, method=request.method, headers=headers)
    runner.run(app(scope, channel.receive, channel.send))
    start, body = channel.sent
    assert start["type"] == "http.response.start" and body["type"] == "http.response.body"
    assert channel.headers[b"content-length"] == str(len(channel.body)).encode()
    if request.length == str(LIMIT + 1):  # a declared length over the limit: refused unread
        assert start["status"] in (405, 413) and not watch.parsed()
        return
    check(watch, request, Answer(start["status"], channel.body))


test_asgi_by_hand, test_asgi_by_hand_long = _property(_asgi)


# -- Starlette and FastAPI test clients --------------------------------------------------------


@pytest.fixture(scope="module")
def starlette_client(watch: Watch) -> Iterator[Any]:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from census_receiver.starlette import CensusWebhookMiddleware

    app = Starlette()
    app.add_middleware(CensusWebhookMiddleware, receiver=watch.receiver, path=PATH)
    with TestClient(app) as client:
        yield client


def _starlette(watch: Watch, starlette_client: Any, request: Request) -> None:
    watch.reset()
    response = starlette_client.request(
        request.method, PATH, content=request.body, headers=_pairs(request)
    )
    check(watch, request, Answer(response.status_code, response.content))


test_starlette_client, test_starlette_client_long = _property(_starlette)


@pytest.fixture(scope="module")
def fastapi_client(watch: Watch) -> Iterator[Any]:
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient

    from census_receiver.fastapi import census_event
    from census_receiver.starlette import CensusWebhookMiddleware

    app = FastAPI()
    app.add_middleware(CensusWebhookMiddleware, receiver=watch.receiver, path=PATH)

    verified_event = Depends(census_event(watch.receiver))

    @app.post("/own-route")
    async def own_route(event: Event = verified_event) -> Any:
        return {"status": "ok"}

    with TestClient(app) as client:
        yield client


def _fastapi(watch: Watch, fastapi_client: Any, request: Request) -> None:
    watch.reset()
    response = fastapi_client.request(
        request.method, PATH, content=request.body, headers=_pairs(request)
    )
    check(watch, request, Answer(response.status_code, response.content))
    watch.reset()
    response = fastapi_client.request(
        request.method, "/own-route", content=request.body, headers=_pairs(request)
    )
    # FastAPI's own shape: {"detail": ...} for refusals, the route's answer otherwise.
    check(
        watch,
        request,
        Answer(response.status_code, response.content),
        keys=frozenset({"detail", "status"}),
    )


test_fastapi_client, test_fastapi_client_long = _property(_fastapi)


# -- WSGI and Flask test clients ---------------------------------------------------------------


@pytest.fixture(scope="module")
def wsgi_client(watch: Watch) -> Any:
    from werkzeug.test import Client

    from census_receiver.wsgi import CensusWebhookMiddleware

    return Client(CensusWebhookMiddleware(unreachable_wsgi, receiver=watch.receiver, path=PATH))


def _wsgi(watch: Watch, wsgi_client: Any, request: Request) -> None:
    watch.reset()
    response = wsgi_client.open(
        PATH, method=request.method, data=request.body, headers=_text_headers(request)
    )
    sent = _without_unsendable(request)
    check(watch, sent, Answer(response.status_code, response.data), folds_underscores=True)


test_wsgi_client, test_wsgi_client_long = _property(_wsgi)


@pytest.fixture(scope="module")
def flask_clients(watch: Watch) -> tuple[Any, Any]:
    from flask import Flask

    from census_receiver.flask import CensusWebhooks, census_webhook

    decorated = Flask("decorated")

    @decorated.post(PATH)
    @census_webhook(watch.receiver)
    def view(event: Event) -> None:
        return None

    extension = Flask("extension")
    CensusWebhooks(extension, receiver=watch.receiver)
    return decorated.test_client(), extension.test_client()


def _flask(watch: Watch, flask_clients: tuple[Any, Any], request: Request) -> None:
    decorated, extension = flask_clients
    sent = _without_unsendable(request)
    for client in (extension, decorated):
        if client is decorated and request.method != "POST":
            continue  # Flask's routing answers other methods before the view: not ours
        watch.reset()
        response = client.open(
            PATH, method=request.method, data=request.body, headers=_text_headers(request)
        )
        check(watch, sent, Answer(response.status_code, response.data), folds_underscores=True)


test_flask_clients, test_flask_clients_long = _property(_flask)


# -- the oracle itself -------------------------------------------------------------------------


def test_oracle_agrees_with_census_recipe_on_a_real_delivery() -> None:
    body = make_body("sync.failed")
    good = expected_signature(body)
    assert good.decode() == "UQ0w3LiluLK0dHp9GJoK/ARnTBYtKyU0pZHCxiCEXTw="  # see test_signature.py
    assert is_verified(Request("POST", body, (("X-Signature", b" " + good),)))
    assert not is_verified(Request("POST", body, (("X-Signature", good),) * 2))
    assert not is_verified(Request("POST", body, (("X_Signature", good),)))
    assert is_verified(Request("POST", body, (("X_Signature", good),)), folds_underscores=True)
