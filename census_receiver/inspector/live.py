"""The live list: its view, ``/live``, and the Server-Sent Events stream it answers with.

No sockets: ``LiveStream.poll`` reads the journal and returns bytes, and the
adapter sends them (the ASGI app polls in a worker thread, since it blocks).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..journal import JournalUnavailable
from .messages import (
    NO_STORE,
    SECURITY_HEADERS,
    InspectorResponse,
    int_param,
    list_filters,
    parse_id,
)
from .views import PAGE, UNSETTLED

if TYPE_CHECKING:
    from ..journal import DeliveryRecord
    from .core import InspectorCore
    from .messages import InspectorRequest

__all__ = ["LiveStream", "live"]


def live(core: InspectorCore, request: InspectorRequest) -> InspectorResponse:
    """The live list's stream, from ``?after=`` (or the browser's ``Last-Event-ID``) on."""
    try:
        filters = list_filters(request)
        after = int_param(request, "after") or 0
        unsettled = {i: status for status in UNSETTLED for i in _ids(request, status)}
        last_event = request.headers.get("last-event-id", "")
    except ValueError as exc:
        return core.error(request, 400, str(exc))
    resumed = parse_id(last_event)
    if resumed is not None:
        after = max(after, resumed)
    stream = LiveStream(core, request.root, filters, after, unsettled)
    headers = [
        ("content-type", "text/event-stream; charset=utf-8"),
        NO_STORE,
        ("x-accel-buffering", "no"),
        *SECURITY_HEADERS,
    ]
    return InspectorResponse(200, headers, stream=stream)


def _ids(request: InspectorRequest, name: str) -> list[int]:
    """Query parameter ``name`` as comma-separated ids (at most a page of them).

    Raises:
        ValueError: for anything else.
    """
    value = request.param(name) or ""
    ids = [parse_id(part) for part in value.split(",")] if value else []
    if len(ids) > PAGE or None in ids:
        raise ValueError(f"{name} must list at most {PAGE} ids, comma-separated")
    return [i for i in ids if i is not None]


class LiveStream:
    """The live list's Server-Sent Events: new deliveries as table rows, as they come.

    Each ``poll`` asks the journal for what arrived since the last one
    (``deliveries(after=...)``, one indexed range) and for a change of status
    of the rows it saw still ``pending`` or ``running``, and returns them as
    ``delivery`` events whose data is the row's HTML, escaped like the page;
    a small static script puts each row in place. ``poll`` blocks on the
    journal: the ASGI app calls it in a worker thread.

    Args:
        core: the inspector (its journal, pages and ``closed`` flag).
        root: the mount point, for the rows' links.
        filters: the list's filters (``journal.deliveries`` keywords).
        after: the newest id the page already shows.
        unsettled: the page's rows still pending or running, with that status.
    """

    #: Seconds a stream lasts; the browser then reconnects (with Last-Event-ID).
    lifetime = 300.0
    #: Seconds of silence after which a comment is sent, so a gone client is noticed.
    heartbeat = 15.0
    #: Rows read per poll at most; a larger burst shows its newest rows.
    batch = 200

    def __init__(
        self,
        core: InspectorCore,
        root: str,
        filters: dict[str, Any],
        after: int,
        unsettled: dict[int, str] | None = None,
    ) -> None:
        self.core = core
        self.root = root
        self.filters = filters
        self.last = after
        self.interval = core.live_interval
        # As the page showed them: a row that settled since is sent on the first poll.
        self._unsettled = {i: s for i, s in (unsettled or {}).items() if i <= after}
        self._ends = time.monotonic() + self.lifetime
        self._quiet_since = time.monotonic()

    @property
    def finished(self) -> bool:
        """Whether the stream should end now (lifetime over, or the inspector closed)."""
        return self.core.closed or time.monotonic() >= self._ends

    def start(self) -> bytes:
        """The first bytes of the stream: how soon the browser should reconnect."""
        return b"retry: 1000\n\n"

    def wait(self) -> None:
        """Sleep until the next poll is due (or the inspector closes)."""
        self.core.sleep(self.interval)

    def poll(self) -> bytes:
        """The events for what changed since the last poll (blocking; may be empty).

        Returns:
            Encoded events, a heartbeat comment, or ``b""``.
        """
        journal = self.core.journal
        try:
            low = min([self.last, *(i - 1 for i in self._unsettled)])
            rows = journal.deliveries(**self.filters, after=low, limit=self.batch)
        except JournalUnavailable:
            rows = []
        unsettled = self._unsettled
        out = []
        for record in reversed(rows):  # oldest first: each is put on top of the last
            changed = unsettled.get(record.id)
            if record.id > self.last or (changed is not None and changed != record.status):
                out.append(record)
            if record.status in UNSETTLED:
                unsettled[record.id] = record.status
            else:
                unsettled.pop(record.id, None)
        if len(rows) == self.batch:  # a burst: forget rows too old to be read again
            oldest = rows[-1].id
            unsettled = {i: s for i, s in unsettled.items() if i >= oldest}
        self._unsettled = unsettled
        if rows:
            self.last = max(self.last, rows[0].id)
        now = time.monotonic()
        if not out:
            if now - self._quiet_since < self.heartbeat:
                return b""
            self._quiet_since = now
            return b": keep-alive\n\n"
        self._quiet_since = now
        return self._events(out)

    def _events(self, records: list[DeliveryRecord]) -> bytes:
        pages = self.core.pages
        chunks = [
            _event("delivery", pages.render("_row.html", root=self.root, d=r), self.last)
            for r in records
        ]
        try:
            counts = self.core.counts()  # the shared cache: each tab polls twice a second
        except JournalUnavailable:
            pass
        else:
            shown = pages.render("_counts.html", root=self.root, counts=counts)
            chunks.append(_event("counts", shown))
        return b"".join(chunks)


def _event(name: str, data: str, event_id: int | None = None) -> bytes:
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines += [f"data: {line}" for line in data.strip().splitlines() or [""]]
    return ("\n".join(lines) + "\n\n").encode()
