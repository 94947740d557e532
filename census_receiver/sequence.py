"""The run of one verified delivery, for a sync caller: the twin of sequence_async.py.

GENERATED from census_receiver/sequence_async.py by ``python -m tests.unasync``;
do not edit: edit the original, whose docstring explains the sequence, and
regenerate.
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

__all__ = ["run_delivery"]


def run_delivery(d: VerifiedDelivery) -> Outcome:
    """Run a delivery: claim -> handlers -> [endpoint] -> on failure, error hooks -> settle.

    Returns:
        Its answer, logged and counted.
    """
    p = d.pipeline
    claim: Claim | None = None
    run: RunRecord | None = None
    if p.claims is not None:  # a store or a journal: the delivery is claimed first
        if d.refusal is not None:  # verified, but its payload was refused: kept, not run
            steps.refuse(d)
            return d.refusal
        claim = d.claim  # made already for a worker's or a replay's run
        if claim is None:
            got = steps.claim(d)
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
                steps.settle(d, claim, outcome, None)
            return outcome
    failed: Callable[..., object] | None = None
    result: object = None
    try:
        for route in d.routes:
            failed = route.handler
            steps.call(d, route)
        if d.endpoint is not None:
            failed = d.endpoint.handler
            result = steps.call(d, d.endpoint)
        if run is not None:
            for run_hook in p.run_hooks:
                failed = run_hook
                steps.call(d, steps.run_hook_call(run_hook, run))
    except Exception as exc:  # noqa: BLE001 - a handler failure: 500 (or 200 dropped)
        template = p.reporter.handler_failed(exc, failed, d.event)
        if template is HANDLER_ERROR:
            for error_hook in p.error_hooks:
                steps.hook(d, error_hook, exc)
        outcome = d.finish(template)
        if claim is not None:
            steps.settle(d, claim, outcome, exc)
        return outcome
    except BaseException as exc:
        # Cancelled or interrupted mid-handler: forget the claim so a retry runs it
        # (not while the coroutine is being closed: it may not wait for anything then).
        if claim is not None and not isinstance(exc, GeneratorExit):
            steps.settle(d, claim, None, exc)
        raise
    outcome = p.reporter.finish(HANDLED, d.event, d.started, d.position, result)
    if claim is not None:
        steps.settle(d, claim, outcome, None)
    return outcome
