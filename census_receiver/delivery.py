"""A verified delivery, ready to run: claim, handlers, error hooks, settle, answer.

No web framework, and no I/O of its own. ``WebhookReceiver.triage`` does the
pure checks and returns a ``VerifiedDelivery`` when there is something to run;
its ``run()`` (for a sync caller: WSGI, Flask) or ``await run_async()`` (for an
event loop: ASGI) runs it and returns the ``Outcome``::

    [claim in the store] -> each handler, in order -> [endpoint]
        -> on failure: error hooks -> [settle the claim] -> Outcome

The sequence is written once, in ``census_receiver.sequence_async``, with a
generated sync twin in ``census_receiver.sequence``; what each step does on
each path is in ``census_receiver.steps``. The deadline of the async path is
kept here, around the whole run (see ``WebhookReceiver``'s ``deadline``).

A store reaches the sequence through ``census_receiver.claims``: a dedup store
is adapted by ``StoreClaims`` / ``AsyncStoreClaims``; a journal implements
``Claims`` itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .answers import Answer, Outcome, printable
from .sequence import run_delivery
from .sequence_async import run_delivery_async
from .steps import CLAIMING, UNCLAIMED, Call, past_deadline

if TYPE_CHECKING:
    from ._types import Body, ErrorHook, RunHook
    from .answers import Reporter
    from .claims import AsyncClaims, Claims
    from .dedup import Claim, KeyFunction
    from .events import Event
    from .workers import Workers

__all__ = ["Pipeline", "VerifiedDelivery"]


@dataclass(slots=True, eq=False)
class Pipeline:
    """What every delivery of one receiver runs with; built by the receiver.

    Attributes:
        reporter: builds, logs and counts the answers.
        workers: the thread pool and private loop.
        claims: the store's (or journal's) claim steps, or ``None`` without one.
        error_hooks: called as ``hook(exc, event)`` when a handler fails (live list).
        key: a delivery's identity in the store, from its event and body.
        deadline: seconds, from arrival, after which a claimed delivery is answered.
        fail_open: run the handlers when the store fails, instead of answering 503.
        on_capture: answer 200 ``accepted`` once the journal has the delivery, and
            leave the handlers to a worker.
    """

    reporter: Reporter
    workers: Workers
    claims: Claims | AsyncClaims | None
    error_hooks: list[ErrorHook]
    key: KeyFunction
    deadline: float | None = None
    fail_open: bool = False
    on_capture: bool = False
    #: ``on_run_finished`` hooks (live list): called with a run a delivery finished.
    run_hooks: list[RunHook] = field(default_factory=list)
    #: Deliveries still running past their deadline, kept alive until they end.
    background: set[asyncio.Future[Outcome]] = field(default_factory=set)


class VerifiedDelivery:
    """A verified delivery with something to run: handlers, an endpoint, a claim.

    ``WebhookReceiver.triage`` makes one per request; run it once, with ``run()``
    or ``await run_async()``.

    Attributes:
        event: the verified event.
        body: the exact verified bytes.
        routes: the handlers that match, in order.
        started: ``perf_counter()`` when the delivery arrived.
        claim: a claim made already (a worker's or a replay's run), or ``None``.
        refusal: for a verified body whose payload was refused, its 400 answer:
            running the delivery only keeps the body in the journal.
    """

    __slots__ = (
        "body",
        "claim",
        "endpoint",
        "event",
        "job",
        "pipeline",
        "position",
        "refusal",
        "routes",
        "stage",
        "started",
    )

    def __init__(
        self,
        pipeline: Pipeline,
        body: Body,
        event: Event,
        position: int,
        routes: tuple[Any, ...],
        endpoint: Callable[[Event], object] | None,
        started: float,
        *,
        claim: Claim | None = None,
        refusal: Outcome | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.body = body
        self.event = event
        self.position = position
        self.routes = routes
        self.endpoint = Call(endpoint) if endpoint is not None else None
        self.started = started
        self.claim = claim
        self.refusal = refusal
        #: How far it got, read when its deadline passes.
        self.stage = CLAIMING
        #: The worker-thread job of a claim made under a deadline, while it runs.
        self.job: concurrent.futures.Future[Claim] | None = None

    def key(self) -> str:
        """The delivery's identity in the store or journal (by default: event and ids)."""
        return self.pipeline.key(self.event, self.body)

    def __repr__(self) -> str:
        return f"<VerifiedDelivery {printable(self.event.event)} handlers={len(self.routes)}>"

    def finish(self, template: Answer, result: object = None) -> Outcome:
        """The answer ``template`` for this delivery, logged and counted."""
        return self.pipeline.reporter.finish(
            template, self.event, self.started, self.position, result
        )

    # -- running it ----------------------------------------------------------------------

    def run(self) -> Outcome:
        """Run the delivery on the caller's thread and return its answer.

        Sync handlers run right here; async ones on the receiver's private loop.
        With a deadline, a blocking store's claim is made in a worker thread and
        waited for until the deadline; handlers are not bounded by it (they run
        on this thread, which cannot answer before they return).

        Raises:
            ConfigurationError: if the store is an asyncio one (it serves
                ``run_async`` only).
        """
        return run_delivery(self)

    def run_async(self) -> Coroutine[Any, Any, Outcome]:
        """Run the delivery on the running event loop: ``outcome = await delivery.run_async()``.

        Async handlers are awaited, sync ones run in a worker thread. With a
        store and a deadline, the run is a task waited for until the deadline;
        past it the answer is 503 and a claimed run finishes in the background
        (Census's retry then finds it done, or released).

        Returns:
            The coroutine to await for the answer (the sequence itself when
            there is no deadline to keep: one coroutine fewer per delivery).
        """
        p = self.pipeline
        if p.claims is None or p.deadline is None:
            return run_delivery_async(self)
        return self._run_within_deadline(p.deadline)

    async def _run_within_deadline(self, deadline: float) -> Outcome:
        p = self.pipeline
        task = asyncio.ensure_future(run_delivery_async(self))
        remaining = deadline - (perf_counter() - self.started)
        done, _ = await asyncio.wait((task,), timeout=max(0.0, remaining))
        if done or self.stage == UNCLAIMED:  # failed open: no claim, so no deadline
            return await task
        if self.stage == CLAIMING:
            task.cancel()  # its late claim is released by past_deadline
        else:  # keep a reference until it ends: it settles the claim
            p.background.add(task)
            task.add_done_callback(p.background.discard)
        return past_deadline(self)
