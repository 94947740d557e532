"""The webhook receiver: its configuration, its handlers, and the pure triage of a request.

No I/O and no web framework. A delivery goes through two public steps, which
every adapter, ``handle`` and ``handle_async`` use::

    triage(body, headers)   pure: size -> X-Signature -> strict JSON -> Event
        |                         -> workspace allow-list -> matching handlers
        +-- an Outcome: refused (401, 413, 400, 403) or nothing to run (200 ignored)
        +-- a VerifiedDelivery, whose run() / await run_async() claims it, runs
            the handlers and settles it (census_receiver.delivery)

``handle`` is ``triage`` then ``run``; ``handle_async`` is ``triage`` then
``await run_async``. The answers, their log lines and counters are built in
``census_receiver.answers``; the worker threads and private loop live in
``census_receiver.workers``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .answers import IGNORED, Outcome, Reporter, printable
from .claims import AsyncClaims, AsyncStoreClaims, Claims, StoreClaims
from .dedup import DedupStore, default_key, is_async_store
from .delivery import Pipeline, VerifiedDelivery
from .errors import (
    ConfigurationError,
    MalformedPayload,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestRejected,
    WorkspaceNotAllowed,
)
from .events import Event, parse_event
from .registration import Registration
from .settings import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_PATH,
    DEFAULT_SLOW_HANDLING,
    SECRET_ENV_VAR,
    check_body_limit,
    check_path,
    check_positive,
    check_stores,
    secrets_from,
    workspace_ids,
)
from .signature import SecretSet, signature_from_headers
from .stats import ReceiverStats
from .workers import Workers

if TYPE_CHECKING:
    from ._types import Body, Headers, Secret
    from .dedup import AsyncDedupStore, KeyFunction
    from .journal.base import Journal
    from .journal.running import JournalRunner

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_PATH",
    "DEFAULT_SLOW_HANDLING",
    "SECRET_ENV_VAR",
    "Outcome",
    "VerifiedDelivery",
    "WebhookReceiver",
    "check_path",
]

_H = TypeVar("_H", bound=Callable[..., Any])
_E = TypeVar("_E", bound=Callable[..., Any])


def check_receiver(receiver: object) -> WebhookReceiver:
    """Check that an adapter was given a ``WebhookReceiver``.

    Returns:
        ``receiver`` unchanged.

    Raises:
        ConfigurationError: naming what was given instead, and what to write.
    """
    if not isinstance(receiver, WebhookReceiver):
        raise ConfigurationError(
            "receiver must be a WebhookReceiver, not "
            f"{type(receiver).__name__}: build one with WebhookReceiver(secret=...) "
            "and pass it as receiver=receiver"
        )
    return receiver


class WebhookReceiver(Registration):
    """Verifies Census deliveries and dispatches them to handlers.

    Args:
        secret: the webhook secret (``str`` or ``bytes``), or a list of them when
            several webhooks point at one endpoint or a secret is being rotated.
            ``None`` reads ``CENSUS_WEBHOOK_SECRET``.
        max_body_size: larger bodies are answered 413, before any HMAC.
        dedup: a store from ``census_receiver.dedup`` to handle each delivery once.
        dedup_key: builds the dedup key from ``(event, body)``; defaults to the
            event's identity fields (``census_receiver.dedup.default_key``).
        dedup_fail_open: when the dedup store is unreachable, run the handlers
            anyway (risking a duplicate) instead of answering 503 (the default).
        deadline: with a store, seconds from a delivery's arrival after which it
            is answered 503 (Census gives up at 10 s and retries). Under
            ``handle_async`` it bounds the whole run: handlers still running
            finish in the background, and the retry finds the delivery done
            (200) or released (run again). Under ``handle`` it bounds the store's
            answer only, which is then awaited in a worker thread; handlers run on
            the caller's thread and cannot be cut short. ``None`` waits however
            long it takes. The default, ``"auto"``, is 8 s with a store or
            journal and nothing without; a number without a store is refused:
            there is nothing to bound, and a 503 would make Census's retry run
            the handlers twice.
        slow_handling: seconds of handling above which a warning is logged.
        allowed_workspaces: if given, only these Census workspace ids are handled;
            verified deliveries from others are answered 403.
        max_threads: worker threads, for sync handlers under ``handle_async`` and
            for store calls awaited under a deadline.
        stats: counters to update (one is made if not given).
        journal: a journal from ``census_receiver.journal`` that records every
            verified delivery (and is the dedup store: not with ``dedup``).
        acknowledge: ``"after_handlers"`` (the default: answer once the handlers
            ran) or ``"on_capture"`` (answer 200 ``accepted`` once the journal
            has the delivery; ``run_pending`` and ``census-receiver work`` run
            the handlers). ``"on_capture"`` needs a journal.

    Raises:
        ConfigurationError: if there is no usable secret or an option is invalid.
    """

    def __init__(
        self,
        secret: Secret | Sequence[Secret] | None = None,
        *,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        dedup: DedupStore | AsyncDedupStore | None = None,
        dedup_key: KeyFunction | None = None,
        dedup_fail_open: bool = False,
        deadline: float | Literal["auto"] | None = "auto",
        slow_handling: float | None = DEFAULT_SLOW_HANDLING,
        allowed_workspaces: Collection[int] | None = None,
        max_threads: int = 40,
        stats: ReceiverStats | None = None,
        journal: Journal | None = None,
        acknowledge: str = "after_handlers",
    ) -> None:
        self._secrets = SecretSet(secrets_from(secret))
        check_body_limit(max_body_size)
        kept_deadline = check_stores(dedup, dedup_key, journal, acknowledge, deadline)
        check_positive("slow_handling", slow_handling, optional=True)
        check_positive("max_threads", max_threads)
        #: Bodies larger than this many bytes are answered 413.
        self.max_body_size: int = max_body_size
        #: The dedup store, or ``None``.
        self.dedup: DedupStore | AsyncDedupStore | None = dedup
        #: The journal, or ``None``.
        self.journal: Journal | None = journal
        #: When deliveries are answered: ``"after_handlers"`` or ``"on_capture"``.
        self.acknowledge = acknowledge
        #: The workspace allowlist, or ``None`` for any workspace.
        self.allowed_workspaces: frozenset[int] | None = workspace_ids(allowed_workspaces)
        #: Counts of deliveries by event and outcome, and handling times.
        self.stats: ReceiverStats = stats if stats is not None else ReceiverStats()
        super().__init__()
        claims: Claims | AsyncClaims | None = journal
        if dedup is not None:
            # check_stores made sure dedup is a DedupStore, whose asyncio kind this tells.
            claims = (
                AsyncStoreClaims(dedup)  # type: ignore[arg-type]
                if is_async_store(dedup)
                else StoreClaims(dedup)  # type: ignore[arg-type]
            )
        self._reporter = Reporter(
            self.stats,
            self._secrets.fingerprints,
            slow_handling,
            rejections=journal.note_rejection if journal is not None else None,
        )
        self._workers = Workers(max_threads)
        self._pipeline = Pipeline(
            self._reporter,
            self._workers,
            claims,
            self._error_hooks,
            dedup_key or default_key,
            kept_deadline if claims is not None else None,
            dedup_fail_open,
            on_capture=acknowledge == "on_capture",
            run_hooks=self._run_hooks,
        )
        self._journal_runner = self._runner_on(journal) if journal is not None else None
        self.deadline = kept_deadline
        self.dedup_fail_open = dedup_fail_open
        self.slow_handling = slow_handling

    def __repr__(self) -> str:
        store = type(self.dedup).__name__ if self.dedup is not None else None
        return (
            f"<WebhookReceiver secrets={len(self._secrets)} handlers={len(self._router)} "
            f"max_body_size={self.max_body_size} dedup={store}>"
        )

    # -- the pure steps ----------------------------------------------------------------

    def verify(self, body: Body, signature: str | bytes | None) -> bool:
        """Check an ``X-Signature`` value against every configured secret.

        Args:
            body: the exact request body.
            signature: the header value (``None`` if absent).

        Returns:
            Whether it is a well-formed signature of ``body`` under some secret.
        """
        try:
            self._secrets.check(body, signature)
        except RequestRejected:
            return False
        return True

    def verify_event(self, body: Body, headers: Headers) -> Event:
        """Verify a delivery and decode its event, without running any handler.

        Args:
            body: the exact request body.
            headers: the request headers (mapping or pairs; names in any case).

        Returns:
            The typed event.

        Raises:
            RequestRejected: a subclass saying why (``.status_code`` is the answer).
        """
        return self._authenticate(body, signature_from_headers(headers))[0]

    def _authenticate(self, body: Body, signature: str | bytes | None) -> tuple[Event, int]:
        """The event of a delivery, and which secret verified it; or the refusal, raised."""
        if len(body) > self.max_body_size:
            raise PayloadTooLarge(f"the body is larger than {self.max_body_size} bytes")
        position = self._secrets.check(body, signature)
        event = parse_event(body)
        allowed = self.allowed_workspaces
        if allowed is not None and event.workspace_id not in allowed:
            raise WorkspaceNotAllowed(
                f"workspace {printable(event.workspace_id)} is not one of the allowed workspaces"
            )
        return event, position

    def check_request(
        self,
        method: str,
        content_length: str | bytes | None = None,
        *,
        remote: str | None = None,
    ) -> Outcome | None:
        """Refuse a request from its method and declared length, before reading the body.

        Adapters call this first; a declared length over the limit is answered
        413 without reading anything. A missing or unparsable length is left to
        the size check of ``triage`` on the bytes actually read.

        Args:
            method: the HTTP method.
            content_length: the Content-Length header value, if any.
            remote: the client's address, for the journal's rejection log.

        Returns:
            The 405 or 413 answer, or ``None`` when the request may proceed.
        """
        if method != "POST":
            return self.reject(
                MethodNotAllowed("use POST to deliver Census webhooks"), remote=remote
            )
        if content_length:
            try:
                declared = int(content_length)
            except ValueError:
                return None
            if declared > self.max_body_size:
                return self.reject(
                    PayloadTooLarge(f"the body is larger than {self.max_body_size} bytes"),
                    remote=remote,
                    size=declared,
                )
        return None

    def reject(
        self,
        error: RequestRejected,
        *,
        started: float | None = None,
        remote: str | None = None,
        size: int = 0,
    ) -> Outcome:
        """Turn a refusal into its answer, logging and counting it.

        Args:
            error: why the delivery is refused.
            started: ``perf_counter()`` when handling began, for the timing.
            remote: the client's address, for the journal's rejection log.
            size: the body's size, likewise.

        Returns:
            The answer: ``error.status_code`` with ``{"error": str(error)}``.
        """
        return self._reporter.reject(error, started, remote, size)

    def triage(
        self,
        body: Body,
        headers: Headers | None = None,
        *,
        signature: str | bytes | None = None,
        endpoint: Callable[[Event], object] | None = None,
        remote: str | None = None,
    ) -> Outcome | VerifiedDelivery:
        """Check a delivery and find what it runs, without running anything.

        Args:
            body: the exact request body.
            headers: the request headers (mapping or pairs; names in any case).
            signature: the X-Signature value, for adapters that found the one
                value themselves; used when ``headers`` is ``None``.
            endpoint: an extra callable run after the handlers, as part of
                handling (a Flask view); what it returns is ``Outcome.result``.
            remote: the client's address, for the journal's rejection log.

        Returns:
            The final ``Outcome`` (a refusal, or 200 ``ignored`` when nothing is
            to run), or the ``VerifiedDelivery`` to ``run()`` or ``run_async()``.
            With a journal, every verified delivery is a ``VerifiedDelivery``, so
            that running it records it, a refused payload's body included.
        """
        started = perf_counter()
        try:
            if headers is not None:
                signature = signature_from_headers(headers)
            event, position = self._authenticate(body, signature)
        except RequestRejected as exc:
            outcome = self._reporter.reject(exc, started, remote, len(body))
            if self.journal is None or not isinstance(exc, MalformedPayload):
                return outcome
            # Verified, but its payload refused: the journal keeps the body.
            from .journal.running import labels_of

            return VerifiedDelivery(
                self._pipeline,
                body,
                labels_of(bytes(body)),
                # A payload is parsed only once its signature matched: this is its secret.
                self._secrets.check(body, signature),
                (),
                None,
                started,
                refusal=outcome,
            )
        routes = self._router.handlers_for(event)
        if not routes and endpoint is None and self.journal is None:
            return self._reporter.finish(IGNORED, event, started, position)
        return VerifiedDelivery(self._pipeline, body, event, position, routes, endpoint, started)

    def handle(
        self, body: Body, headers: Headers, *, endpoint: Callable[[Event], object] | None = None
    ) -> Outcome:
        """Verify, decode and dispatch one delivery on this thread; never raises for bad input.

        Args:
            body: the exact request body.
            headers: the request headers (mapping or pairs; names in any case).
            endpoint: an extra callable run after the handlers (a Flask view);
                what it returns is ``Outcome.result``.

        Returns:
            The answer to give, following the HTTP contract.
        """
        triaged = self.triage(body, headers, endpoint=endpoint)
        return triaged if isinstance(triaged, Outcome) else triaged.run()

    async def handle_async(
        self, body: Body, headers: Headers, *, endpoint: Callable[[Event], object] | None = None
    ) -> Outcome:
        """``handle`` for an event loop: async handlers are awaited, sync ones run in threads.

        Args:
            body: the exact request body.
            headers: the request headers (mapping or pairs; names in any case).
            endpoint: an extra callable (sync or async) run after the handlers.

        Returns:
            The answer to give, following the HTTP contract.
        """
        triaged = self.triage(body, headers, endpoint=endpoint)
        return triaged if isinstance(triaged, Outcome) else await triaged.run_async()

    # -- the journal: replay, workers, sync runs ---------------------------------------

    def _runner_on(self, journal: Journal) -> JournalRunner:
        # Imported only with a journal: the journal package loads sqlite3.
        from .journal.running import JournalRunner

        return JournalRunner(
            journal, self._pipeline, self._router, self._reporter, self._overdue_hooks
        )

    def _runner(self, what: str) -> JournalRunner:
        if self._journal_runner is None:
            raise ConfigurationError(
                f"{what} needs a journal: build the receiver with journal=SQLiteJournal(path)"
            )
        return self._journal_runner

    def replay(self, delivery_id: int, *, force: bool = False) -> Outcome:
        """Run the handlers of a recorded delivery again, on this thread.

        Args:
            delivery_id: its id in the journal (``journal.deliveries()``).
            force: run it even if it was handled (or ignored, or dropped) before.

        Returns:
            Its answer: 200 ``ok`` when the handlers succeeded, 500 when one failed
            (recorded as ``failed``), 200 ``duplicate`` for a delivery done before
            (without ``force``), 409 while it runs elsewhere.

        Raises:
            KeyError: if the journal has no such delivery.
            ConfigurationError: without a journal.
            JournalUnavailable: when the journal's database fails.
        """
        return self._runner("replay").replay(delivery_id, force=force)

    def run_pending(self, limit: int = 100) -> int:
        """Run what is due, once: captured deliveries, retries, abandoned runs, overdue runs.

        Due are deliveries captured on arrival (``acknowledge="on_capture"``),
        failed tries whose backoff has passed, and runs whose worker died (their
        lease expired). Each runs on this thread; a failure is retried later with
        backoff, up to the journal's ``max_tries``, then kept as ``failed``. Then
        the ``on_run_overdue`` hooks are called for runs newly overdue.

        Args:
            limit: at most this many deliveries.

        Returns:
            How many deliveries ran.

        Raises:
            ConfigurationError: without a journal.
            JournalUnavailable: when the journal's database fails.
        """
        return self._runner("run_pending").run_pending(limit)

    # -- resources ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop the receiver's worker threads and private event loop, if started.

        Handlers still running in them finish first. Registration stays; the
        receiver starts new threads if used again.
        """
        self._workers.close()
