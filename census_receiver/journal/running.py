"""Running recorded deliveries again: replays, the worker's due deliveries, overdue runs.

No web framework. A ``JournalRunner`` is what a receiver with a journal uses
for ``replay``, ``run_pending`` and the ``on_run_overdue`` hooks: it takes a
claim from the journal (a replay's, or a worker's on due deliveries), rebuilds
the event from the recorded body, and runs it through the same delivery
sequence as a request, on the calling thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Awaitable, Iterator
from datetime import timedelta
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ..answers import DUPLICATE, IN_PROGRESS, Outcome, Reporter
from ..delivery import Pipeline, VerifiedDelivery
from ..errors import MalformedPayload
from ..events import Event, parse_event
from ..routing import describe
from .base import JournalUnavailable
from .records import DONE_STATUSES

if TYPE_CHECKING:
    from .._types import RunHook
    from ..routing import Router
    from .base import Journal, JournalClaim

__all__ = ["JournalRunner"]

logger = logging.getLogger("census_receiver")


class JournalRunner:
    """Runs a journal's recorded deliveries through a receiver's handlers.

    Args:
        journal: the journal.
        pipeline: the receiver's delivery pipeline (stores, hooks, workers).
        router: the receiver's handlers.
        reporter: the receiver's answers, logs and counters.
        overdue_hooks: ``(after, hook)`` pairs of ``on_run_overdue`` (live list).
    """

    def __init__(
        self,
        journal: Journal,
        pipeline: Pipeline,
        router: Router,
        reporter: Reporter,
        overdue_hooks: list[tuple[timedelta, RunHook]],
    ) -> None:
        self.journal = journal
        self.pipeline = pipeline
        self.router = router
        self.reporter = reporter
        self.overdue_hooks = overdue_hooks

    def replay(self, delivery_id: int, *, force: bool = False) -> Outcome:
        """Run one recorded delivery again; see ``WebhookReceiver.replay``."""
        record, claim = self.journal.claim_for_replay(
            delivery_id, force=force, finishing=bool(self.pipeline.run_hooks)
        )
        if claim is None:
            done = record.status in DONE_STATUSES
            template = DUPLICATE if done else IN_PROGRESS
            return self.reporter.finish(template, labels_of(record.body), perf_counter(), -1)
        return self.run(record.body, claim)

    def run_pending(self, limit: int) -> int:
        """Run what is due once; see ``WebhookReceiver.run_pending``."""
        taken = self.journal.take_due(limit, finishing=bool(self.pipeline.run_hooks))
        for record, claim in taken:
            self.run(record.body, claim)
        self.notify_overdue()
        return len(taken)

    def run(self, body: bytes, claim: JournalClaim) -> Outcome:
        """Run a recorded body under ``claim`` on this thread, and settle it."""
        started = perf_counter()
        try:
            event = parse_event(body)
        except MalformedPayload as exc:  # still refused: it stays so
            outcome = self.reporter.reject(exc, started, None, 0)
            self.journal.settle(claim, None, outcome, exc)
            return outcome
        routes = self.router.handlers_for(event)
        delivery = VerifiedDelivery(
            self.pipeline, body, event, -1, routes, None, started, claim=claim
        )
        with _renewing(self.journal, claim):
            return delivery.run()

    def notify_overdue(self) -> int:
        """Call each ``on_run_overdue`` hook once per run overdue for its ``after``.

        Shorter thresholds go first, so a run overdue for several is notified
        for each. A hook that fails is logged and its run is notified again at
        the next check.

        Returns:
            How many notices were given.
        """
        given = 0
        for after, hook in sorted(self.overdue_hooks, key=lambda pair: pair[0]):
            for run in self.journal.claim_overdue(after):
                try:
                    result: Any = hook(run)
                    if isinstance(result, Awaitable):
                        self.pipeline.workers.run_coroutine(result)
                    given += 1
                except Exception:
                    logger.exception(
                        "census on_run_overdue hook %s failed for run %s of sync %s; "
                        "it is notified again at the next check",
                        describe(hook),
                        run.sync_run_id,
                        run.sync_id,
                    )
                    self.journal.unclaim_overdue(run.sync_run_id)
        return given


@contextlib.contextmanager
def _renewing(journal: Journal, claim: JournalClaim) -> Iterator[None]:
    """Renew ``claim``'s lease every third of it while the block runs (long handlers)."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(journal.lease / 3):
            try:
                if not journal.renew(claim):
                    return  # taken over meanwhile: nothing left to keep
            except JournalUnavailable:
                logger.warning("census journal unavailable while renewing a lease; retrying")

    renewer = threading.Thread(target=renew, name="census-journal-lease", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()


def labels_of(body: bytes) -> Event:
    """A recorded body's event name and ids, where a lenient reading finds them."""
    import json

    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return Event("", None, None, None)
    name = payload.get("event")
    workspace, sync, run = (
        value if type(value) is int else None
        for value in (payload.get(k) for k in ("workspace_id", "sync_id", "sync_run_id"))
    )
    return Event(name if isinstance(name, str) else "", workspace, sync, run)
