"""Running one verified delivery: claim, handlers, error hooks, settle, answer.

No web framework, and no I/O of its own. ``WebhookReceiver.triage`` does the
pure checks and returns a ``VerifiedDelivery`` when there is something to run;
its ``run()`` (for a sync caller: WSGI, Flask) or ``await run_async()`` (for an
event loop: ASGI) runs it and returns the ``Outcome``::

    [claim in the store] -> each handler, in order -> [endpoint]
        -> on failure: error hooks -> [settle the claim] -> Outcome

How the sequence is written once: ``_steps`` is a generator that holds every
decision. Each time it needs the outside world it yields an *effect* (claim the
delivery, call a handler, call an error hook, settle the claim) and is sent the
result back, or has the handler's exception thrown in. ``run`` and
``run_async`` are thin drivers that perform the effects the way their caller
needs: ``run`` calls sync handlers on the caller's own thread (thread-locals
and Flask's request context work) and async ones on the receiver's private
loop; ``run_async`` awaits async handlers and runs sync ones in a worker
thread. The deadline lives in the drivers, because only they know what waiting
means on their path (see ``WebhookReceiver``'s ``deadline``).

A store reaches the sequence through ``census_receiver.claims``: a dedup store
is adapted by ``StoreClaims`` / ``AsyncStoreClaims``; a journal implements
``Claims`` itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .answers import (
    ACCEPTED,
    BUSY,
    DEADLINE,
    DUPLICATE,
    HANDLED,
    HANDLER_ERROR,
    IGNORED,
    IN_PROGRESS,
    UNAVAILABLE,
    Answer,
    Outcome,
    Reporter,
    printable,
)
from .dedup import Claim, ClaimState
from .errors import ConfigurationError
from .routing import describe, is_async_callable

if TYPE_CHECKING:
    from ._types import Body, ErrorHook, RunHook
    from .claims import AsyncClaims, Claims
    from .dedup import KeyFunction
    from .events import Event
    from .runs import RunRecord
    from .workers import Job, Workers

__all__ = ["Pipeline", "VerifiedDelivery"]

logger = logging.getLogger("census_receiver")


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


class _Call:
    """A callable run like a handler (a Flask view, a relay, a run hook); like a Route.

    ``handler`` is called with the event; ``is_async`` says whether it returns a
    coroutine (for a wrapper, that of the function it wraps).
    """

    __slots__ = ("handler", "is_async")

    def __init__(self, fn: Callable[[Event], object], *, like: object = None) -> None:
        self.handler = fn
        self.is_async = is_async_callable(fn if like is None else like)


def _run_hook_call(hook: RunHook, run: RunRecord) -> _Call:
    """``hook(run)``, as a call the drivers make like a handler's."""
    return _Call(lambda event: hook(run), like=hook)


class _Step:
    """An effect other than calling a handler (those are Routes and _Calls)."""

    __slots__ = ()


class _Hook(_Step):
    __slots__ = ("error", "hook")

    def __init__(self, hook: ErrorHook, error: Exception) -> None:
        self.hook = hook
        self.error = error


class _Settle(_Step):
    __slots__ = ("claim", "error", "outcome")

    def __init__(self, claim: Claim, outcome: Outcome | None, error: BaseException | None) -> None:
        self.claim = claim
        self.outcome = outcome
        self.error = error


#: The effect that asks the driver to claim the delivery; it sends ``Claim | Exception``.
_CLAIM = _Step()
#: The effect that asks the driver to keep a refused delivery's body (a journal's ``refuse``).
_REFUSE = _Step()
#: An effect: call a handler (a Route or _Call), or a _Step (claim, refuse, hook, settle).
_Effect = object

# How far a delivery got, read when its deadline passes.
_CLAIMING, _CLAIMED, _UNCLAIMED = "claiming", "claimed", "unclaimed"


def _steps(d: VerifiedDelivery) -> Generator[_Effect, Any, Outcome]:
    """The whole run of a delivery, yielding each effect; see the module docstring."""
    p = d.pipeline
    if d.refusal is not None:  # verified, but its payload was refused: kept, not run
        yield _REFUSE
        return d.refusal
    claim = d.claim  # made already for a worker's or a replay's run
    if claim is None and p.claims is not None:
        got = yield _CLAIM
        if not isinstance(got, Claim):  # the store failed: an exception
            p.reporter.store_unavailable(got, d.event, fail_open=p.fail_open)
            if not p.fail_open:
                return d.finish(p.claims.unavailable)
            d.stage = _UNCLAIMED
        elif p.on_capture:
            return d.finish(ACCEPTED if got.state is ClaimState.CLAIMED else DUPLICATE)
        elif got.state is not ClaimState.CLAIMED:
            return d.finish(DUPLICATE if got.state is ClaimState.DONE else IN_PROGRESS)
        else:
            claim = got
            d.stage = _CLAIMED
    # A journal's claim may carry the run this delivery finished: its hooks run too.
    run: RunRecord | None = getattr(claim, "run", None) if p.run_hooks else None
    if not d.routes and d.endpoint is None and run is None:  # recorded, nothing to run
        outcome = d.finish(IGNORED)
        if claim is not None:
            yield _Settle(claim, outcome, None)
        return outcome
    failed: Callable[..., object] | None = None
    result: object = None
    try:
        for route in d.routes:
            failed = route.handler
            yield route
        if d.endpoint is not None:
            failed = d.endpoint.handler
            result = yield d.endpoint
        if run is not None:
            for run_hook in p.run_hooks:
                failed = run_hook
                yield _run_hook_call(run_hook, run)
    except Exception as exc:  # noqa: BLE001 - a handler failure: 500 (or 200 dropped)
        template = p.reporter.handler_failed(exc, failed, d.event)
        if template is HANDLER_ERROR:
            for hook in p.error_hooks:
                yield _Hook(hook, exc)
        outcome = d.finish(template)
        if claim is not None:
            yield _Settle(claim, outcome, exc)
        return outcome
    except BaseException as exc:
        # Cancelled or interrupted mid-handler: forget the claim so a retry runs it.
        if claim is not None and not isinstance(exc, GeneratorExit):
            yield _Settle(claim, None, exc)
        raise
    # The usual end, so without the finish() indirection.
    outcome = p.reporter.finish(HANDLED, d.event, d.started, d.position, result)
    if claim is not None:
        yield _Settle(claim, outcome, None)
    return outcome


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
        self.endpoint = _Call(endpoint) if endpoint is not None else None
        self.started = started
        self.claim = claim
        self.refusal = refusal
        #: How far it got, read when its deadline passes.
        self.stage = _CLAIMING
        #: The worker-thread job of a claim made under a deadline, while it runs.
        self.job: Job[Claim] | None = None

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

    # -- the sync driver ---------------------------------------------------------------

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
        claims = self.pipeline.claims
        if claims is not None and claims.is_async:
            raise ConfigurationError(
                "an asyncio dedup store serves ASGI apps (handle_async) only; "
                "give this receiver a store with a sync client, such as RedisDedupStore"
            )
        steps = _steps(self)
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = steps.send(value) if error is None else steps.throw(error)
            except StopIteration as stop:
                outcome: Outcome = stop.value
                return outcome
            value = error = None
            if not isinstance(effect, _Step):  # a handler: the usual effect, tested first
                try:
                    value = effect.handler(self.event)  # type: ignore[attr-defined]
                    if value is not None and inspect.isawaitable(value):
                        value = self.pipeline.workers.run_coroutine(value)
                except BaseException as exc:  # noqa: BLE001 - thrown into _steps
                    error = exc
            elif effect is _CLAIM:
                value = self._claim_sync()
                if value is None:  # past the deadline
                    steps.close()
                    return self._past_deadline()
            elif effect is _REFUSE:
                self._refuse_sync()
            elif isinstance(effect, _Settle):
                self._settle_sync(effect)
            elif isinstance(effect, _Hook):
                self._hook_sync(effect)

    def _claim_sync(self) -> Claim | Exception | None:
        """The store's answer (or failure); ``None`` if none came by the deadline."""
        p = self.pipeline
        claims: Any = p.claims
        step = claims.capture if p.on_capture else claims.claim
        try:
            if p.deadline is None or not claims.blocking or claims.bounded:
                return step(self)  # type: ignore[no-any-return]
            job = self.job = p.workers.submit(step, self)
            if not job.wait(p.deadline - (perf_counter() - self.started)):
                return None
            return job.future.result()
        except ConfigurationError:
            raise
        except Exception as exc:  # noqa: BLE001 - any store failure is "unavailable"
            return exc

    def _refuse_sync(self) -> None:
        claims: Any = self.pipeline.claims
        try:
            if claims is not None:
                claims.refuse(self, self.refusal)
        except Exception as exc:  # noqa: BLE001 - logged; the 400 stands, Census retries
            _not_kept(exc)

    def _settle_sync(self, effect: _Settle) -> None:
        claims: Claims = self.pipeline.claims  # type: ignore[assignment]
        try:
            claims.settle(effect.claim, self, effect.outcome, effect.error)
        except Exception as exc:  # noqa: BLE001 - logged; the answer stands
            Reporter.settle_failed(exc, done=effect.outcome is not None and effect.outcome.ok)

    def _hook_sync(self, effect: _Hook) -> None:
        try:
            result = effect.hook(effect.error, self.event)
            if inspect.isawaitable(result):
                self.pipeline.workers.run_coroutine(result)
        except Exception:
            logger.exception("census error hook %s failed", describe(effect.hook))

    # -- the async driver --------------------------------------------------------------

    def run_async(self) -> Coroutine[Any, Any, Outcome]:
        """Run the delivery on the running event loop: ``outcome = await delivery.run_async()``.

        Async handlers are awaited, sync ones run in a worker thread. With a
        store and a deadline, the run is a task waited for until the deadline;
        past it the answer is 503 and a claimed run finishes in the background
        (Census's retry then finds it done, or released).

        Returns:
            The coroutine to await for the answer (the driver itself when there
            is no deadline to keep: one coroutine fewer per delivery).
        """
        p = self.pipeline
        if p.claims is None or p.deadline is None:
            return self._drive_async()
        return self._run_within_deadline(p.deadline)

    async def _run_within_deadline(self, deadline: float) -> Outcome:
        p = self.pipeline
        task = asyncio.ensure_future(self._drive_async())
        remaining = deadline - (perf_counter() - self.started)
        done, _ = await asyncio.wait((task,), timeout=max(0.0, remaining))
        if done or self.stage == _UNCLAIMED:  # failed open: no claim, so no deadline
            return await task
        if self.stage == _CLAIMING:
            task.cancel()  # its late claim is released by _past_deadline
        else:  # keep a reference until it ends: it settles the claim
            p.background.add(task)
            task.add_done_callback(p.background.discard)
        return self._past_deadline()

    async def _drive_async(self) -> Outcome:
        steps = _steps(self)
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = steps.send(value) if error is None else steps.throw(error)
            except StopIteration as stop:
                outcome: Outcome = stop.value
                return outcome
            value = error = None
            try:
                if not isinstance(effect, _Step):  # a handler: the usual effect, tested first
                    if effect.is_async:  # type: ignore[attr-defined]
                        value = await effect.handler(self.event)  # type: ignore[attr-defined]
                    else:
                        value = await self.pipeline.workers.in_thread(
                            effect.handler,  # type: ignore[attr-defined]
                            self.event,
                        )
                        if value is not None and inspect.isawaitable(value):
                            value = await value
                elif effect is _CLAIM:
                    value = await self._claim_async()
                elif effect is _REFUSE:
                    await self._off_loop(self._refuse_sync)
                elif isinstance(effect, _Settle):
                    await self._settle_async(effect)
                elif isinstance(effect, _Hook):
                    await self._hook_async(effect)
            except BaseException as exc:  # noqa: BLE001 - thrown into _steps
                error = exc

    async def _claim_async(self) -> Claim | Exception:
        p = self.pipeline
        claims: Any = p.claims
        step = claims.capture if p.on_capture else claims.claim
        try:
            if claims.is_async:
                got: Claim = await step(self)
            elif not claims.blocking:
                got = step(self)
            else:
                self.job = p.workers.submit(step, self)
                got = await asyncio.wrap_future(self.job.future)
        except ConfigurationError:
            raise
        except Exception as exc:  # noqa: BLE001 - any store failure is "unavailable"
            return exc
        return got

    async def _settle_async(self, effect: _Settle) -> None:
        claims: Any = self.pipeline.claims
        args = (effect.claim, self, effect.outcome, effect.error)
        try:
            if claims.is_async:
                await claims.settle(*args)
            elif claims.blocking:
                await self.pipeline.workers.in_thread(claims.settle, *args)
            else:
                claims.settle(*args)
        except Exception as exc:  # noqa: BLE001 - logged; the answer stands
            Reporter.settle_failed(exc, done=effect.outcome is not None and effect.outcome.ok)

    async def _off_loop(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in a worker thread if the store blocks, else right here."""
        claims: Any = self.pipeline.claims
        if claims is not None and claims.blocking:
            await self.pipeline.workers.in_thread(fn)
        else:
            fn()

    async def _hook_async(self, effect: _Hook) -> None:
        try:
            hook = effect.hook
            result = (
                hook(effect.error, self.event)
                if is_async_callable(hook)
                else await self.pipeline.workers.in_thread(hook, effect.error, self.event)
            )
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("census error hook %s failed", describe(effect.hook))

    # -- shared by both drivers --------------------------------------------------------

    def _past_deadline(self) -> Outcome:
        """The 503 of a delivery still going at its deadline, saying what held it up."""
        p = self.pipeline
        if self.stage != _CLAIMING:
            return self.finish(DEADLINE)
        job = self.job
        if job is not None:
            # A claim that lands after we answered must not hold the delivery: release
            # it as soon as it comes, so Census's retry runs the handlers.
            job.future.add_done_callback(self._release_late_claim)
            if not job.started:
                logger.error(
                    "census receiver busy: all %d worker threads were taken for the %.1f s "
                    "deadline; answering 503 so Census retries %s later (raise max_threads)",
                    p.workers.max_threads,
                    p.deadline,
                    printable(self.event.event),
                )
                return self.finish(BUSY)
        logger.error(
            "census store did not answer within the %.1f s deadline; answering 503 "
            "so Census retries %s later",
            p.deadline,
            printable(self.event.event),
        )
        return self.finish(p.claims.unavailable if p.claims is not None else UNAVAILABLE)

    def _release_late_claim(self, future: concurrent.futures.Future[Claim]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        claim: Claim = future.result()
        if claim.state is ClaimState.CLAIMED:
            self._settle_sync(_Settle(claim, None, None))


def _not_kept(error: BaseException) -> None:
    logger.warning(
        "census journal unavailable (%s): a verified delivery whose payload was refused "
        "was not kept; Census retries it",
        type(error).__name__,
    )
