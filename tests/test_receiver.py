"""WebhookReceiver: configuration, the HTTP contract, handler execution and logging."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from census_receiver import (
    ConfigurationError,
    Event,
    NonRetryableError,
    Outcome,
    SyncCompleted,
    SyncFailed,
    WebhookReceiver,
    compute_signature,
)
from census_receiver.answers import REASONS
from census_receiver.testing import (
    DOCUMENTED_EXAMPLES,
    Delivery,
    make_body,
    make_delivery,
    signed_headers,
)

from .conftest import SECRET

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
    for method in ("GET", "PUT", "HEAD", "OPTIONS", "post"):
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


def test_reasons_cover_every_status_of_the_contract() -> None:
    assert set(REASONS.values()) == {200, 400, 401, 403, 405, 409, 413, 500, 503}


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


def test_outcome_ok_property() -> None:
    assert Outcome(204, b"", ()).ok and not Outcome(409, b"", ()).ok


def test_completed_model_reaches_handler(run: Run, receiver: WebhookReceiver) -> None:
    seen: list[bool] = []

    @receiver.on("sync.completed")
    def handler(event: SyncCompleted) -> None:
        seen.append(event.succeeded)

    d = make_delivery("sync.completed", secret=SECRET, status="emergency")
    run(d.body, d.headers)
    assert seen == [False]
