"""Hostile input: signatures, payloads, size, secrets, answers, allowlist.

Through the core first, then through every adapter (ASGI by hand, Starlette's and
FastAPI's test clients, WSGI, Flask), then against real uvicorn and Werkzeug
servers over raw sockets (slow, endless and oversized bodies). Every case
asserts the exact status, that no handler ran, and, for anything unverified,
that the body never reached JSON parsing (and, for anything malformed, not even
the HMAC). The counting is done by wrappers installed on our own functions
(``census_receiver.receiver.parse_event``, ``SecretSet.digest`` and the
``hmac.compare_digest`` the signature module calls); each wrapper calls through,
so behaviour is unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import importlib
import json
import logging
import select
import socket
import traceback
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import pytest

import census_receiver.receiver as receiver_module
from census_receiver import (
    ConfigurationError,
    Event,
    Outcome,
    RequestRejected,
    WebhookReceiver,
    compute_signature,
)
from census_receiver.dedup import InMemoryDedupStore
from census_receiver.events import parse_event
from census_receiver.signature import SecretSet
from census_receiver.testing import make_body, make_payload, sign, signed_headers

from .adapter_contract import PATH, WAIT, Answer, Post, Req, wsgi_poster
from .conftest import SECRET
from .integration.conftest import Served, read_response
from .integration.conftest import uvicorn_server as uvicorn_server  # a fixture
from .integration.conftest import werkzeug_server as werkzeug_server  # a fixture
from .log_secrecy import SecrecyWatch

#: Every status the HTTP contract allows.
CONTRACT_CODES = frozenset({200, 400, 401, 403, 405, 409, 413, 500, 503})
OTHER_SECRET = "whsec_hardening_other"
BODY = make_body("sync.failed")
SIG = sign(BODY, SECRET)
DIGEST = base64.b64decode(SIG)
# A body whose signature holds both "+" and "/", so the URL-safe spelling differs.
_RUN_ID = next(
    n
    for n in range(1000, 100_000)
    if {"+", "/"} <= set(sign(make_body("sync.failed", sync_run_id=n), SECRET))
)
URLSAFE_BODY = make_body("sync.failed", sync_run_id=_RUN_ID)
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@dataclass
class Probe:
    """A receiver with a catch-all handler, and counters on the steps it takes."""

    receiver: WebhookReceiver
    run: Callable[..., Outcome]
    parsed: list[bytes] = field(default_factory=list)
    digests: list[int] = field(default_factory=list)
    compares: list[tuple[type, type]] = field(default_factory=list)
    handled: list[Event] = field(default_factory=list)

    def deliver(self, body: bytes, headers: Any) -> Outcome:
        outcome = self.run(body, headers)
        assert outcome.status in CONTRACT_CODES
        assert_small_json(outcome)
        return outcome

    def assert_refused_unparsed(self, outcome: Outcome, status: int) -> None:
        assert outcome.status == status
        assert outcome.event is None
        assert self.parsed == []
        assert self.handled == []


def assert_small_json(outcome: Outcome) -> dict[str, Any]:
    """The answer is a one-key JSON object, ASCII, short, with nothing HTML could act on."""
    text = outcome.body.decode("ascii")
    assert len(text) < 300
    assert not any(c in text for c in "<>&\n\r")
    decoded = json.loads(text)
    assert isinstance(decoded, dict) and len(decoded) == 1
    ((key, value),) = decoded.items()
    assert key == ("status" if outcome.ok else "error") and isinstance(value, str)
    assert dict(outcome.headers)["content-length"] == str(len(outcome.body))
    assert dict(outcome.headers)["content-type"] == "application/json"
    return decoded


def _make_probe(
    monkeypatch: pytest.MonkeyPatch, mode: str, receiver: WebhookReceiver
) -> Iterator[Probe]:
    def run_async(*args: Any, **kwargs: Any) -> Outcome:
        return asyncio.run(receiver.handle_async(*args, **kwargs))

    probe = Probe(receiver, receiver.handle if mode == "sync" else run_async)
    real_parse = parse_event
    real_digest = SecretSet.digest
    real_compare = hmac.compare_digest

    def counting_parse(body: Any) -> Event:
        probe.parsed.append(bytes(body))
        return real_parse(body)

    def counting_digest(self: SecretSet, body: Any, position: int = 0) -> bytes:
        probe.digests.append(position)
        return real_digest(self, body, position)

    def counting_compare(a: Any, b: Any) -> bool:
        probe.compares.append((type(a), type(b)))
        return real_compare(a, b)

    assert receiver_module.__dict__["parse_event"] is parse_event
    monkeypatch.setattr(receiver_module, "parse_event", counting_parse)
    monkeypatch.setattr(SecretSet, "digest", counting_digest)
    monkeypatch.setattr(hmac, "compare_digest", counting_compare)
    receiver.on("*")(probe.handled.append)
    yield probe
    receiver.close()


@pytest.fixture(params=["sync", "async"])
def probe(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Probe]:
    yield from _make_probe(monkeypatch, request.param, WebhookReceiver(SECRET))


@pytest.fixture(params=["sync", "async"])
def rotating(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Probe]:
    """Three secrets configured, as during a rotation with two webhooks."""
    receiver = WebhookReceiver([OTHER_SECRET, "whsec_hardening_third", SECRET])
    yield from _make_probe(monkeypatch, request.param, receiver)


# -- X-Signature -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(SIG, id="exact"),
        pytest.param(f"  {SIG}", id="leading-spaces"),
        pytest.param(f"{SIG}\t", id="trailing-tab"),
        pytest.param(f" \t{SIG} \t", id="both"),
        pytest.param(SIG.encode(), id="bytes"),
        pytest.param(f" {SIG} ".encode(), id="bytes-spaces"),
    ],
)
def test_one_well_formed_signature_is_accepted(probe: Probe, value: str | bytes) -> None:
    outcome = probe.deliver(BODY, [("X-Signature", value)])
    assert outcome.status == 200
    assert [e.event for e in probe.handled] == ["sync.failed"]
    assert probe.parsed == [BODY]


def _non_canonical(sig: str) -> str:
    # The 43rd character carries 4 digest bits and 2 unused bits that must be zero.
    index = _ALPHABET.index(sig[42])
    assert index % 4 == 0
    return sig[:42] + _ALPHABET[index + 1] + sig[43:]


MALFORMED: list[Any] = [
    pytest.param(DIGEST.hex(), id="hex"),
    pytest.param(DIGEST.hex().upper(), id="hex-upper"),
    pytest.param("sha256=" + DIGEST.hex(), id="hex-prefixed"),
    pytest.param(SIG.rstrip("="), id="unpadded"),
    pytest.param(SIG + "=", id="extra-padding"),
    pytest.param(SIG[:-2] + "==", id="double-padding"),
    pytest.param(SIG[:-4], id="truncated"),
    pytest.param(SIG + "AAAA", id="too-long"),
    pytest.param(SIG + SIG, id="doubled"),
    pytest.param(f"{SIG}, {SIG}", id="folded-duplicate"),
    pytest.param(f"{SIG},{sign(BODY, OTHER_SECRET)}", id="folded-pair"),
    pytest.param("sha256=" + SIG, id="prefixed"),
    pytest.param(SIG[:21] + " " + SIG[22:], id="inner-space"),
    pytest.param(SIG[:21] + "\n" + SIG[22:], id="inner-newline"),
    pytest.param(SIG[:-1] + "\0", id="nul"),
    pytest.param(SIG[:-2] + "é=", id="non-ascii-str"),
    pytest.param(SIG.encode()[:-1] + b"\xff", id="non-ascii-bytes"),
    pytest.param(SIG.encode() + b"\xa0", id="non-ascii-byte-around"),
    pytest.param(SIG + "\xa0", id="no-break-space-around"),
    pytest.param("\u2003" + SIG, id="em-space-around"),
    pytest.param(SIG + "\u2028", id="line-separator-around"),
    pytest.param("\x1c" + SIG, id="control-around"),
    pytest.param(SIG.translate({ord(c): ord(c) + 0xFEE0 for c in "ABCXYZ"}), id="fullwidth"),
    pytest.param(_non_canonical(SIG), id="non-canonical-bits"),
    pytest.param(base64.b64encode(DIGEST.hex().encode()).decode(), id="base64-of-hex"),
    pytest.param(base64.b64encode(DIGEST + b"\0").decode(), id="33-bytes"),
    pytest.param(base64.b64encode(DIGEST[:31]).decode() + "A", id="31-bytes"),
    pytest.param("A" * 44, id="no-padding-44"),
]


@pytest.mark.parametrize("value", MALFORMED)
def test_malformed_signature_answers_401_before_hmac_and_json(
    probe: Probe, value: str | bytes
) -> None:
    outcome = probe.deliver(BODY, [("X-Signature", value)])
    probe.assert_refused_unparsed(outcome, 401)
    assert outcome.reason == "invalid_signature"
    assert probe.digests == []


def test_url_safe_signature_answers_401(probe: Probe) -> None:
    sig = sign(URLSAFE_BODY, SECRET)
    urlsafe = sig.translate(str.maketrans("+/", "-_"))
    assert urlsafe != sig
    outcome = probe.deliver(URLSAFE_BODY, {"X-Signature": urlsafe})
    probe.assert_refused_unparsed(outcome, 401)
    assert probe.digests == []
    assert probe.deliver(URLSAFE_BODY, {"X-Signature": sig}).status == 200


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="absent"),
        pytest.param({"X-Signature": ""}, id="empty"),
        pytest.param({"X-Signature": " \t "}, id="blank"),
        pytest.param([(b"x-signature", b"")], id="empty-bytes"),
        pytest.param({"X-Signature-256": SIG}, id="other-name"),
        pytest.param({"Authorization": SIG}, id="authorization"),
    ],
)
def test_missing_or_empty_signature_answers_401(probe: Probe, headers: Any) -> None:
    outcome = probe.deliver(BODY, headers)
    probe.assert_refused_unparsed(outcome, 401)
    assert outcome.reason == "missing_signature"
    assert probe.digests == []


def _duplicates() -> list[Any]:
    from starlette.datastructures import Headers as StarletteHeaders
    from werkzeug.datastructures import Headers as WerkzeugHeaders

    raw = [(b"x-signature", SIG.encode()), (b"x-signature", SIG.encode())]
    return [
        pytest.param([("X-Signature", SIG), ("X-Signature", SIG)], id="str-pairs-same"),
        pytest.param([("X-Signature", SIG), ("x-signature", "junk")], id="str-pairs-mixed"),
        pytest.param([("x-signature", "junk"), ("X-SIGNATURE", SIG)], id="junk-first"),
        pytest.param(raw, id="asgi-raw-same"),
        pytest.param([(b"X-Signature", SIG.encode()), (b"x-signature", b"")], id="asgi-empty"),
        pytest.param({"X-Signature": SIG, "x-signature": SIG}, id="dict-case-variants"),
        pytest.param(WerkzeugHeaders([("X-Signature", SIG)] * 2), id="werkzeug-headers"),
        pytest.param(StarletteHeaders(raw=raw), id="starlette-headers"),
        pytest.param([("X-Signature", SIG)] * 50, id="fifty"),
    ]


@pytest.mark.parametrize("headers", _duplicates())
def test_repeated_signature_header_answers_401_before_hmac(probe: Probe, headers: Any) -> None:
    outcome = probe.deliver(BODY, headers)
    probe.assert_refused_unparsed(outcome, 401)
    assert "more than once" in outcome.json()["error"]
    assert probe.digests == []


@pytest.mark.parametrize(
    ("body", "value"),
    [
        pytest.param(BODY, sign(BODY, OTHER_SECRET), id="other-secret"),
        pytest.param(BODY, sign(BODY + b" ", SECRET), id="other-body"),
        pytest.param(BODY, sign(b"", SECRET), id="empty-body-signature"),
        pytest.param(BODY + b" ", SIG, id="body-appended"),
        pytest.param(BODY[:-1], SIG, id="body-truncated"),
        pytest.param(b"", SIG, id="body-empty"),
        pytest.param(BODY, "A" * 43 + "=", id="zero-digest"),
        pytest.param(BODY, compute_signature(BODY, SECRET.upper()), id="secret-case"),
    ],
)
def test_well_formed_wrong_signature_answers_401_without_json(
    probe: Probe, body: bytes, value: str
) -> None:
    outcome = probe.deliver(body, {"X-Signature": value})
    probe.assert_refused_unparsed(outcome, 401)
    assert outcome.reason == "invalid_signature"
    assert probe.digests == [0]
    assert probe.compares == [(bytes, bytes)]


def test_forgery_is_compared_in_constant_time_against_every_secret(rotating: Probe) -> None:
    outcome = rotating.deliver(BODY, {"X-Signature": sign(BODY, "whsec_not_configured")})
    rotating.assert_refused_unparsed(outcome, 401)
    assert rotating.digests == [0, 1, 2]
    # compare_digest on bytes: constant-time, and no TypeError on odd input.
    assert rotating.compares == [(bytes, bytes)] * 3


@pytest.mark.parametrize(("secret", "position"), [(OTHER_SECRET, 0), (SECRET, 2)])
def test_each_configured_secret_verifies(rotating: Probe, secret: str, position: int) -> None:
    outcome = rotating.deliver(BODY, signed_headers(BODY, secret))
    assert outcome.status == 200
    assert rotating.digests == list(range(position + 1))
    assert len(rotating.handled) == 1


# -- payloads after verification ------------------------------------------------------------


def _ids(**overrides: Any) -> bytes:
    return json.dumps(make_payload("sync.failed", **overrides)).encode()


PAYLOADS: list[Any] = [
    pytest.param(b"\xff\xfe{}", "not valid UTF-8", id="invalid-utf8"),
    pytest.param(b'{"event": "sync.\xc0\xaffailed"}', "not valid UTF-8", id="overlong-utf8"),
    pytest.param(b'{"event": "\xed\xa0\x80"}', "not valid UTF-8", id="encoded-surrogate"),
    pytest.param('{"event": "x"}'.encode("utf-16"), "not valid UTF-8", id="utf16"),
    pytest.param(b'\xef\xbb\xbf{"event": "x"}', "not valid JSON", id="utf8-bom"),
    pytest.param(b"", "not valid JSON", id="empty"),
    pytest.param(b"   \n", "not valid JSON", id="blank"),
    pytest.param(b"[]", "not an array", id="array"),
    pytest.param(b'[{"event": "sync.failed"}]', "not an array", id="wrapped-array"),
    pytest.param(b'"sync.failed"', "not a string", id="string"),
    pytest.param(b"3167", "not a number", id="number"),
    pytest.param(b"null", "not null", id="null"),
    pytest.param(b"true", "not a boolean", id="boolean"),
    pytest.param(b'{"event": "x"} {}', "not valid JSON", id="two-documents"),
    pytest.param(b'{"event": "x",}', "not valid JSON", id="trailing-comma"),
    pytest.param(b"{'event': 'x'}", "not valid JSON", id="single-quotes"),
    pytest.param(b'{"event": "x" /* c */}', "not valid JSON", id="comment"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "nested too deeply", id="deep-arrays"),
    pytest.param(b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested too deeply", id="deep-objects"),
    pytest.param(
        b'{"event": "sync.failed", "x": ' + b"[" * 60_000 + b"]" * 60_000 + b"}",
        "nested too deeply",
        id="deep-field",
    ),
    pytest.param(b'{"event": "x", "n": ' + b"9" * 5000 + b"}", "number is too long", id="huge-int"),
    pytest.param(b'{"event": "x", "n": -' + b"9" * 5000 + b"}", "too long", id="huge-negative"),
    pytest.param(b'{"event": "x", "n": 1e400}', "too large for a float", id="huge-float"),
    pytest.param(b'{"event": "x", "n": -1e999999}', "too large", id="huge-negative-float"),
    pytest.param(b'{"event": "x", "n": 1' + b"0" * 400 + b".5}", "too large", id="long-float"),
    pytest.param(b'{"event": "x", "n": NaN}', "contains NaN", id="nan"),
    pytest.param(b'{"event": "x", "n": Infinity}', "contains Infinity", id="infinity"),
    pytest.param(b'{"event": "x", "n": [-Infinity]}', "contains -Infinity", id="neg-infinity"),
    pytest.param(b'{"event": "x", "event": "y"}', "repeats the key 'event'", id="dup-event"),
    pytest.param(
        b'{"event": "sync.failed", "workspace_id": 1, "workspace_id": 2}',
        "repeats the key 'workspace_id'",
        id="dup-id",
    ),
    pytest.param(b'{"event": "x", "d": {"k": 1, "k": 1}}', "repeats the key 'k'", id="dup-nested"),
    pytest.param(b"{}", "no 'event' field", id="no-event"),
    pytest.param(b'{"event": null}', "no 'event' field", id="null-event"),
    pytest.param(b'{"event": 7}', "'event' field must be a string", id="int-event"),
    pytest.param(b'{"event": ["sync.failed"]}', "must be a string", id="list-event"),
    pytest.param(b'{"event": {"name": "x"}}', "must be a string", id="object-event"),
    pytest.param(b'{"event": true}', "must be a string", id="bool-event"),
    pytest.param(_ids(workspace_id=None), "has no 'workspace_id' field", id="missing-workspace"),
    pytest.param(_ids(sync_id=None), "has no 'sync_id' field", id="missing-sync"),
    pytest.param(_ids(sync_run_id=None), "has no 'sync_run_id' field", id="missing-run"),
    pytest.param(_ids(sync_id="3167956"), "'sync_id' field must be an integer", id="string-id"),
    pytest.param(_ids(sync_id=3167956.0), "'sync_id' field must be an integer", id="float-id"),
    pytest.param(_ids(sync_id=True), "'sync_id' field must be an integer", id="bool-id"),
    pytest.param(_ids(sync_id=[1]), "'sync_id' field must be an integer", id="list-id"),
    pytest.param(
        json.dumps(make_payload("sync.completed", status=1)).encode(),
        "'status' field must be a string",
        id="int-status",
    ),
    pytest.param(
        json.dumps(make_payload("sync.alert.raised", alert_instance_id="626248")).encode(),
        "'alert_instance_id' field must be an integer",
        id="string-alert-id",
    ),
]


@pytest.mark.parametrize(("body", "reason"), PAYLOADS)
def test_verified_malformed_payload_answers_400_with_reason(
    probe: Probe, body: bytes, reason: str
) -> None:
    outcome = probe.deliver(body, signed_headers(body, SECRET))
    assert outcome.status == 400
    assert outcome.reason == "malformed_payload"
    assert reason in outcome.json()["error"]
    assert "Traceback" not in outcome.body.decode()
    assert probe.handled == []
    assert probe.parsed == [body]


def test_duplicate_keys_are_refused_whichever_value_would_win(probe: Probe) -> None:
    # A lenient parser keeps the last value; another keeps the first. Neither is guessed.
    for body in (
        b'{"workspace_id": 1, "sync_id": 2, "sync_run_id": 3, "event": "sync.failed",'
        b' "event": "sync.success"}',
        b'{"workspace_id": 1, "workspace_id": 3167, "sync_id": 2, "sync_run_id": 3,'
        b' "event": "sync.failed"}',
    ):
        assert probe.deliver(body, signed_headers(body, SECRET)).status == 400
    assert probe.handled == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"event": "x", "s": "\\u0000\\ud800"}', id="nul-and-lone-surrogate"),
        pytest.param(b'{"event": "\\ud800"}', id="lone-surrogate-name"),
        pytest.param(b'{"event": "x", "n": 1e-400, "m": -0.0}', id="tiny-float"),
        pytest.param(b'{"event": "x", "n": ' + b"9" * 4000 + b"}", id="long-but-allowed-int"),
        pytest.param(b'{"event": "x", "a": ' + b"[" * 200 + b"]" * 200 + b"}", id="nested-200"),
    ],
)
def test_odd_but_valid_payloads_are_handled(probe: Probe, body: bytes) -> None:
    outcome = probe.deliver(body, signed_headers(body, SECRET))
    assert outcome.status == 200
    assert len(probe.handled) == 1


def test_odd_payloads_survive_deduplication() -> None:
    receiver = WebhookReceiver(SECRET, dedup=InMemoryDedupStore())
    seen: list[str] = []
    receiver.on("*")(lambda e: seen.append(e.event))
    for body in (b'{"event": "\\ud800"}', b'{"event": "x", "workspace_id": 1, "sync_id": 2}'):
        for _ in range(2):
            assert receiver.handle(body, signed_headers(body, SECRET)).ok
    assert len(seen) == 2
    receiver.close()


# -- resource bounds --------------------------------------------------------------------------


@pytest.fixture(params=["sync", "async"])
def small(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Probe]:
    """A receiver whose body limit is 1 KiB."""
    yield from _make_probe(monkeypatch, request.param, WebhookReceiver(SECRET, max_body_size=1024))


def _padded(size: int) -> bytes:
    body = make_body("sync.failed", pad="")
    return make_body("sync.failed", pad="x" * (size - len(body)))


def test_body_at_the_limit_is_handled(small: Probe) -> None:
    body = _padded(1024)
    assert len(body) == 1024
    assert small.deliver(body, signed_headers(body, SECRET)).status == 200


@pytest.mark.parametrize("size", [1025, 4096, 5_000_000])
def test_body_over_the_limit_answers_413_before_hmac(small: Probe, size: int) -> None:
    # Validly signed, and without any Content-Length: the size of the bytes decides.
    body = _padded(size)
    outcome = small.deliver(body, signed_headers(body, SECRET))
    small.assert_refused_unparsed(outcome, 413)
    assert small.digests == []


@pytest.mark.parametrize("declared", ["1025", "99999999999999999999", b"2048", " 1025 ", "+1025"])
def test_declared_length_over_the_limit_answers_413_before_reading(
    small: Probe, declared: str | bytes
) -> None:
    outcome = small.receiver.check_request("POST", declared)
    assert outcome is not None and outcome.status == 413
    assert_small_json(outcome)
    assert small.digests == []


@pytest.mark.parametrize(
    "declared",
    [None, "", "1024", "0", "-1", "abc", "1e9", "0x500", "9" * 5000, b"\xff", "١٠٢٥٠"],
)
def test_odd_declared_length_defers_to_the_bytes_read(
    small: Probe, declared: str | bytes | None
) -> None:
    # Not a length over the limit: nothing refused yet, and the read stays capped.
    if declared in ("١٠٢٥٠",):  # int() reads other scripts' digits: 10250 is over
        outcome = small.receiver.check_request("POST", declared)
        assert outcome is not None and outcome.status == 413
        return
    assert small.receiver.check_request("POST", declared) is None
    body = _padded(1025)
    small.assert_refused_unparsed(small.deliver(body, signed_headers(body, SECRET)), 413)


def test_lying_content_length_does_not_lift_the_limit(small: Probe) -> None:
    body = _padded(2048)
    assert small.receiver.check_request("POST", "10") is None
    small.assert_refused_unparsed(small.deliver(body, signed_headers(body, SECRET)), 413)
    assert small.digests == []


@pytest.mark.parametrize("method", ["GET", "PUT", "post", "HEAD", "OPTIONS", "POST "])
def test_other_methods_answer_405_with_allow(small: Probe, method: str) -> None:
    outcome = small.receiver.check_request(method, None)
    assert outcome is not None and outcome.status == 405
    assert ("allow", "POST") in outcome.headers
    assert_small_json(outcome)


# -- secrets stay secret ---------------------------------------------------------------------

SENTINEL = "whsec_SENTINEL_must_not_leak"


class _Disguised:
    """An object whose repr is a secret: messages must not call repr on a bad value."""

    def __repr__(self) -> str:
        return SENTINEL

    __str__ = __repr__


# Typed Any: these are deliberately the wrong type.
_BAD: Any = _Disguised()
_TEXT: Any = SENTINEL

CONFIG_ERRORS: list[Any] = [
    pytest.param(lambda: WebhookReceiver(_BAD), "secret", id="secret-type"),
    pytest.param(lambda: WebhookReceiver([SENTINEL, _BAD]), "secret", id="secret-item"),
    pytest.param(lambda: WebhookReceiver([SENTINEL, ""]), "secret #1", id="secret-empty-item"),
    pytest.param(lambda: WebhookReceiver([SENTINEL, b""]), "secret #1", id="secret-empty-bytes"),
    pytest.param(lambda: WebhookReceiver(""), "secret", id="secret-empty"),
    pytest.param(lambda: WebhookReceiver([]), "secret", id="secret-empty-list"),
    pytest.param(lambda: compute_signature(b"", _BAD), "secret", id="compute-type"),
    pytest.param(lambda: SecretSet([SENTINEL, _BAD]), "secret", id="secret-set-type"),
    pytest.param(
        lambda: WebhookReceiver(SENTINEL, max_body_size=_TEXT), "max_body_size", id="size-str"
    ),
    pytest.param(lambda: WebhookReceiver(SENTINEL, max_body_size=_BAD), "max_body_size", id="size"),
    pytest.param(lambda: WebhookReceiver(SENTINEL, deadline=_TEXT), "deadline", id="deadline"),
    pytest.param(lambda: WebhookReceiver(SENTINEL, deadline=12), "deadline", id="deadline-10s"),
    pytest.param(lambda: WebhookReceiver(SENTINEL, slow_handling=_BAD), "slow_handling", id="slow"),
    pytest.param(lambda: WebhookReceiver(SENTINEL, max_threads=_TEXT), "max_threads", id="threads"),
    pytest.param(lambda: WebhookReceiver(SENTINEL, dedup=_BAD), "dedup", id="dedup"),
    pytest.param(lambda: WebhookReceiver(SENTINEL, dedup_key=_TEXT), "dedup_key", id="dedup-key"),
    pytest.param(
        lambda: WebhookReceiver(SENTINEL, allowed_workspaces=[_TEXT]),
        "allowed_workspaces",
        id="allowlist",
    ),
    pytest.param(lambda: WebhookReceiver(SENTINEL).on_error(_TEXT), "hook", id="on-error"),
    pytest.param(lambda: WebhookReceiver(SENTINEL).on()(print), "event", id="on-nothing"),
    pytest.param(
        lambda: WebhookReceiver(SENTINEL).on("*")(_TEXT), "handler", id="handler-not-callable"
    ),
]


@pytest.mark.parametrize(("make", "setting"), CONFIG_ERRORS)
def test_configuration_errors_name_the_setting_not_its_value(
    make: Callable[[], object], setting: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        make()
    text = "".join(traceback.format_exception(info.value))
    assert setting in str(info.value)
    assert SENTINEL not in text


def test_environment_secret_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CENSUS_WEBHOOK_SECRET", SENTINEL)
    receiver = WebhookReceiver()
    assert SENTINEL not in repr(receiver)
    assert SENTINEL not in repr(receiver._secrets)


def _hostile_catalogue() -> list[tuple[bytes, Any]]:
    """Deliveries of every kind of refusal and failure, most carrying SECRET-made signatures."""
    cases: list[tuple[bytes, Any]] = [
        (BODY, {"X-Signature": sign(BODY, OTHER_SECRET)}),
        (BODY, {"X-Signature": sign(BODY + b"!", SECRET)}),
        (BODY + b" ", {"X-Signature": SIG}),
        (BODY, [("X-Signature", SIG), ("X-Signature", SIG)]),
        (BODY, {"X-Signature": SIG.rstrip("=")}),
        (BODY, {"X-Signature": DIGEST.hex()}),
        (BODY, {}),
        (_padded(2_000_000), signed_headers(_padded(2_000_000), SECRET)),
        (BODY, signed_headers(BODY, SECRET)),  # the handler raises
        (b'{"event": "sync.started"}', signed_headers(b'{"event": "sync.started"}', SECRET)),
        (b"[" * 5000, signed_headers(b"[" * 5000, SECRET)),
    ]
    for param in PAYLOADS[:12]:
        body = param.values[0]
        cases.append((body, signed_headers(body, SECRET)))
    return cases


def _expected_signatures(body: bytes) -> set[str]:
    digests = {hmac.new(s.encode(), body, hashlib.sha256).digest() for s in (SECRET, OTHER_SECRET)}
    return {base64.b64encode(d).decode() for d in digests} | {d.hex() for d in digests}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_logs_exceptions_reprs_and_answers_never_carry_secrets_or_bodies(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = WebhookReceiver([OTHER_SECRET, SECRET], allowed_workspaces={3167})

    @receiver.on("sync.failed")
    def explode(event: Event) -> None:
        raise RuntimeError("handler failed")

    texts: list[str] = []
    forbidden: set[str] = {SECRET, OTHER_SECRET}
    with caplog.at_level(logging.DEBUG):
        for body, headers in _hostile_catalogue():
            forbidden |= _expected_signatures(body)
            if len(body) >= 24:
                forbidden.add(body.decode("utf-8", "replace"))
            if mode == "sync":
                outcome = receiver.handle(body, headers)
            else:
                outcome = asyncio.run(receiver.handle_async(body, headers))
            assert_small_json(outcome)
            texts += [outcome.body.decode(), repr(outcome)]
            try:
                receiver.verify_event(body, headers)
            except RequestRejected as exc:
                texts += [repr(exc), "".join(traceback.format_exception(exc))]
    receiver.close()
    texts += [caplog.text, repr(receiver)]
    texts += [logging.Formatter().format(r) for r in caplog.records]
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)
    assert sum(r.levelno == logging.WARNING for r in caplog.records) >= 20
    leaks = [(f[:20], t[:80]) for t in texts for f in forbidden if f in t]
    assert leaks == []


# -- answers never echo attacker bytes --------------------------------------------------------

NASTY = '</script><script>alert("x")</script>\n\r\t\'"\\\u2028\x00&<!--é'


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(
            '{"event": "x", "'
            + json.dumps(NASTY)[1:-1]
            + '": 1, "'
            + json.dumps(NASTY)[1:-1]
            + '": 2}',
            id="repeated-nasty-key",
        ),
        pytest.param(
            '{"event": "x", "' + "k" * 200_000 + '": 1, "' + "k" * 200_000 + '": 2}', id="huge-key"
        ),
        pytest.param(
            '{"event": "sync.failed", "workspace_id": 3167, "sync_id": '
            + json.dumps(NASTY)
            + ', "sync_run_id": 1}',
            id="nasty-id",
        ),
        pytest.param(json.dumps({"event": NASTY * 1000}), id="nasty-unknown-name"),
        pytest.param(json.dumps({"event": 1, NASTY: NASTY}), id="nasty-extra"),
        pytest.param(
            json.dumps(make_payload("sync.failed", workspace_id=int("9" * 4000))), id="huge-ws"
        ),
    ],
)
def test_answers_stay_small_escaped_json_whatever_the_payload(
    payload: str, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = WebhookReceiver(SECRET, allowed_workspaces={3167})
    receiver.on("*")(lambda e: None)
    body = payload.encode()
    with caplog.at_level(logging.DEBUG, "census_receiver"):
        outcome = receiver.handle(body, signed_headers(body, SECRET))
    assert outcome.status in (400, 403)
    assert_small_json(outcome)
    assert "script" not in outcome.json()["error"] or "\\u003c" in outcome.body.decode()
    for record in caplog.records:
        message = record.getMessage()
        assert len(message) < 400
        assert message.isprintable()


# -- the workspace allowlist ------------------------------------------------------------------


@pytest.fixture(params=["sync", "async"])
def allowlisted(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Probe]:
    receiver = WebhookReceiver(SECRET, allowed_workspaces={3167, 42})
    yield from _make_probe(monkeypatch, request.param, receiver)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(make_payload("sync.failed", workspace_id=9999), id="other-workspace"),
        pytest.param(make_payload("sync.failed", workspace_id=-3167), id="negative"),
        pytest.param({"event": "sync.future", "sync_id": 1}, id="unknown-without-workspace"),
        pytest.param({"event": "sync.future", "workspace_id": "3167"}, id="unknown-string-id"),
        pytest.param({"event": "sync.future", "workspace_id": 3167.0}, id="unknown-float-id"),
        pytest.param({"event": "sync.future", "workspace_id": True}, id="unknown-bool-id"),
    ],
)
def test_allowlist_refuses_other_workspaces_with_403_and_logs(
    allowlisted: Probe, payload: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(payload).encode()
    with caplog.at_level(logging.WARNING, "census_receiver"):
        outcome = allowlisted.deliver(body, signed_headers(body, SECRET))
    assert outcome.status == 403 and outcome.reason == "workspace_not_allowed"
    assert allowlisted.handled == []
    assert allowlisted.parsed == [body]  # verified first, then read, then refused
    (record,) = caplog.records
    assert "403 workspace_not_allowed" in record.getMessage()
    assert allowlisted.receiver.stats.counts()[("-", "workspace_not_allowed")] == 1


@pytest.mark.parametrize("workspace", [3167, 42])
def test_allowlist_lets_listed_workspaces_through(allowlisted: Probe, workspace: int) -> None:
    body = make_body("sync.failed", workspace_id=workspace)
    assert allowlisted.deliver(body, signed_headers(body, SECRET)).status == 200
    assert [e.workspace_id for e in allowlisted.handled] == [workspace]


def test_allowlist_is_checked_after_the_signature(allowlisted: Probe) -> None:
    body = make_body("sync.failed", workspace_id=9999)
    outcome = allowlisted.deliver(body, {"X-Signature": sign(body, OTHER_SECRET)})
    allowlisted.assert_refused_unparsed(outcome, 401)


# -- the suite-wide log watch ------------------------------------------------------------------


def test_suite_log_watch_catches_a_leaked_signature_or_secret(log_secrecy: SecrecyWatch) -> None:
    # The watch behind tests/conftest.py is live: it flags what a leak would look like.
    receiver = WebhookReceiver("whsec_watch_probe_secret")
    body = make_body("sync.started")
    expected = sign(body, "whsec_watch_probe_secret")
    assert receiver.handle(body, {"X-Signature": expected}).status == 200
    before = len(log_secrecy.leaks)
    logger = logging.getLogger("census_receiver.probe")
    logger.debug("got %s", expected)
    logger.debug("hex %s", base64.b64decode(expected).hex())
    logger.debug("secret", extra={"leaked": "whsec_watch_probe_secret"})
    found = log_secrecy.leaks[before:]
    del log_secrecy.leaks[before:]  # planted on purpose: not a failure of the suite
    assert len(found) == 3
    assert log_secrecy.records > 0
    receiver.close()


# -- the same refusals through every adapter ---------------------------------------------------

ADAPTERS = ["asgi", "starlette", "fastapi", "wsgi", "flask-view", "flask-extension"]


async def _unreachable_asgi(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the webhook path never reaches the wrapped app")


def _unreachable_wsgi(environ: Any, start_response: Any) -> list[bytes]:
    raise AssertionError("the webhook path never reaches the wrapped app")


def _asgi_poster(app: Any) -> Post:
    """Drive an ASGI app by hand: headers go into the scope exactly as given, duplicates too."""

    def post(req: Req) -> Answer:
        headers = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in req.headers]
        if not req.chunked:
            headers.append((b"content-length", str(len(req.body)).encode()))
        pieces = list(req.pieces()) or [b""]
        scope = {"type": "http", "method": req.method, "path": req.path, "headers": headers}
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if pieces:
                return {"type": "http.request", "body": pieces.pop(0), "more_body": bool(pieces)}
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        asyncio.run(app(scope, receive, send))
        start, body = sent
        names = {k.decode().lower(): v.decode() for k, v in start["headers"]}
        return Answer(start["status"], names, body["body"])

    return post


def _client_poster(client: Any) -> Post:
    """Send through Starlette's TestClient (httpx): duplicates and raw bytes kept as sent."""

    def post(req: Req) -> Answer:
        response = client.request(
            req.method,
            req.path,
            content=req.pieces() if req.chunked else req.body,
            headers=[(n, v.encode("latin-1")) for n, v in req.headers],
        )
        return Answer(response.status_code, dict(response.headers), response.content)

    return post


def _adapter(name: str, receiver: WebhookReceiver) -> Post:
    if name == "asgi":
        from census_receiver.starlette import CensusWebhookMiddleware

        return _asgi_poster(CensusWebhookMiddleware(_unreachable_asgi, receiver=receiver))
    if name == "starlette":
        from starlette.applications import Starlette
        from starlette.testclient import TestClient

        from census_receiver.starlette import CensusWebhookMiddleware

        app = Starlette()
        app.add_middleware(CensusWebhookMiddleware, receiver=receiver, path=PATH)
        return _client_poster(TestClient(app))
    if name == "fastapi":
        from fastapi import Depends, FastAPI
        from fastapi.testclient import TestClient as FastAPIClient

        from census_receiver.fastapi import census_event

        api = FastAPI()
        verified_event = Depends(census_event(receiver))

        @api.post(PATH)
        async def own_route(event: Event = verified_event) -> dict[str, str]:
            return {"status": "ok"}

        return _client_poster(FastAPIClient(api))
    if name == "wsgi":
        from census_receiver.wsgi import CensusWebhookMiddleware as WSGIMiddleware

        return wsgi_poster(WSGIMiddleware(_unreachable_wsgi, receiver=receiver, path=PATH))
    from flask import Flask

    from census_receiver.flask import CensusWebhooks, census_webhook

    flask_app = Flask(name)
    if name == "flask-view":

        @flask_app.post(PATH)
        @census_webhook(receiver)
        def view(event: Event) -> None:
            return None

    else:
        CensusWebhooks(flask_app, receiver=receiver)
    return wsgi_poster(flask_app)


@pytest.fixture(params=ADAPTERS)
def adapter(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Probe, Post]]:
    """A probed receiver (1 KiB limit, allowlist 3167) behind one adapter, and its poster."""
    receiver = WebhookReceiver(SECRET, max_body_size=1024, allowed_workspaces={3167})
    for probe in _make_probe(monkeypatch, "sync", receiver):
        yield probe, _adapter(request.param, receiver)


def _answer_text(answer: Answer) -> str:
    """The one message of an answer: ``error``/``status``, or FastAPI's ``detail``."""
    assert len(answer.body) < 300
    decoded = answer.json()
    assert isinstance(decoded, dict) and len(decoded) == 1
    ((key, value),) = decoded.items()
    assert key in ("error", "status", "detail") and isinstance(value, str)
    return value


def _assert_unparsed(probe: Probe, answer: Answer, status: int) -> str:
    assert answer.status == status
    assert probe.parsed == [] and probe.handled == []
    return _answer_text(answer)


def test_adapter_handles_one_valid_signature(adapter: tuple[Probe, Post]) -> None:
    probe, post = adapter
    answer = post(Req(body=BODY, headers=(("X-Signature", f" {SIG} "),)))
    assert answer.status == 200 and len(probe.handled) == 1


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param((("X-Signature", SIG), ("X-Signature", SIG)), id="same-twice"),
        pytest.param((("X-Signature", SIG), ("x-signature", "junk")), id="valid-and-junk"),
        pytest.param((("x-signature", ""), ("X-Signature", SIG)), id="empty-and-valid"),
        pytest.param((("X-Signature", f"{SIG}, {SIG}"),), id="folded-by-a-server"),
    ],
)
def test_adapter_refuses_repeated_signature_before_hmac(
    adapter: tuple[Probe, Post], headers: tuple[tuple[str, str], ...]
) -> None:
    probe, post = adapter
    _assert_unparsed(probe, post(Req(body=BODY, headers=headers)), 401)
    assert probe.digests == []


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(DIGEST.hex(), id="hex"),
        pytest.param(SIG.replace("/", "_").replace("+", "-"), id="urlsafe"),
        pytest.param(SIG.rstrip("="), id="unpadded"),
        pytest.param(_non_canonical(SIG), id="non-canonical"),
        pytest.param(SIG[:-4], id="short"),
        pytest.param(SIG[:-2] + "\xe9=", id="non-ascii-byte"),
        pytest.param(SIG + "\xa0", id="no-break-space"),
        pytest.param("", id="empty"),
        pytest.param(sign(BODY, OTHER_SECRET), id="other-secret"),
    ],
)
def test_adapter_refuses_malformed_or_wrong_signature(
    adapter: tuple[Probe, Post], value: str
) -> None:
    probe, post = adapter
    message = _assert_unparsed(probe, post(Req(body=BODY, headers=(("X-Signature", value),))), 401)
    assert value not in message or not value


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_adapter_refuses_body_over_limit_before_hmac(
    adapter: tuple[Probe, Post], chunked: bool
) -> None:
    probe, post = adapter
    body = _padded(1025)
    answer = post(
        Req(body=body, headers=tuple(signed_headers(body, SECRET).items()), chunked=chunked)
    )
    _assert_unparsed(probe, answer, 413)
    assert probe.digests == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 500 + b"]" * 500, id="deep"),
        pytest.param(b'{"event": "x", "event": "y"}', id="duplicate-keys"),
        pytest.param(b'{"event": "x", "n": NaN}', id="nan"),
        pytest.param(b'{"event": "\xff"}', id="not-utf8"),
        pytest.param(b'{"event": 1, "</script>\\n": "<b>"}', id="markup"),
    ],
)
def test_adapter_answers_verified_malformed_payload_400(
    adapter: tuple[Probe, Post], body: bytes
) -> None:
    probe, post = adapter
    answer = post(Req(body=body, headers=tuple(signed_headers(body, SECRET).items())))
    assert answer.status == 400 and probe.handled == [] and probe.parsed == [body]
    message = _answer_text(answer)
    assert "Traceback" not in message and b"<" not in answer.body and b"\\n" not in answer.body


def test_adapter_refuses_other_workspace_403(
    adapter: tuple[Probe, Post], caplog: pytest.LogCaptureFixture
) -> None:
    probe, post = adapter
    body = make_body("sync.failed", workspace_id=4242)
    with caplog.at_level(logging.WARNING, "census_receiver"):
        answer = post(Req(body=body, headers=tuple(signed_headers(body, SECRET).items())))
    assert answer.status == 403 and probe.handled == []
    assert "4242" in _answer_text(answer)
    assert [r.census_reason for r in caplog.records] == ["workspace_not_allowed"]  # type: ignore[attr-defined]


def _flask_extension(**config: Any) -> object:
    from flask import Flask

    from census_receiver.flask import CensusWebhooks

    app = Flask("configured")
    app.config.update(config)
    return CensusWebhooks(app)


ADAPTER_CONFIG_ERRORS: list[Any] = [
    pytest.param(
        lambda: importlib.import_module("census_receiver.starlette").CensusWebhookMiddleware(
            _unreachable_asgi, receiver=WebhookReceiver(SENTINEL), path=SENTINEL
        ),
        "path",
        id="asgi-path",
    ),
    pytest.param(
        lambda: importlib.import_module("census_receiver.wsgi").CensusWebhookMiddleware(
            _unreachable_wsgi, receiver=WebhookReceiver(SENTINEL), path=SENTINEL
        ),
        "path",
        id="wsgi-path",
    ),
    pytest.param(lambda: _flask_extension(CENSUS_WEBHOOK_SECRET=_BAD), "secret", id="flask-secret"),
    pytest.param(
        lambda: _flask_extension(CENSUS_WEBHOOK_SECRET=[SENTINEL, ""]), "secret", id="flask-empty"
    ),
    pytest.param(
        lambda: _flask_extension(
            CENSUS_WEBHOOK_SECRET=SENTINEL, CENSUS_WEBHOOK_MAX_BODY_SIZE=_TEXT
        ),
        "max_body_size",
        id="flask-size",
    ),
    pytest.param(
        lambda: importlib.import_module("census_receiver.flask").CensusWebhooks(
            receiver=WebhookReceiver(SENTINEL), dedup=_TEXT
        ),
        "receiver",
        id="flask-both",
    ),
]


@pytest.mark.parametrize(("make", "setting"), ADAPTER_CONFIG_ERRORS)
def test_adapter_configuration_errors_name_the_setting_not_its_value(
    make: Callable[[], object], setting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CENSUS_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ConfigurationError) as info:
        make()
    assert setting in str(info.value)
    assert SENTINEL not in "".join(traceback.format_exception(info.value))


# -- slow, endless and oversized clients against real servers -----------------------------------

SERVER_LIMIT = 64 * 1024


def _counting_asgi(app: Any, pulled: list[int]) -> Any:
    """Counts the body bytes the wrapped app pulls from the server."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        async def counted() -> Any:
            message = await receive()
            pulled.append(len(message.get("body", b"")))
            return message

        await app(scope, counted, send)

    return wrapped


@dataclass
class RealServer:
    served: Served
    probe: Probe
    sizes: list[int]  # the length of each body the adapter handed to the core
    pulled: list[int]  # body bytes per receive() (ASGI only)


@pytest.fixture(params=["uvicorn", "werkzeug"])
def real_server(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    uvicorn_server: Callable[[Any], Served],
    werkzeug_server: Callable[[Any], Served],
) -> Iterator[RealServer]:
    from census_receiver.starlette import CensusWebhookMiddleware
    from census_receiver.wsgi import CensusWebhookMiddleware as WSGIMiddleware

    receiver = WebhookReceiver(SECRET, max_body_size=SERVER_LIMIT)
    sizes: list[int] = []
    pulled: list[int] = []
    probes = _make_probe(monkeypatch, "sync", receiver)
    probe = next(probes)
    # Where every delivery enters the core, whether or not handle(_async) is called.
    real_begin = receiver._begin

    def begin(is_async: Any, body: Any, *args: Any) -> Any:
        sizes.append(len(body))
        return real_begin(is_async, body, *args)

    monkeypatch.setattr(receiver, "_begin", begin)
    if request.param == "uvicorn":
        app = CensusWebhookMiddleware(_unreachable_asgi, receiver=receiver)
        served = uvicorn_server(_counting_asgi(app, pulled))
    else:
        served = werkzeug_server(WSGIMiddleware(_unreachable_wsgi, receiver=receiver))
    yield RealServer(served, probe, sizes, pulled)
    next(probes, None)  # closes the receiver


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
        for _ in range(4 * SERVER_LIMIT // 1024):
            sock.sendall(_chunk(b"x" * 1024))
        sock.sendall(b"0\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == 413 and b"larger than 65536 bytes" in body
    assert real_server.sizes == [SERVER_LIMIT + 1]
    assert real_server.probe.parsed == [] and real_server.probe.digests == []
    if real_server.pulled:  # uvicorn: every byte was read from the socket, and dropped
        assert sum(real_server.pulled) == 4 * SERVER_LIMIT


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
            while sent < 64 * 1_048_576 and not select.select([sock], [], [], 0)[0]:
                sock.sendall(piece)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending
        status, _, _ = read_response(sock)
    assert status == 413
    assert sent < 64 * 1_048_576  # answered before the client ran out of patience
    if real_server.pulled:
        # uvicorn: the middleware read the limit and its bounded 16 MiB drain, each
        # overshot by at most one message of whatever size the server passed on.
        largest = max(real_server.pulled)
        assert sum(real_server.pulled) <= SERVER_LIMIT + 16 * 1_048_576 + 2 * largest
    assert real_server.sizes == [SERVER_LIMIT + 1]
    assert real_server.probe.parsed == [] and real_server.probe.handled == []


def test_declared_huge_body_is_refused_before_any_byte_is_read(real_server: RealServer) -> None:
    served = real_server.served
    with socket.create_connection((served.host, served.port), timeout=WAIT) as sock:
        sock.sendall(_head(served, "Content-Length: 100000000"))  # and not one body byte
        status, headers, _ = read_response(sock)
    assert status == 413 and headers["content-type"] == "application/json"
    assert real_server.sizes == [] and sum(real_server.pulled) == 0
    assert real_server.probe.digests == []
