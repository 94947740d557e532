"""answers.py: the Outcome, the answer templates, and the log line and counters of each answer."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from time import perf_counter

import pytest

from census_receiver import (
    DedupUnavailable,
    InvalidSignature,
    MethodNotAllowed,
    MissingSignature,
    NonRetryableError,
    Outcome,
    RequestRejected,
    WebhookReceiver,
)
from census_receiver.answers import (
    DROPPED,
    HANDLED,
    HANDLER_ERROR,
    REASONS,
    Reporter,
    answer,
    describe_event,
    printable,
)
from census_receiver.events import Event, parse_event
from census_receiver.stats import ReceiverStats
from census_receiver.testing import make_body, sign

from .log_secrecy import SecrecyWatch

FINGERPRINTS = ("1a2b3c4d", "5e6f7a8b")


@pytest.fixture
def stats() -> ReceiverStats:
    return ReceiverStats()


@pytest.fixture
def reporter(stats: ReceiverStats) -> Reporter:
    return Reporter(stats, FINGERPRINTS, slow_handling=5.0)


@pytest.fixture
def event() -> Event:
    return parse_event(make_body("sync.failed", workspace_id=1, sync_id=2, sync_run_id=3))


# -- Outcome and Answer -----------------------------------------------------------------------


def test_outcomes_compare_by_value(event: Event) -> None:
    one = Outcome(answer(200, "status", "ok", "handled"), event)
    same = Outcome(answer(200, "status", "ok", "handled"), event)
    assert one == same and hash(one) == hash(same)
    assert one != dataclasses.replace(one, answer=answer(200, "status", "ok", "ignored"))
    assert one != dataclasses.replace(one, result="kept")
    assert one != dataclasses.replace(one, event=None)


def test_outcomes_and_answers_are_immutable() -> None:
    outcome = Outcome(HANDLED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.answer = DROPPED  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        HANDLED.status = 500  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        outcome.extra = 1  # type: ignore[attr-defined]


def test_an_outcome_reads_its_answer() -> None:
    outcome = Outcome(HANDLER_ERROR)
    assert (outcome.status, outcome.body, outcome.headers, outcome.reason) == (
        HANDLER_ERROR.status,
        HANDLER_ERROR.body,
        HANDLER_ERROR.headers,
        "handler_error",
    )
    assert (outcome.event, outcome.result) == (None, None)


@pytest.mark.parametrize(
    ("status", "ok"),
    [(199, False), (200, True), (204, True), (299, True), (300, False), (401, False)],
)
def test_ok_means_2xx(status: int, ok: bool) -> None:
    assert Outcome(answer(status, "status", "x", "x")).ok is ok


def test_json_decodes_the_body() -> None:
    assert Outcome(HANDLED).json() == {"status": "ok"}
    assert Outcome(HANDLER_ERROR).json() == {
        "error": "a handler failed; the delivery can be retried"
    }


# -- answer() and the templates ---------------------------------------------------------------


def test_answer_escapes_markup_and_stays_ascii() -> None:
    text = '</script><b>"Tom" & Jerry</b> é\u2028'
    built = answer(400, "error", text, "malformed_payload")
    assert not any(c in built.body for c in b"<>&")
    assert b"\\u003c/script\\u003e" in built.body and b"\\u0026" in built.body
    built.body.decode("ascii")
    assert json.loads(built.body) == {"error": text}


def test_answer_headers_say_json_and_its_length_then_the_extra_ones() -> None:
    built = answer(405, "error", "use POST", "method_not_allowed", ("allow", "POST"))
    assert built.headers == (
        ("content-type", "application/json"),
        ("content-length", str(len(built.body))),
        ("allow", "POST"),
    )
    assert built.raw_headers == tuple((k.encode(), v.encode()) for k, v in built.headers)
    assert (built.status, built.reason) == (405, "method_not_allowed")


def test_answer_is_built_once_per_text() -> None:
    assert answer(503, "error", "busy", "busy") is answer(503, "error", "busy", "busy")


def _rejections(cls: type[RequestRejected]) -> list[type[RequestRejected]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_rejections(sub)]
    return found


@pytest.mark.parametrize("cls", _rejections(RequestRejected), ids=lambda c: c.__name__)
def test_reasons_cover_every_rejection_with_its_status(cls: type[RequestRejected]) -> None:
    assert REASONS[cls.reason] == cls.status_code


def test_reasons_cover_every_status_of_the_contract() -> None:
    assert set(REASONS.values()) == {200, 400, 401, 403, 405, 409, 413, 500, 503}


def test_reasons_cover_every_template() -> None:
    templates = [HANDLED, DROPPED, HANDLER_ERROR]
    assert all(REASONS[t.reason] == t.status for t in templates)
    assert {"handled", "ignored", "accepted", "duplicate", "dropped", "handler_error"} <= set(
        REASONS
    )
    assert {"in_progress", "deadline", "busy", "dedup_unavailable"} <= set(REASONS)


# -- text for log lines -----------------------------------------------------------------------


def test_printable_clips_and_escapes() -> None:
    assert printable("sync.failed") == "sync.failed"
    assert printable("x" * 100) == "x" * 64 + "..."
    assert printable("a\nb\x00") == "a\\nb\\x00"
    assert printable(3167) == "3167"


def test_describe_event_names_the_ids(event: Event) -> None:
    assert describe_event(event) == "sync.failed workspace=1 sync=2 run=3"


# -- Reporter ---------------------------------------------------------------------------------


def test_finish_logs_one_info_line_with_the_secret_numbered_from_one(
    reporter: Reporter, stats: ReceiverStats, event: Event, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, "census_receiver"):
        outcome = reporter.finish(HANDLED, event, perf_counter(), 1, result="kept")
    assert outcome == Outcome(HANDLED, event, "kept")
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert message.startswith("census delivery sync.failed workspace=1 sync=2 run=3: handled (200)")
    assert message.endswith("secret #2 [5e6f7a8b]")
    assert record.census_secret == 2  # type: ignore[attr-defined]
    assert (record.census_event, record.census_reason) == ("sync.failed", "handled")  # type: ignore[attr-defined]
    assert stats.counts() == {("sync.failed", "handled"): 1}


def test_finish_with_the_first_secret_says_secret_one(
    reporter: Reporter, event: Event, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "census_receiver"):
        reporter.finish(DROPPED, event, perf_counter(), 0)
    assert caplog.records[0].getMessage().endswith("secret #1 [1a2b3c4d]")


def test_finish_of_a_run_from_the_journal_says_so(
    reporter: Reporter, event: Event, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "census_receiver"):
        reporter.finish(HANDLED, event, perf_counter(), -1)
    message = caplog.records[0].getMessage()
    assert "handled (200)" in message and message.endswith(" ms, from the journal")
    assert "secret" not in message


def test_finish_warns_when_handling_took_longer_than_slow_handling(
    reporter: Reporter, stats: ReceiverStats, event: Event, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "census_receiver"):
        reporter.finish(HANDLED, event, perf_counter() - 6.0, 0)
    _, warning = caplog.records
    assert warning.levelno == logging.WARNING
    assert "over the 5.0 s budget" in warning.getMessage()
    assert stats.timings()["sync.failed"].max >= 6.0


def test_finish_without_slow_handling_never_warns(
    stats: ReceiverStats, event: Event, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "census_receiver"):
        Reporter(stats, FINGERPRINTS, None).finish(HANDLED, event, perf_counter() - 60, 0)
    assert [r.levelno for r in caplog.records] == [logging.INFO]


def test_reject_answers_logs_and_counts_the_refusal(
    reporter: Reporter, stats: ReceiverStats, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, "census_receiver"):
        outcome = reporter.reject(
            MissingSignature("the X-Signature header is missing"), None, None, 0
        )
    assert (outcome.status, outcome.reason) == (401, "missing_signature")
    assert outcome.json() == {"error": "the X-Signature header is missing"}
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "census delivery rejected (401 missing_signature): the X-Signature header is missing"
    )
    assert stats.counts() == {("-", "missing_signature"): 1}


def test_reject_of_a_wrong_signature_hints_at_an_altered_body(
    reporter: Reporter, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "census_receiver"):
        reporter.reject(InvalidSignature("the X-Signature does not match"), perf_counter(), None, 0)
    message = caplog.records[0].getMessage()
    assert "curl -d instead of --data-binary" in message
    assert "a proxy re-encoding it" in message


def test_reject_of_another_method_adds_allow(reporter: Reporter) -> None:
    outcome = reporter.reject(MethodNotAllowed("use POST"), None, None, 0)
    assert ("allow", "POST") in outcome.headers and outcome.status == 405


def test_handler_failure_answers_500_with_the_traceback_logged(
    reporter: Reporter, event: Event, caplog: pytest.LogCaptureFixture
) -> None:
    def sync_handler(event: Event) -> None:
        """Stands for the handler that failed."""

    with caplog.at_level(logging.ERROR, "census_receiver"):
        template = reporter.handler_failed(RuntimeError("boom"), sync_handler, event)
    assert template is HANDLER_ERROR
    (record,) = caplog.records
    assert record.exc_info is not None
    assert "sync_handler failed on sync.failed workspace=1" in record.getMessage()


def test_non_retryable_failure_answers_dropped_without_a_traceback(
    reporter: Reporter, event: Event, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, "census_receiver"):
        template = reporter.handler_failed(NonRetryableError("gone for good"), None, event)
    assert template is DROPPED
    (record,) = caplog.records
    assert record.exc_info is None
    assert "handler ? gave up on sync.failed" in record.getMessage()
    assert record.getMessage().endswith("gone for good")


@pytest.mark.parametrize(
    ("fail_open", "level", "says"),
    [
        (True, logging.WARNING, "without deduplication"),
        (False, logging.ERROR, "answering 503"),
    ],
)
def test_store_unavailable_quotes_only_our_own_messages(
    event: Event, caplog: pytest.LogCaptureFixture, fail_open: bool, level: int, says: str
) -> None:
    with caplog.at_level(logging.WARNING, "census_receiver"):
        Reporter.store_unavailable(
            ConnectionError("redis://:hunter2@cache:6379"), event, fail_open=fail_open
        )
        Reporter.store_unavailable(DedupUnavailable("no answer in 0.1 s"), event, fail_open=True)
    first, second = (r.getMessage() for r in caplog.records)
    assert caplog.records[0].levelno == level and says in first
    assert "ConnectionError" in first and "hunter2" not in first
    assert "no answer in 0.1 s" in second


@pytest.mark.parametrize(
    ("done", "says"),
    [(True, "answered 200 but may be handled again"), (False, "its claim expires")],
)
def test_settle_failure_says_what_follows(
    caplog: pytest.LogCaptureFixture, done: bool, says: str
) -> None:
    with caplog.at_level(logging.WARNING, "census_receiver"):
        Reporter.settle_failed(OSError("secret-bearing text"), done=done)
    (record,) = caplog.records
    assert says in record.getMessage() and "secret-bearing" not in record.getMessage()


# -- the suite-wide log watch -----------------------------------------------------------------


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
