"""What the receiver answers, and the log line and counters that go with each answer.

No I/O but logging, no web framework. ``Outcome`` is what every adapter writes
back: a status, a small JSON body and its headers, plus what happened (the
event, a ``reason`` label, and what an ``endpoint`` returned). The answers are
built once, as templates (``HANDLED``, ``DUPLICATE``, ...); ``Reporter`` turns a
template into the ``Outcome`` of one delivery, logging it and counting it in
``ReceiverStats``, so every answer is logged and counted the same way whichever
step chose it.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ._frozen import fast_init
from .errors import DedupUnavailable, MethodNotAllowed, NonRetryableError, RequestRejected
from .routing import describe

if TYPE_CHECKING:
    from collections.abc import Callable

    from .events import Event
    from .stats import ReceiverStats

__all__ = [
    "ACCEPTED",
    "BUSY",
    "DEADLINE",
    "DROPPED",
    "DUPLICATE",
    "HANDLED",
    "HANDLER_ERROR",
    "IGNORED",
    "IN_PROGRESS",
    "JOURNAL_UNAVAILABLE",
    "REASONS",
    "UNAVAILABLE",
    "Answer",
    "Outcome",
    "Reporter",
    "answer",
    "describe_event",
    "printable",
    "status_line",
]

logger = logging.getLogger("census_receiver")
_INFO = logging.INFO  # read on every delivery


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer as sent: built once per kind of answer, shared by every delivery.

    Attributes:
        status: the HTTP status code.
        body: the JSON answer, as bytes: ``{"status": ...}`` on 2xx,
            ``{"error": ...}`` otherwise.
        headers: ``(name, value)`` pairs, Content-Type and Content-Length included.
        reason: a short label of what happened (see ``REASONS``).
        raw_headers: ``headers`` encoded once, as ASGI sends them.
        status_line: the status as WSGI sends it: ``"200 OK"``.
    """

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    reason: str
    raw_headers: tuple[tuple[bytes, bytes], ...] = field(init=False, repr=False, compare=False)
    status_line: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        encoded = tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers)
        object.__setattr__(self, "raw_headers", encoded)
        object.__setattr__(self, "status_line", status_line(self.status))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to answer a delivery, and what happened to it.

    Per delivery only the event and the endpoint's result are new: the answer
    itself is one of the shared ``Answer``s, which keeps an ``Outcome`` cheap to
    build on every delivery.

    Attributes:
        answer: what is sent back.
        event: the verified event, or ``None`` when the delivery was refused
            before it was verified and parsed.
        result: what the ``endpoint`` of the delivery returned, if any.
    """

    answer: Answer
    event: Event | None = None
    result: object = None

    @property
    def status(self) -> int:
        """The HTTP status code."""
        return self.answer.status

    @property
    def body(self) -> bytes:
        """The JSON answer, as bytes."""
        return self.answer.body

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """``(name, value)`` pairs, Content-Type and Content-Length included."""
        return self.answer.headers

    @property
    def reason(self) -> str:
        """A short label of what happened (``"handled"``, ``"duplicate"``, ...)."""
        return self.answer.reason

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx (Census will not retry)."""
        return 200 <= self.answer.status < 300

    def json(self) -> dict[str, Any]:
        """The decoded answer body."""
        decoded: dict[str, Any] = json.loads(self.answer.body)
        return decoded


# Built on every delivery, like the events: see fast_init's docstring.
_build_outcome = fast_init(Outcome)


@functools.lru_cache(maxsize=32)
def status_line(status: int) -> str:
    """The WSGI status line of ``status``: ``"200 OK"`` (``"299 Unknown"`` if it has no name)."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


_HTML_SAFE = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026"}


@functools.lru_cache(maxsize=256)
def answer(status: int, key: str, text: str, reason: str, *extra: tuple[str, str]) -> Answer:
    """Build (once, then from a cache) the answer ``{key: text}`` with ``status``.

    The JSON is ASCII with ``<``, ``>`` and ``&`` escaped too: verified payload
    text quoted in a message stays inert even if the answer ends up in a page.

    Args:
        status: the HTTP status.
        key: ``"status"`` for 2xx answers, ``"error"`` otherwise.
        text: the message.
        reason: the ``Outcome.reason`` label.
        *extra: more headers, such as ``("allow", "POST")``.

    Returns:
        The ``Answer``.
    """
    body = json.dumps({key: text}).translate(_HTML_SAFE).encode("ascii")
    headers = (
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        *extra,
    )
    return Answer(status, body, headers, reason)


HANDLED = answer(200, "status", "ok", "handled")
IGNORED = answer(200, "status", "ignored", "ignored")
ACCEPTED = answer(200, "status", "accepted", "accepted")
DUPLICATE = answer(200, "status", "duplicate", "duplicate")
DROPPED = answer(200, "status", "dropped", "dropped")
HANDLER_ERROR = answer(
    500, "error", "a handler failed; the delivery can be retried", "handler_error"
)
IN_PROGRESS = answer(409, "error", "this delivery is being handled; retry later", "in_progress")
DEADLINE = answer(503, "error", "still handling this delivery; retry later", "deadline")
BUSY = answer(503, "error", "the receiver is busy; retry later", "busy")
UNAVAILABLE = answer(503, "error", "the deduplication store is unavailable", "dedup_unavailable")
JOURNAL_UNAVAILABLE = answer(
    503, "error", "the delivery journal is unavailable", "journal_unavailable"
)

#: Every ``Outcome.reason``, with its status.
REASONS: dict[str, int] = {
    o.reason: o.status
    for o in (
        HANDLED,
        IGNORED,
        ACCEPTED,
        DUPLICATE,
        DROPPED,
        HANDLER_ERROR,
        IN_PROGRESS,
        DEADLINE,
        BUSY,
        UNAVAILABLE,
        JOURNAL_UNAVAILABLE,
    )
}
for _cls in RequestRejected.__subclasses__():
    REASONS[_cls.reason] = _cls.status_code


def printable(value: object, limit: int = 64) -> str:
    """Verified payload text for a log line or a message: one short, escaped line."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def describe_event(event: Event) -> str:
    """``sync.failed workspace=1 sync=2 run=3``, escaped for a log line."""
    return (
        f"{printable(event.event)} workspace={printable(event.workspace_id)} "
        f"sync={printable(event.sync_id)} run={printable(event.sync_run_id)}"
    )


def describe_store_error(exc: BaseException) -> str:
    """A store failure for a log line: our own message, or only the exception's type.

    The text of a store client's exception may carry a connection URL with a
    password, so only ``DedupUnavailable`` (whose messages we write) is quoted.
    """
    if isinstance(exc, DedupUnavailable):
        return str(exc)
    return type(exc).__name__


class Reporter:
    """Turns answer templates into the ``Outcome`` of a delivery, logged and counted.

    Args:
        stats: the counters to update.
        fingerprints: one label per secret, to say in the log which one matched.
        slow_handling: seconds above which a delivery is logged as slow, or ``None``.
        rejections: called as ``(status, reason, remote, size)`` for each refusal
            (a journal's rejection log), or ``None``.
    """

    __slots__ = ("fingerprints", "rejections", "slow_handling", "stats")

    def __init__(
        self,
        stats: ReceiverStats,
        fingerprints: tuple[str, ...],
        slow_handling: float | None,
        *,
        rejections: Callable[[int, str, str | None, int], None] | None = None,
    ) -> None:
        self.stats = stats
        self.fingerprints = fingerprints
        self.slow_handling = slow_handling
        self.rejections = rejections

    def finish(
        self,
        template: Answer,
        event: Event,
        started: float,
        position: int,
        result: object = None,
    ) -> Outcome:
        """The answer ``template`` for ``event``, counted and logged.

        Args:
            template: one of this module's answers.
            event: the verified event.
            started: ``perf_counter()`` when the delivery arrived.
            position: which secret verified it (0 for the first; -1 for a run
                from the journal, such as a replay).
            result: what the delivery's endpoint returned.

        Returns:
            The delivery's ``Outcome``.
        """
        elapsed = perf_counter() - started
        self.stats.record(event.event, template.reason, elapsed)
        if logger.isEnabledFor(_INFO):
            reason = template.reason
            logger.info(
                "census delivery %s: %s (%d) in %.1f ms, %s",
                describe_event(event),
                reason,
                template.status,
                elapsed * 1000,
                f"secret #{position + 1} [{self.fingerprints[position]}]"
                if position >= 0
                else "from the journal",
                extra={
                    "census_event": event.event,
                    "census_reason": reason,
                    "census_status": template.status,
                    "census_ms": elapsed * 1000,
                    "census_secret": position + 1,
                },
            )
        slow = self.slow_handling
        if slow is not None and elapsed > slow:
            logger.warning(
                "census delivery %s took %.1f s, over the %.1f s budget (Census gives up "
                "after 10 s): hand slow work to a queue, or acknowledge on capture",
                describe_event(event),
                elapsed,
                slow,
            )
        return _build_outcome(template, event, result)

    def reject(
        self, error: RequestRejected, started: float | None, remote: str | None, size: int
    ) -> Outcome:
        """``WebhookReceiver.reject``: a refusal's answer, logged, counted and noted."""
        extra = (("allow", "POST"),) if isinstance(error, MethodNotAllowed) else ()
        outcome = Outcome(answer(error.status_code, "error", str(error), error.reason, *extra))
        hint = ""
        if error.reason == "invalid_signature":
            hint = (
                " (if the secret is right, the body may have been altered in transit: "
                "a proxy re-encoding it, or curl -d instead of --data-binary)"
            )
        logger.warning(
            "census delivery rejected (%d %s): %s%s",
            outcome.status,
            outcome.reason,
            error,
            hint,
            extra={"census_reason": outcome.reason, "census_status": outcome.status},
        )
        self.stats.record(None, outcome.reason, perf_counter() - started if started else 0.0)
        if self.rejections is not None:
            self.rejections(outcome.status, outcome.reason, remote, size)
        return outcome

    def handler_failed(
        self, error: Exception, failed: Callable[..., object] | None, event: Event
    ) -> Answer:
        """Log a handler's failure and pick its answer template (500, or 200 dropped).

        Args:
            error: what the handler raised.
            failed: the handler (or endpoint) that raised it.
            event: the event it was handling.

        Returns:
            ``DROPPED`` for a ``NonRetryableError``, else ``HANDLER_ERROR``.
        """
        where = describe(failed) if failed is not None else "?"
        if isinstance(error, NonRetryableError):
            logger.error(
                "census handler %s gave up on %s for good (answered 200, no retry): %s",
                where,
                describe_event(event),
                error,
                extra={"census_event": event.event, "census_reason": "dropped"},
            )
            return DROPPED
        logger.error(
            "census handler %s failed on %s",
            where,
            describe_event(event),
            exc_info=error,
            extra={"census_event": event.event, "census_reason": "handler_error"},
        )
        return HANDLER_ERROR

    @staticmethod
    def store_unavailable(error: BaseException, event: Event, *, fail_open: bool) -> None:
        """Log that the store refused or failed a claim (and what happens next)."""
        if fail_open:
            logger.warning(
                "census dedup store unavailable (%s); handling %s without deduplication",
                describe_store_error(error),
                printable(event.event),
            )
        else:
            logger.error(
                "census dedup store unavailable (%s); answering 503 so Census retries %s later",
                describe_store_error(error),
                printable(event.event),
            )

    @staticmethod
    def settle_failed(error: BaseException, *, done: bool) -> None:
        """Log that the store failed to record how a delivery ended."""
        if done:
            logger.warning(
                "census dedup store unavailable (%s) after the handlers succeeded; the "
                "delivery was answered 200 but may be handled again if Census retries it",
                describe_store_error(error),
            )
        else:
            logger.warning(
                "census dedup store unavailable (%s) while releasing a failed delivery; its "
                "claim expires after the store's lease and a later retry runs it",
                describe_store_error(error),
            )
