"""WebhookReceiver: configuration, the HTTP contract, handler execution and logging."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from census_receiver import (
    ConfigurationError,
    Event,
    NonRetryableError,
    Outcome,
    RequestRejected,
    SyncCompleted,
    SyncFailed,
    WebhookReceiver,
    compute_signature,
)
from census_receiver.answers import REASONS
from census_receiver.dedup import InMemoryDedupStore
from census_receiver.signature import SecretSet
from census_receiver.testing import (
    DOCUMENTED_EXAMPLES,
    Delivery,
    make_body,
    make_delivery,
    make_payload,
    sign,
    signed_headers,
)

from .conftest import SECRET
from .support import DISGUISED as _BAD
from .support import SENTINEL

Run = Callable[..., Outcome]


@pytest.fixture(params=["sync", "async"])
def run(request: pytest.FixtureRequest, receiver: WebhookReceiver) -> Run:
    """Calls receiver.handle or receiver.handle_async, same arguments."""
    if request.param == "sync":
        return receiver.handle

    def run_async(*args: Any, **kwargs: Any) -> Outcome:
        return asyncio.run(receiver.handle_async(*args, **kwargs))

    return run_async


# -- configuration ------------------------------------------------------------------------


def test_secret_may_be_str_bytes_or_list() -> None:
    body = make_body("sync.failed")
    for secret in ("a", b"a", ["x", "a"], (b"x", "a")):
        assert WebhookReceiver(secret).verify(body, compute_signature(body, "a"))


def test_secret_defaults_to_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CENSUS_WEBHOOK_SECRET", "from-env")
    body = make_body("sync.failed")
    assert WebhookReceiver().verify(body, compute_signature(body, "from-env"))


@pytest.mark.parametrize("env", [None, ""])
def test_no_secret_at_all_fails_at_construction(
    monkeypatch: pytest.MonkeyPatch, env: str | None
) -> None:
    if env is None:
        monkeypatch.delenv("CENSUS_WEBHOOK_SECRET", raising=False)
    else:
        monkeypatch.setenv("CENSUS_WEBHOOK_SECRET", env)
    with pytest.raises(ConfigurationError, match="CENSUS_WEBHOOK_SECRET"):
        WebhookReceiver()


@pytest.mark.parametrize("secret", ["", b"", [], [""], ["ok", b""]])
def test_empty_secrets_are_refused(secret: Any) -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        WebhookReceiver(secret)


def test_secret_of_wrong_type_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigurationError) as info:
        WebhookReceiver(123456789)  # type: ignore[arg-type]
    assert "123456789" not in str(info.value)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("max_body_size", 0, "max_body_size"),
        ("max_body_size", True, "max_body_size"),
        ("deadline", 0, "deadline"),
        ("deadline", 10, "under 10 seconds"),
        ("slow_handling", -1, "slow_handling"),
        ("max_threads", 0, "max_threads"),
        ("dedup", object(), "dedup must be a store"),
        ("dedup_key", "x", "dedup_key"),
        ("allowed_workspaces", ["3167"], "integer workspace ids"),
    ],
)
def test_invalid_options_are_refused(option: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        WebhookReceiver(SECRET, **{option: value})


def test_repr_shows_shape_not_secrets() -> None:
    r = WebhookReceiver(["whsec_one", "whsec_two"])
    r.on("*")(lambda e: None)
    assert repr(r) == "<WebhookReceiver secrets=2 handlers=1 max_body_size=1048576 dedup=None>"


def test_on_without_pattern_is_refused(receiver: WebhookReceiver) -> None:
    with pytest.raises(ConfigurationError, match="at least one event"):
        receiver.on()


def test_on_returns_the_function_unchanged(receiver: WebhookReceiver) -> None:
    def handler(event: Event) -> None:
        return None

    assert receiver.on("*")(handler) is handler
    assert receiver.on_error(handler) is handler
    assert [r.handler for r in receiver.routes] == [handler]


def test_on_error_refuses_non_callable(receiver: WebhookReceiver) -> None:
    with pytest.raises(ConfigurationError):
        receiver.on_error(3)  # type: ignore[type-var]


# -- verify ---------------------------------------------------------------------------------


def test_verify_checks_every_secret() -> None:
    r = WebhookReceiver(["new", "old"])
    body = make_body("sync.failed")
    assert r.verify(body, compute_signature(body, "old"))
    assert r.verify(body, compute_signature(body, "new").encode())
    assert not r.verify(body, compute_signature(body, "other"))
    assert not r.verify(body, None)
    assert not r.verify(body, "")
    assert not r.verify(body, "not base64 at all")


def test_verify_event_returns_event_without_running_handlers(
    receiver: WebhookReceiver, failed_delivery: Delivery
) -> None:
    calls: list[Event] = []
    receiver.on("*")(calls.append)
    event = receiver.verify_event(failed_delivery.body, failed_delivery.headers)
    assert isinstance(event, SyncFailed) and calls == []


# -- the HTTP contract ------------------------------------------------------------------------


@pytest.mark.parametrize("payload", DOCUMENTED_EXAMPLES, ids=lambda p: str(p["event"]))
def test_every_documented_example_is_verified_and_routed(
    run: Run, receiver: WebhookReceiver, payload: dict[str, Any]
) -> None:
    seen: list[Event] = []
    receiver.on(payload["event"])(seen.append)
    body = json.dumps(payload).encode()
    outcome = run(body, signed_headers(body, SECRET))
    assert (outcome.status, outcome.json(), outcome.reason) == (200, {"status": "ok"}, "handled")
    assert len(seen) == 1 and seen[0] == outcome.event and seen[0].event == payload["event"]


def test_verified_without_handler_answers_200_ignored(run: Run, failed_delivery: Delivery) -> None:
    outcome = run(failed_delivery.body, failed_delivery.headers)
    assert (outcome.status, outcome.json(), outcome.reason) == (
        200,
        {"status": "ignored"},
        "ignored",
    )
    assert isinstance(outcome.event, SyncFailed)


def test_unknown_event_name_answers_200_and_reaches_wildcard(
    run: Run, receiver: WebhookReceiver
) -> None:
    seen: list[Event] = []
    receiver.on("*")(seen.append)
    delivery = make_delivery("sync.paused", secret=SECRET)
    outcome = run(delivery.body, delivery.headers)
    assert outcome.status == 200 and [e.event for e in seen] == ["sync.paused"]


def test_handler_failure_answers_500_and_stops_later_handlers(
    run: Run, receiver: WebhookReceiver, failed_delivery: Delivery
) -> None:
    calls: list[str] = []
    receiver.on("*")(lambda e: calls.append("first"))

    @receiver.on("*")
    def broken(event: Event) -> None:
        raise RuntimeError("database password is hunter2")

    receiver.on("*")(lambda e: calls.append("after"))
    outcome = run(failed_delivery.body, failed_delivery.headers)
    assert (outcome.status, outcome.reason) == (500, "handler_error")
    assert "hunter2" not in outcome.body.decode()
    assert calls == ["first"]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing"),
        ({"X-Signature": ""}, "empty"),
        ({"X-Signature": "zzz"}, "wrong length"),
        ({"X-Signature": "!" * 44}, "not standard base64"),
        ({"X-Signature": compute_signature(b"other body", SECRET)}, "does not match"),
        ({"X-Signature": compute_signature(make_body("sync.failed"), "wrong")}, "does not match"),
    ],
)
def test_bad_signature_answers_401_without_running_handlers(
    run: Run, receiver: WebhookReceiver, headers: dict[str, str], message: str
) -> None:
    calls: list[Event] = []
    receiver.on("*")(calls.append)
    outcome = run(make_body("sync.failed"), headers)
    assert outcome.status == 401 and message in outcome.json()["error"]
    assert outcome.event is None and calls == []


def test_body_over_limit_answers_413_before_hmac(run: Run) -> None:
    # Signed correctly, yet refused: the size check comes first.
    body = make_body("sync.failed", padding="x" * 200)
    small = WebhookReceiver(SECRET, max_body_size=100)
    try:
        outcome = small.handle(body, signed_headers(body, SECRET))
        assert (outcome.status, outcome.reason) == (413, "payload_too_large")
        assert "100 bytes" in outcome.json()["error"]
    finally:
        small.close()


def test_body_at_limit_is_accepted() -> None:
    body = make_body("sync.failed")
    r = WebhookReceiver(SECRET, max_body_size=len(body))
    assert r.handle(body, signed_headers(body, SECRET)).status == 200


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"workspace_id": 1}', b'{"event": 5}'])
def test_verified_non_event_answers_400(run: Run, receiver: WebhookReceiver, body: bytes) -> None:
    calls: list[Event] = []
    receiver.on("*")(calls.append)
    outcome = run(body, signed_headers(body, SECRET))
    assert (outcome.status, outcome.reason) == (400, "malformed_payload") and calls == []


def test_documented_event_missing_id_answers_400_naming_it(run: Run) -> None:
    body = make_body("sync.failed", sync_run_id=None)
    outcome = run(body, signed_headers(body, SECRET))
    assert outcome.status == 400 and "'sync_run_id'" in outcome.json()["error"]


def test_check_request_answers_405_with_allow_for_other_methods(receiver: WebhookReceiver) -> None:
    for method in ("GET", "PUT", "HEAD", "OPTIONS", "post", "POST "):
        outcome = receiver.check_request(method)
        assert outcome is not None and outcome.status == 405
        assert ("allow", "POST") in outcome.headers


def test_check_request_answers_413_on_declared_length(receiver: WebhookReceiver) -> None:
    outcome = receiver.check_request("POST", "1048577")
    assert outcome is not None and outcome.status == 413
    assert receiver.check_request("POST", b"1048576") is None
    assert receiver.check_request("POST", None) is None
    assert receiver.check_request("POST", "garbage") is None


def test_answers_carry_json_headers(run: Run, failed_delivery: Delivery) -> None:
    outcome = run(failed_delivery.body, failed_delivery.headers)
    headers = dict(outcome.headers)
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(outcome.body))


def test_allowed_workspaces_refuses_others_with_403(run: Run) -> None:
    r = WebhookReceiver(SECRET, allowed_workspaces={3167})
    calls: list[Event] = []
    r.on("*")(calls.append)
    ours = make_delivery("sync.failed", secret=SECRET)
    theirs = make_delivery("sync.failed", secret=SECRET, workspace_id=9999)
    assert r.handle(ours.body, ours.headers).status == 200
    outcome = r.handle(theirs.body, theirs.headers)
    assert (outcome.status, outcome.reason) == (403, "workspace_not_allowed")
    assert [e.workspace_id for e in calls] == [3167]


def test_second_secret_verifies_during_rotation(run: Run) -> None:
    r = WebhookReceiver(["new-secret", "old-secret"])
    delivery = make_delivery("sync.failed", secret="old-secret")
    assert r.handle(delivery.body, delivery.headers).status == 200


def test_headers_may_be_bytes_pairs(run: Run, failed_delivery: Delivery) -> None:
    pairs = [(k.lower().encode(), v.encode()) for k, v in failed_delivery.headers.items()]
    assert run(failed_delivery.body, pairs).status == 200


def test_repeated_signature_header_answers_401(run: Run, failed_delivery: Delivery) -> None:
    signature = failed_delivery.headers["X-Signature"]
    outcome = run(failed_delivery.body, [("x-signature", signature), ("X-Signature", signature)])
    assert outcome.status == 401 and "more than once" in outcome.json()["error"]


def test_memoryview_body_is_accepted(run: Run, failed_delivery: Delivery) -> None:
    assert run(memoryview(failed_delivery.body), failed_delivery.headers).status == 200


# -- handlers -----------------------------------------------------------------------------------


def test_sync_and_async_handlers_run_in_registration_order(
    run: Run, receiver: WebhookReceiver, failed_delivery: Delivery
) -> None:
    calls: list[str] = []

    @receiver.on("sync.failed")
    def one(event: SyncFailed) -> None:
        calls.append("one")

    @receiver.on("*")
    async def two(event: Event) -> None:
        await asyncio.sleep(0)
        calls.append("two")

    @receiver.on("sync.*")
    def three(event: Event) -> None:
        calls.append("three")

    assert run(failed_delivery.body, failed_delivery.headers).status == 200
    assert calls == ["one", "two", "three"]


def test_filters_select_handlers(run: Run, receiver: WebhookReceiver) -> None:
    calls: list[str] = []
    receiver.on("sync.completed", status="emergency")(lambda e: calls.append("page"))
    receiver.on("sync.completed")(lambda e: calls.append("log"))
    for status in ("ok", "emergency"):
        d = make_delivery("sync.completed", secret=SECRET, status=status)
        assert run(d.body, d.headers).status == 200
    assert calls == ["log", "page", "log"]


def test_sync_handle_runs_async_handler_inside_running_loop(
    receiver: WebhookReceiver, failed_delivery: Delivery
) -> None:
    seen: list[int] = []

    @receiver.on("*")
    async def handler(event: Event) -> None:
        await asyncio.sleep(0)
        assert event.sync_id is not None
        seen.append(event.sync_id)

    async def main() -> Outcome:
        # A sync caller inside a running loop: the handler must run elsewhere.
        return receiver.handle(failed_delivery.body, failed_delivery.headers)

    assert asyncio.run(main()).status == 200
    assert seen == [3167956]


def test_sync_handle_reuses_one_private_loop_for_async_handlers(
    receiver: WebhookReceiver, failed_delivery: Delivery
) -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    @receiver.on("*")
    async def handler(event: Event) -> None:
        loops.append(asyncio.get_running_loop())

    for _ in range(3):
        receiver.handle(failed_delivery.body, failed_delivery.headers)
    assert len(loops) == 3 and len(set(map(id, loops))) == 1


def test_async_handle_runs_sync_handlers_off_the_loop_thread(
    receiver: WebhookReceiver, failed_delivery: Delivery
) -> None:
    threads: list[str] = []
    receiver.on("*")(lambda e: threads.append(threading.current_thread().name))

    async def main() -> Outcome:
        return await receiver.handle_async(failed_delivery.body, failed_delivery.headers)

    assert asyncio.run(main()).status == 200
    assert threads[0].startswith("census-receiver")


def test_slow_sync_handler_does_not_block_the_event_loop(
    receiver: WebhookReceiver, failed_delivery: Delivery
) -> None:
    release = threading.Event()
    receiver.on("*")(lambda e: release.wait(5))

    async def main() -> tuple[int, int]:
        task = asyncio.create_task(
            receiver.handle_async(failed_delivery.body, failed_delivery.headers)
        )
        ticks = 0
        for _ in range(5):  # the loop keeps turning while the handler blocks its thread
            await asyncio.sleep(0.01)
            ticks += 1
        release.set()
        return ticks, (await task).status

    assert asyncio.run(main()) == (5, 200)


def test_sync_handler_returning_awaitable_is_awaited(run: Run, receiver: WebhookReceiver) -> None:
    done: list[bool] = []

    async def later() -> None:
        done.append(True)

    receiver.on("*")(lambda e: later())
    d = make_delivery("sync.started", secret=SECRET)
    assert run(d.body, d.headers).status == 200 and done == [True]


def test_error_hook_receives_exception_and_event(
    run: Run, receiver: WebhookReceiver, failed_delivery: Delivery
) -> None:
    seen: list[tuple[str, str]] = []

    @receiver.on("*")
    def broken(event: Event) -> None:
        raise KeyError("boom")

    @receiver.on_error
    def hook(exc: BaseException, event: Event) -> None:
        seen.append((type(exc).__name__, event.event))

    @receiver.on_error
    async def async_hook(exc: BaseException, event: Event) -> None:
        seen.append(("async", event.event))

    assert run(failed_delivery.body, failed_delivery.headers).status == 500
    assert seen == [("KeyError", "sync.failed"), ("async", "sync.failed")]


def test_failing_error_hook_is_logged_and_answer_stays_500(
    run: Run, receiver: WebhookReceiver, failed_delivery: Delivery, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.on("*")(lambda e: 1 / 0)

    @receiver.on_error
    def hook(exc: BaseException, event: Event) -> None:
        raise OSError("alerting is down")

    assert run(failed_delivery.body, failed_delivery.headers).status == 500
    assert any("error hook" in r.getMessage() and r.exc_info for r in caplog.records)


def test_non_retryable_error_answers_200_dropped_and_logs(
    run: Run, receiver: WebhookReceiver, failed_delivery: Delivery, caplog: pytest.LogCaptureFixture
) -> None:
    hooks: list[BaseException] = []
    receiver.on_error(lambda exc, e: hooks.append(exc))

    @receiver.on("*")
    def handler(event: Event) -> None:
        raise NonRetryableError("sync 3167956 was deleted")

    with caplog.at_level(logging.ERROR, "census_receiver"):
        outcome = run(failed_delivery.body, failed_delivery.headers)
    assert (outcome.status, outcome.json(), outcome.reason) == (
        200,
        {"status": "dropped"},
        "dropped",
    )
    assert any(
        "for good" in r.getMessage() and "was deleted" in r.getMessage() for r in caplog.records
    )
    assert hooks == []


def test_endpoint_runs_after_handlers_and_its_result_is_kept(
    run: Run, receiver: WebhookReceiver, failed_delivery: Delivery
) -> None:
    calls: list[str] = []
    receiver.on("*")(lambda e: calls.append("handler"))

    def endpoint(event: Event) -> str:
        calls.append("endpoint")
        return "view result"

    outcome = run(failed_delivery.body, failed_delivery.headers, endpoint=endpoint)
    assert outcome.result == "view result" and calls == ["handler", "endpoint"]


def test_endpoint_runs_even_without_matching_handler(run: Run, failed_delivery: Delivery) -> None:
    outcome = run(failed_delivery.body, failed_delivery.headers, endpoint=lambda e: 42)
    assert (outcome.status, outcome.reason, outcome.result) == (200, "handled", 42)


def test_endpoint_failure_answers_500(run: Run, failed_delivery: Delivery) -> None:
    def endpoint(event: Event) -> None:
        raise ValueError("view broke")

    assert run(failed_delivery.body, failed_delivery.headers, endpoint=endpoint).status == 500


def test_async_endpoint_is_awaited(run: Run, failed_delivery: Delivery) -> None:
    async def endpoint(event: Event) -> str:
        return "async view"

    assert (
        run(failed_delivery.body, failed_delivery.headers, endpoint=endpoint).result == "async view"
    )


def test_keyboard_interrupt_in_handler_propagates(
    receiver: WebhookReceiver, failed_delivery: Delivery
) -> None:
    @receiver.on("*")
    def handler(event: Event) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        receiver.handle(failed_delivery.body, failed_delivery.headers)


def test_close_stops_threads_and_receiver_still_works(
    receiver: WebhookReceiver, failed_delivery: Delivery
) -> None:
    @receiver.on("*")
    async def handler(event: Event) -> None:
        return None

    receiver.handle(failed_delivery.body, failed_delivery.headers)
    receiver.close()
    assert not any(t.name == "census-receiver-loop" and t.is_alive() for t in threading.enumerate())
    assert receiver.handle(failed_delivery.body, failed_delivery.headers).status == 200


# -- logging and stats --------------------------------------------------------------------------


def test_one_info_line_per_delivery_with_ids_status_time_and_secret(
    run: Run, failed_delivery: Delivery, caplog: pytest.LogCaptureFixture
) -> None:
    r = WebhookReceiver(["new-secret", SECRET])
    with caplog.at_level(logging.INFO, "census_receiver"):
        r.handle(failed_delivery.body, failed_delivery.headers)
    (record,) = caplog.records
    message = record.getMessage()
    for part in (
        "sync.failed",
        "workspace=3167",
        "sync=3167956",
        "run=324402082",
        "(200)",
        " ms",
        "secret #2",  # numbered from 1, as the command line numbers them
    ):
        assert part in message
    assert record.levelno == logging.INFO
    assert record.census_secret == 2  # type: ignore[attr-defined]


def test_rejection_logs_one_warning_with_reason(run: Run, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "census_receiver"):
        run(make_body("sync.failed"), {"X-Signature": "A" * 43 + "="})
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "401 invalid_signature" in record.getMessage()


def test_handler_failure_logs_traceback(
    run: Run, receiver: WebhookReceiver, failed_delivery: Delivery, caplog: pytest.LogCaptureFixture
) -> None:
    @receiver.on("*")
    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    run(failed_delivery.body, failed_delivery.headers)
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "broken" in record.getMessage() and "sync.failed" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


def test_slow_handling_logs_a_warning(
    failed_delivery: Delivery, caplog: pytest.LogCaptureFixture
) -> None:
    r = WebhookReceiver(SECRET, slow_handling=0.01)
    r.on("*")(lambda e: time.sleep(0.03))
    r.handle(failed_delivery.body, failed_delivery.headers)
    assert any("over the 0.0 s budget" in m or "budget" in m for m in caplog.messages)
    fast = WebhookReceiver(SECRET)
    caplog.clear()
    fast.handle(failed_delivery.body, failed_delivery.headers)
    assert not any("budget" in m for m in caplog.messages)


def test_logs_answers_and_reprs_never_contain_the_secret_or_digest(
    run: Run, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.on("sync.failed")(lambda e: 1 / 0)
    good = make_delivery("sync.failed", secret=SECRET)
    forged = make_delivery("sync.started", secret=SECRET, bad_signature=True)
    expected_for_forged = compute_signature(forged.body, SECRET)
    answers = []
    with caplog.at_level(logging.DEBUG):
        for d in (good, forged, Delivery(b"{}", {"X-Signature": compute_signature(b"{}", SECRET)})):
            answers.append(run(d.body, d.headers).body.decode())
    text = caplog.text + "".join(answers) + repr(receiver)
    assert SECRET not in text
    assert good.headers["X-Signature"] not in text
    assert expected_for_forged not in text


def test_stats_count_deliveries_by_event_and_reason(
    run: Run, receiver: WebhookReceiver, failed_delivery: Delivery
) -> None:
    run(failed_delivery.body, failed_delivery.headers)
    run(failed_delivery.body, {})
    assert receiver.stats.count("sync.failed", "ignored") == 1
    assert receiver.stats.count(None, "missing_signature") == 1
    assert receiver.stats.count() == 2
    assert receiver.stats.timings()["sync.failed"].count == 1


def test_completed_model_reaches_handler(run: Run, receiver: WebhookReceiver) -> None:
    seen: list[bool] = []

    @receiver.on("sync.completed")
    def handler(event: SyncCompleted) -> None:
        seen.append(event.succeeded)

    d = make_delivery("sync.completed", secret=SECRET, status="emergency")
    run(d.body, d.headers)
    assert seen == [False]


# -- hostile X-Signature values ---------------------------------------------------------------

OTHER_SECRET = "whsec_receiver_other"
BODY = make_body("sync.failed")
SIG = sign(BODY, SECRET)
DIGEST = base64.b64decode(SIG)
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# A body whose signature holds both "+" and "/", so its URL-safe spelling differs.
URLSAFE_BODY = next(
    body
    for body in (make_body("sync.failed", sync_run_id=n) for n in range(1000, 100_000))
    if {"+", "/"} <= set(sign(body, SECRET))
)
#: What the refusal of a well-formed signature says; a malformed one is refused before any HMAC.
NO_MATCH = "does not match the body for any configured secret"
Handle = Callable[[WebhookReceiver, Any, Any], Outcome]


@pytest.fixture(params=["sync", "async"])
def handle(request: pytest.FixtureRequest) -> Handle:
    """Calls handle or handle_async on the receiver given."""
    if request.param == "sync":
        return lambda receiver, body, headers: receiver.handle(body, headers)
    return lambda receiver, body, headers: asyncio.run(receiver.handle_async(body, headers))


@pytest.fixture
def seen(receiver: WebhookReceiver) -> list[Event]:
    """What reaches a catch-all handler of ``receiver``."""
    events: list[Event] = []
    receiver.on("*")(events.append)
    return events


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
    assert outcome.status in REASONS.values()
    return decoded


def assert_refused_unread(outcome: Outcome, status: int, seen: list[Event]) -> str:
    """Refused with ``status`` before the payload was read; the error message."""
    assert outcome.status == status
    assert outcome.event is None and seen == []
    error: str = assert_small_json(outcome)["error"]
    return error


def _non_canonical(sig: str) -> str:
    # The 43rd character carries 4 digest bits and 2 unused bits that must be zero.
    index = _B64.index(sig[42])
    assert index % 4 == 0
    return sig[:42] + _B64[index + 1] + sig[43:]


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
def test_one_well_formed_signature_is_accepted(
    run: Run, seen: list[Event], value: str | bytes
) -> None:
    outcome = run(BODY, [("X-Signature", value)])
    assert outcome.status == 200
    assert [e.event for e in seen] == ["sync.failed"]


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
    run: Run, seen: list[Event], value: str | bytes
) -> None:
    outcome = run(BODY, [("X-Signature", value)])
    error = assert_refused_unread(outcome, 401, seen)
    assert outcome.reason == "invalid_signature"
    assert NO_MATCH not in error  # refused for its form, before any digest was compared


def test_url_safe_signature_answers_401(run: Run, seen: list[Event]) -> None:
    sig = sign(URLSAFE_BODY, SECRET)
    urlsafe = sig.translate(str.maketrans("+/", "-_"))
    assert urlsafe != sig
    error = assert_refused_unread(run(URLSAFE_BODY, {"X-Signature": urlsafe}), 401, seen)
    assert NO_MATCH not in error
    assert run(URLSAFE_BODY, {"X-Signature": sig}).status == 200


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
def test_missing_or_empty_signature_answers_401(run: Run, seen: list[Event], headers: Any) -> None:
    outcome = run(BODY, headers)
    assert_refused_unread(outcome, 401, seen)
    assert outcome.reason == "missing_signature"


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
def test_repeated_signature_header_answers_401_before_hmac(
    run: Run, seen: list[Event], headers: Any
) -> None:
    error = assert_refused_unread(run(BODY, headers), 401, seen)
    assert "more than once" in error


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
    run: Run, seen: list[Event], body: bytes, value: str
) -> None:
    outcome = run(body, {"X-Signature": value})
    assert assert_refused_unread(outcome, 401, seen) == f"the X-Signature {NO_MATCH}"
    assert outcome.reason == "invalid_signature"


@pytest.fixture
def rotating() -> Iterator[WebhookReceiver]:
    """Three secrets configured, as during a rotation with two webhooks."""
    receiver = WebhookReceiver([OTHER_SECRET, "whsec_receiver_third", SECRET])
    yield receiver
    receiver.close()


def test_a_forgery_is_refused_against_every_secret(
    rotating: WebhookReceiver, handle: Handle
) -> None:
    outcome = handle(rotating, BODY, {"X-Signature": sign(BODY, "whsec_not_configured")})
    assert (outcome.status, outcome.json()["error"]) == (401, f"the X-Signature {NO_MATCH}")


@pytest.mark.parametrize(("secret", "number"), [(OTHER_SECRET, 1), (SECRET, 3)])
def test_each_configured_secret_verifies_and_the_log_says_which(
    rotating: WebhookReceiver,
    handle: Handle,
    caplog: pytest.LogCaptureFixture,
    secret: str,
    number: int,
) -> None:
    with caplog.at_level(logging.INFO, "census_receiver"):
        outcome = handle(rotating, BODY, signed_headers(BODY, secret))
    assert outcome.status == 200
    (record,) = caplog.records
    assert f"secret #{number} [" in record.getMessage()
    assert record.census_secret == number  # type: ignore[attr-defined]


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
    run: Run, seen: list[Event], body: bytes, reason: str
) -> None:
    outcome = run(body, signed_headers(body, SECRET))
    assert (outcome.status, outcome.reason) == (400, "malformed_payload")
    assert reason in assert_small_json(outcome)["error"]
    assert "Traceback" not in outcome.body.decode()
    assert seen == []


def test_duplicate_keys_are_refused_whichever_value_would_win(run: Run, seen: list[Event]) -> None:
    # A lenient parser keeps the last value; another keeps the first. Neither is guessed.
    for body in (
        b'{"workspace_id": 1, "sync_id": 2, "sync_run_id": 3, "event": "sync.failed",'
        b' "event": "sync.success"}',
        b'{"workspace_id": 1, "workspace_id": 3167, "sync_id": 2, "sync_run_id": 3,'
        b' "event": "sync.failed"}',
    ):
        assert run(body, signed_headers(body, SECRET)).status == 400
    assert seen == []


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
def test_odd_but_valid_payloads_are_handled(run: Run, seen: list[Event], body: bytes) -> None:
    assert run(body, signed_headers(body, SECRET)).status == 200
    assert len(seen) == 1


def test_odd_payloads_survive_deduplication(handle: Handle) -> None:
    receiver = WebhookReceiver(SECRET, dedup=InMemoryDedupStore())
    seen: list[str] = []
    receiver.on("*")(lambda e: seen.append(e.event))
    for body in (b'{"event": "\\ud800"}', b'{"event": "x", "workspace_id": 1, "sync_id": 2}'):
        for _ in range(2):
            assert handle(receiver, body, signed_headers(body, SECRET)).ok
    assert len(seen) == 2
    receiver.close()


# -- resource bounds --------------------------------------------------------------------------


@pytest.fixture
def small() -> Iterator[WebhookReceiver]:
    """A receiver whose body limit is 1 KiB."""
    receiver = WebhookReceiver(SECRET, max_body_size=1024)
    yield receiver
    receiver.close()


def _padded(size: int) -> bytes:
    body = make_body("sync.failed", pad="")
    return make_body("sync.failed", pad="x" * (size - len(body)))


@pytest.mark.parametrize("size", [1025, 4096, 5_000_000])
@pytest.mark.parametrize("secret", [SECRET, OTHER_SECRET], ids=["signed", "forged"])
def test_body_over_the_limit_answers_413_whatever_its_signature(
    small: WebhookReceiver, handle: Handle, size: int, secret: str
) -> None:
    # No Content-Length here: the size of the bytes decides, before the signature.
    body = _padded(size)
    outcome = handle(small, body, signed_headers(body, secret))
    assert (outcome.status, outcome.reason) == (413, "payload_too_large")
    assert outcome.event is None and assert_small_json(outcome)


@pytest.mark.parametrize("declared", ["1025", "99999999999999999999", b"2048", " 1025 ", "+1025"])
def test_declared_length_over_the_limit_answers_413_before_reading(
    small: WebhookReceiver, declared: str | bytes
) -> None:
    outcome = small.check_request("POST", declared)
    assert outcome is not None and outcome.status == 413
    assert_small_json(outcome)


@pytest.mark.parametrize(
    "declared",
    [None, "", "1024", "0", "-1", "10", "abc", "1e9", "0x500", "9" * 5000, b"\xff"],
)
def test_odd_or_lying_declared_length_defers_to_the_bytes_read(
    small: WebhookReceiver, handle: Handle, declared: str | bytes | None
) -> None:
    # Not a length over the limit: nothing refused yet, and the bytes read still decide.
    assert small.check_request("POST", declared) is None
    body = _padded(1025)
    assert handle(small, body, signed_headers(body, SECRET)).status == 413


def test_declared_length_in_other_scripts_digits_is_read_as_a_number(
    small: WebhookReceiver,
) -> None:
    outcome = small.check_request("POST", "١٠٢٥٠")  # int() reads these: 10250 is over
    assert outcome is not None and outcome.status == 413


# -- secrets stay secret ---------------------------------------------------------------------

# Typed Any: deliberately the wrong type.
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
    assert receiver.verify(BODY, sign(BODY, SENTINEL))


def _hostile_catalogue() -> list[tuple[bytes, Any]]:
    """Deliveries of every kind of refusal and failure, most carrying SECRET-made signatures."""
    big = _padded(2_000_000)
    cases: list[tuple[bytes, Any]] = [
        (BODY, {"X-Signature": sign(BODY, OTHER_SECRET + "-unknown")}),
        (BODY, {"X-Signature": sign(BODY + b"!", SECRET)}),
        (BODY + b" ", {"X-Signature": SIG}),
        (BODY, [("X-Signature", SIG), ("X-Signature", SIG)]),
        (BODY, {"X-Signature": SIG.rstrip("=")}),
        (BODY, {"X-Signature": DIGEST.hex()}),
        (BODY, {}),
        (big, signed_headers(big, SECRET)),
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


def test_logs_exceptions_reprs_and_answers_never_carry_secrets_or_bodies(
    handle: Handle, caplog: pytest.LogCaptureFixture
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
            outcome = handle(receiver, body, headers)
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
def test_answers_and_logs_stay_small_and_escaped_whatever_the_payload(
    payload: str, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = WebhookReceiver(SECRET, allowed_workspaces={3167})
    receiver.on("*")(lambda e: None)
    body = payload.encode()
    with caplog.at_level(logging.DEBUG, "census_receiver"):
        outcome = receiver.handle(body, signed_headers(body, SECRET))
    assert outcome.status in (400, 403)
    assert_small_json(outcome)
    for record in caplog.records:
        message = record.getMessage()
        assert len(message) < 400
        assert message.isprintable()


# -- the workspace allowlist ------------------------------------------------------------------


@pytest.fixture
def allowlisted() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(SECRET, allowed_workspaces={3167, 42})
    yield receiver
    receiver.close()


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
    allowlisted: WebhookReceiver,
    handle: Handle,
    payload: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    handled: list[Event] = []
    allowlisted.on("*")(handled.append)
    body = json.dumps(payload).encode()
    with caplog.at_level(logging.WARNING, "census_receiver"):
        outcome = handle(allowlisted, body, signed_headers(body, SECRET))
    assert (outcome.status, outcome.reason) == (403, "workspace_not_allowed")
    assert handled == [] and assert_small_json(outcome)
    (record,) = caplog.records
    assert "403 workspace_not_allowed" in record.getMessage()
    assert allowlisted.stats.counts() == {("-", "workspace_not_allowed"): 1}


@pytest.mark.parametrize("workspace", [3167, 42])
def test_allowlist_lets_listed_workspaces_through(
    allowlisted: WebhookReceiver, handle: Handle, workspace: int
) -> None:
    handled: list[Event] = []
    allowlisted.on("*")(handled.append)
    body = make_body("sync.failed", workspace_id=workspace)
    assert handle(allowlisted, body, signed_headers(body, SECRET)).status == 200
    assert [e.workspace_id for e in handled] == [workspace]


def test_allowlist_is_checked_after_the_signature(
    allowlisted: WebhookReceiver, handle: Handle
) -> None:
    body = make_body("sync.failed", workspace_id=9999)
    outcome = handle(allowlisted, body, {"X-Signature": sign(body, OTHER_SECRET)})
    assert (outcome.status, outcome.reason) == (401, "invalid_signature")
