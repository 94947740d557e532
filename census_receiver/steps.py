"""What each step of a delivery's run does on each path: the sync one and the async one.

No web framework. ``census_receiver.sequence_async`` holds the order of the
steps and every decision; it calls these for anything that touches the outside
world: claim the delivery, keep a refused body, call a handler, call an error
hook, settle the claim. Each step comes in two kinds, named ``x`` and
``x_async``, because that is where the two paths really differ:

- sync (``run()``: WSGI, Flask): handlers run on the caller's own thread
  (thread-locals and Flask's request context work), async ones on the
  receiver's private loop; a store that may block is waited for in a worker
  thread only under a deadline.
- async (``run_async()``: ASGI): async handlers are awaited on the running
  loop, sync ones and blocking store calls go to a worker thread, so the loop
  never blocks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .answers import BUSY, DEADLINE, UNAVAILABLE, Outcome, Reporter, printable
from .dedup import Claim, ClaimState
from .errors import ConfigurationError
from .routing import describe, is_async_callable

if TYPE_CHECKING:
    from ._types import ErrorHook, RunHook
    from .claims import Claims
    from .delivery import VerifiedDelivery
    from .events import Event
    from .routing import Route
    from .runs import RunRecord

__all__ = [
    "CLAIMED",
    "CLAIMING",
    "UNCLAIMED",
    "Call",
    "call",
    "call_async",
    "claim",
    "claim_async",
    "hook",
    "hook_async",
    "past_deadline",
    "refuse",
    "refuse_async",
    "run_hook_call",
    "settle",
    "settle_async",
]

logger = logging.getLogger("census_receiver")

#: How far a delivery got (``VerifiedDelivery.stage``), read when its deadline passes.
CLAIMING, CLAIMED, UNCLAIMED = "claiming", "claimed", "unclaimed"


class Call:
    """A callable run like a handler (a Flask view, a relay, a run hook); like a Route.

    ``handler`` is called with the event; ``is_async`` says whether it returns a
    coroutine (for a wrapper, that of the function it wraps).
    """

    __slots__ = ("handler", "is_async")

    def __init__(self, fn: Callable[[Event], object], *, like: object = None) -> None:
        self.handler = fn
        self.is_async = is_async_callable(fn if like is None else like)


def run_hook_call(run_hook: RunHook, run: RunRecord) -> Call:
    """``run_hook(run)``, as a call made like a handler's."""
    return Call(lambda event: run_hook(run), like=run_hook)


# -- claim -----------------------------------------------------------------------------


def claim(d: VerifiedDelivery) -> Claim | Exception | None:
    """The store's answer (or failure); ``None`` if none came by the deadline.

    With a deadline, a store that may block is asked in a worker thread and
    waited for until then; the handlers, on this thread, are not bounded by it.

    Raises:
        ConfigurationError: if the store is an asyncio one (it serves
            ``run_async`` only).
    """
    p = d.pipeline
    claims: Any = p.claims
    if claims.is_async:
        raise ConfigurationError(
            "an asyncio dedup store serves ASGI apps (handle_async) only; "
            "give this receiver a store with a sync client, such as RedisDedupStore"
        )
    step = claims.capture if p.on_capture else claims.claim
    try:
        if p.deadline is None or not claims.blocking or claims.bounded:
            return step(d)  # type: ignore[no-any-return]
        job = d.job = p.workers.submit(step, d)
        done, _ = concurrent.futures.wait((job,), p.deadline - (perf_counter() - d.started))
        return job.result() if done else None
    except ConfigurationError:
        raise
    except Exception as exc:  # noqa: BLE001 - any store failure is "unavailable"
        return exc


async def claim_async(d: VerifiedDelivery) -> Claim | Exception | None:
    """The store's answer (or failure); the deadline is kept by ``run_async``, around it."""
    p = d.pipeline
    claims: Any = p.claims
    step = claims.capture if p.on_capture else claims.claim
    try:
        if claims.is_async:
            got: Claim = await step(d)
        elif not claims.blocking:
            got = step(d)
        else:
            d.job = p.workers.submit(step, d)
            got = await asyncio.wrap_future(d.job)
    except ConfigurationError:
        raise
    except Exception as exc:  # noqa: BLE001 - any store failure is "unavailable"
        return exc
    return got


# -- keep a refused body ---------------------------------------------------------------


def refuse(d: VerifiedDelivery) -> None:
    """Keep a verified body whose payload was refused (a journal's ``refuse``)."""
    claims: Any = d.pipeline.claims
    try:
        if claims is not None:
            claims.refuse(d, d.refusal)
    except Exception as exc:  # noqa: BLE001 - logged; the 400 stands, Census retries
        logger.warning(
            "census journal unavailable (%s): a verified delivery whose payload was "
            "refused was not kept; Census retries it",
            type(exc).__name__,
        )


async def refuse_async(d: VerifiedDelivery) -> None:
    """``refuse``, in a worker thread if the store blocks."""
    claims: Any = d.pipeline.claims
    if claims is not None and claims.blocking:
        await d.pipeline.workers.in_thread(refuse, d)
    else:
        refuse(d)


# -- call a handler --------------------------------------------------------------------


def call(d: VerifiedDelivery, route: Route | Call) -> object:
    """Call a handler on this thread (an async one on the receiver's private loop)."""
    value = route.handler(d.event)
    if value is not None and inspect.isawaitable(value):
        value = d.pipeline.workers.run_coroutine(value)
    return value


async def call_async(d: VerifiedDelivery, route: Route | Call) -> object:
    """Await an async handler; run a sync one in a worker thread."""
    if route.is_async:
        return await route.handler(d.event)  # type: ignore[misc]
    value = await d.pipeline.workers.in_thread(route.handler, d.event)
    if value is not None and inspect.isawaitable(value):
        value = await value
    return value


# -- call an error hook ----------------------------------------------------------------


def hook(d: VerifiedDelivery, error_hook: ErrorHook, error: Exception) -> None:
    """Call ``error_hook(error, event)``; its own failure is logged, never raised."""
    try:
        result = error_hook(error, d.event)
        if inspect.isawaitable(result):
            d.pipeline.workers.run_coroutine(result)
    except Exception:
        logger.exception("census error hook %s failed", describe(error_hook))


async def hook_async(d: VerifiedDelivery, error_hook: ErrorHook, error: Exception) -> None:
    """``hook``, awaited if async, else in a worker thread."""
    try:
        if is_async_callable(error_hook):
            result = error_hook(error, d.event)
        else:
            result = await d.pipeline.workers.in_thread(error_hook, error, d.event)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("census error hook %s failed", describe(error_hook))


# -- settle the claim ------------------------------------------------------------------


def settle(
    d: VerifiedDelivery, got: Claim, outcome: Outcome | None, error: BaseException | None
) -> None:
    """Record how the delivery ended (``outcome``; ``None`` to release the claim)."""
    claims: Claims = d.pipeline.claims  # type: ignore[assignment]
    try:
        claims.settle(got, d, outcome, error)
    except Exception as exc:  # noqa: BLE001 - logged; the answer stands
        Reporter.settle_failed(exc, done=outcome is not None and outcome.ok)


async def settle_async(
    d: VerifiedDelivery, got: Claim, outcome: Outcome | None, error: BaseException | None
) -> None:
    """``settle``, awaited on an asyncio store, in a worker thread on a blocking one."""
    claims: Any = d.pipeline.claims
    try:
        if claims.is_async:
            await claims.settle(got, d, outcome, error)
        elif claims.blocking:
            await d.pipeline.workers.in_thread(claims.settle, got, d, outcome, error)
        else:
            claims.settle(got, d, outcome, error)
    except Exception as exc:  # noqa: BLE001 - logged; the answer stands
        Reporter.settle_failed(exc, done=outcome is not None and outcome.ok)


# -- past the deadline -----------------------------------------------------------------


def past_deadline(d: VerifiedDelivery) -> Outcome:
    """The 503 of a delivery still going at its deadline, saying what held it up."""
    p = d.pipeline
    if d.stage != CLAIMING:
        return d.finish(DEADLINE)
    job = d.job
    if job is not None:
        if job.cancel():  # never started: every worker thread was taken
            logger.error(
                "census receiver busy: all %d worker threads were taken for the %.1f s "
                "deadline; answering 503 so Census retries %s later (raise max_threads)",
                p.workers.max_threads,
                p.deadline,
                printable(d.event.event),
            )
            return d.finish(BUSY)
        # A claim that lands after we answered must not hold the delivery: release
        # it as soon as it comes, so Census's retry runs the handlers.
        job.add_done_callback(lambda future: _release_late_claim(d, future))
    logger.error(
        "census store did not answer within the %.1f s deadline; answering 503 "
        "so Census retries %s later",
        p.deadline,
        printable(d.event.event),
    )
    return d.finish(p.claims.unavailable if p.claims is not None else UNAVAILABLE)


def _release_late_claim(d: VerifiedDelivery, future: concurrent.futures.Future[Claim]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    got = future.result()
    if got.state is ClaimState.CLAIMED:
        settle(d, got, None, None)
