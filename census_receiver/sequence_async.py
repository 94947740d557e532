"""The run of one verified delivery, written once: claim, handlers, hooks, settle, answer.

No web framework, and no I/O of its own: every step that touches the outside
world is one of ``census_receiver.steps``, which come in a sync and an async
kind. This file is the async original (``VerifiedDelivery.run_async``);
``census_receiver/sequence.py`` is its sync twin (``VerifiedDelivery.run``),
generated from it by ``python -m tests.unasync``, as httpcore generates its
sync code: ``async def`` becomes ``def`` and ``await steps.x_async(...)``
becomes ``steps.x(...)``; a handler awaited in place when it is async becomes
``steps.call(d, route)``, and comments starting ``# async path:`` are left out
of the twin. Edit this file and regenerate; a test fails while the twin is
stale, and the generator refuses any ``async`` or ``await`` it has no rule for.

Why a generated twin rather than a generator of effects driven twice: each
path then runs straight-line code, with no effect objects and no dispatch,
which is what keeps the middlewares within their benchmark targets; and the
sequence, with every decision in it, is still written once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import steps
from .answers import ACCEPTED, DUPLICATE, HANDLED, HANDLER_ERROR, IGNORED, IN_PROGRESS
from .dedup import Claim, ClaimState

if TYPE_CHECKING:
    from collections.abc import Callable

    from .answers import Outcome
    from .delivery import VerifiedDelivery
    from .runs import RunRecord

__all__ = ["run_delivery_async"]


async def run_delivery_async(d: VerifiedDelivery) -> Outcome:
    """Run a delivery: claim -> handlers -> [endpoint] -> on failure, error hooks -> settle.

    Returns:
        Its answer, logged and counted.
    """
    p = d.pipeline
    claim: Claim | None = None
    run: RunRecord | None = None
    if p.claims is not None:  # a store or a journal: the delivery is claimed first
        if d.refusal is not None:  # verified, but its payload was refused: kept, not run
            await steps.refuse_async(d)
            return d.refusal
        claim = d.claim  # made already for a worker's or a replay's run
        if claim is None:
            got = await steps.claim_async(d)
            if got is None:  # no answer by the deadline
                return steps.past_deadline(d)
            if not isinstance(got, Claim):  # the store failed: an exception
                p.reporter.store_unavailable(got, d.event, fail_open=p.fail_open)
                if not p.fail_open:
                    return d.finish(p.claims.unavailable)
                d.stage = steps.UNCLAIMED
            elif p.on_capture:
                return d.finish(ACCEPTED if got.state is ClaimState.CLAIMED else DUPLICATE)
            elif got.state is not ClaimState.CLAIMED:
                return d.finish(DUPLICATE if got.state is ClaimState.DONE else IN_PROGRESS)
            else:
                claim = got
                d.stage = steps.CLAIMED
        # A journal's claim may carry the run this delivery finished: its hooks run too.
        if p.run_hooks:
            run = getattr(claim, "run", None)
        if not d.routes and d.endpoint is None and run is None:  # recorded, nothing to run
            outcome = d.finish(IGNORED)
            if claim is not None:
                await steps.settle_async(d, claim, outcome, None)
            return outcome
    failed: Callable[..., object] | None = None
    result: object = None
    try:
        for route in d.routes:
            failed = route.handler
            # async path: an async handler is awaited in place, one coroutine fewer
            await (route.handler(d.event) if route.is_async else steps.call_async(d, route))
        if d.endpoint is not None:
            failed = d.endpoint.handler
            result = await steps.call_async(d, d.endpoint)
        if run is not None:
            for run_hook in p.run_hooks:
                failed = run_hook
                await steps.call_async(d, steps.run_hook_call(run_hook, run))
    except Exception as exc:  # noqa: BLE001 - a handler failure: 500 (or 200 dropped)
        template = p.reporter.handler_failed(exc, failed, d.event)
        if template is HANDLER_ERROR:
            for error_hook in p.error_hooks:
                await steps.hook_async(d, error_hook, exc)
        outcome = d.finish(template)
        if claim is not None:
            await steps.settle_async(d, claim, outcome, exc)
        return outcome
    except BaseException as exc:
        # Cancelled or interrupted mid-handler: forget the claim so a retry runs it
        # (not while the coroutine is being closed: it may not wait for anything then).
        if claim is not None and not isinstance(exc, GeneratorExit):
            await steps.settle_async(d, claim, None, exc)
        raise
    outcome = p.reporter.finish(HANDLED, d.event, d.started, d.position, result)
    if claim is not None:
        await steps.settle_async(d, claim, outcome, None)
    return outcome
