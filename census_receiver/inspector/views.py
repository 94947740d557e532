"""The inspector's pages: the deliveries list, one delivery, its replay, rejections, runs.

No I/O of their own: each view reads the journal (or, for replay, runs the
receiver) through the ``InspectorCore`` it is given, and answers with a page
that ``core.page`` renders, or an error page. The live list, which answers with
a stream instead, is in ``live``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..journal import STATUSES
from .messages import filter_params, int_param, list_filters, page_url, redirect
from .security import same_origin

if TYPE_CHECKING:
    from .core import InspectorCore
    from .messages import InspectorRequest, InspectorResponse

__all__ = [
    "PAGE",
    "RUNS_PER_SYNC",
    "SYNCS_SHOWN",
    "UNSETTLED",
    "deliveries",
    "delivery",
    "rejections",
    "replay",
    "runs",
]

#: The statuses a row may still leave: the list's live URL names its rows in them
#: (``?pending=1,2&running=3``), for the stream to send each as it changes.
UNSETTLED = ("pending", "running")
#: Deliveries per page of the list.
PAGE = 50
#: The runs page shows this many syncs (the most recently active), and this many runs of each.
SYNCS_SHOWN = 10
RUNS_PER_SYNC = 20


def deliveries(core: InspectorCore, request: InspectorRequest) -> InspectorResponse:
    """The deliveries, newest first, ``PAGE`` at a time, filtered by the query.

    Raises:
        JournalUnavailable: when the database fails.
    """
    try:
        filters = list_filters(request)
        before = int_param(request, "before")
    except ValueError as exc:
        return core.error(request, 400, str(exc))
    rows = core.journal.deliveries(**filters, before=before, limit=PAGE + 1)
    older = None
    if len(rows) > PAGE:
        rows = rows[:PAGE]
        older = page_url(request.root, "/", {**filter_params(filters), "before": rows[-1].id})
    live = None
    if before is None:
        after = rows[0].id if rows else 0
        unsettled = {
            status: ",".join(str(r.id) for r in rows if r.status == status) for status in UNSETTLED
        }
        params = {**filter_params(filters), "after": after}
        params.update((status, ids) for status, ids in unsettled.items() if ids)
        live = page_url(request.root, "/live", params)
    return core.page(
        request,
        "deliveries.html",
        section="deliveries",
        rows=rows,
        filters=filter_params(filters),
        filtered=any(v is not None for v in filters.values()),
        statuses=STATUSES,
        older_url=older,
        newest_url=(
            page_url(request.root, "/", filter_params(filters)) if before is not None else None
        ),
        live_url=live,
    )


def delivery(core: InspectorCore, request: InspectorRequest, delivery_id: int) -> InspectorResponse:
    """One delivery, with a replay button when it failed and replay is on.

    Raises:
        JournalUnavailable: when the database fails.
    """
    record = core.journal.get(delivery_id)
    if record is None:
        return core.error(request, 404, f"There is no delivery #{delivery_id}.")
    replayed = None
    if request.param("replayed") is not None:
        replayed = next((a for a in reversed(record.history) if a.kind == "replay"), None)
    return core.page(
        request,
        "delivery.html",
        section="deliveries",
        d=record,
        can_replay=core.receiver is not None and record.status == "failed",
        replayed=replayed,
    )


def replay(core: InspectorCore, request: InspectorRequest, delivery_id: int) -> InspectorResponse:
    """Run a delivery's handlers again, if the POST is the page's own; then show the delivery.

    Raises:
        JournalUnavailable: when the database fails.
    """
    if core.receiver is None:
        return core.error(request, 404, "Replay is off: the inspector was made without a receiver.")
    if not same_origin(request):
        return core.error(request, 403, "A replay must come from the inspector's own page.")
    if not core.credentials.valid_form(request):
        return core.error(
            request, 403, "The form is stale or forged: reload the page and try again."
        )
    core.forget_counts()  # the page it leads to shows the new status
    try:
        core.receiver.replay(delivery_id)
    except KeyError:
        return core.error(request, 404, f"There is no delivery #{delivery_id}.")
    return redirect(f"{request.root}/deliveries/{delivery_id}?replayed=1")


def rejections(core: InspectorCore, request: InspectorRequest) -> InspectorResponse:
    """The requests refused before verification, newest first.

    Raises:
        JournalUnavailable: when the database fails.
    """
    return core.page(
        request,
        "rejections.html",
        section="rejections",
        rows=core.journal.rejections(200),
    )


def runs(core: InspectorCore, request: InspectorRequest) -> InspectorResponse:
    """The runs of the most recently active syncs (or of ``?sync=``), with their health.

    Raises:
        JournalUnavailable: when the database fails.
    """
    try:
        only = int_param(request, "sync")
    except ValueError as exc:
        return core.error(request, 400, str(exc))
    journal = core.journal
    syncs = [only] if only is not None else journal.syncs(limit=SYNCS_SHOWN)
    shown = [
        (journal.sync_health(sync), journal.runs(sync_id=sync, limit=RUNS_PER_SYNC))
        for sync in syncs
    ]
    return core.page(request, "runs.html", section="runs", syncs=shown, only=only, now=time.time())
