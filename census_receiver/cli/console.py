"""What ``census-receiver serve`` shows on the terminal, one block per delivery.

::

    12:00:01  verified   sync.failed  workspace=3167 sync=3167956 run=324402082  -> 200
        { ...the payload... }
        forwarded to http://127.0.0.1:5000/hooks: 200 OK
    12:00:07  rejected   401 invalid_signature: the X-Signature does not match ...
        unverified body, not handled:
          { ... }

No I/O but the stream it is given. A refused body is shown as it came, marked
as verified (a signed payload that is malformed, or from a workspace not
allowed) or unverified (anything else, which may come from anyone).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from ..errors import MalformedPayload, WorkspaceNotAllowed
from .common import SHOWN_CHARS

if TYPE_CHECKING:
    from .._types import Body
    from ..answers import Outcome

__all__ = ["VERIFIED_REFUSALS", "Console", "NoteHandler", "preview"]

#: The refusals (``Outcome.reason``) made after the signature matched; every other
#: refusal is of a body that may not come from Census.
VERIFIED_REFUSALS = frozenset({MalformedPayload.reason, WorkspaceNotAllowed.reason})

#: The verdict and a comment on the answer, by ``Outcome.reason``, for verified events.
_VERDICTS = {
    "handled": ("verified", ""),
    "ignored": ("verified", ""),
    "dropped": ("verified", ""),
    "handler_error": ("verified", "(a relay failed; Census would retry)"),
    "deadline": ("verified", "(still running at the deadline; Census would retry)"),
    "duplicate": ("duplicate", "(already handled)"),
    "in_progress": ("duplicate", "(still being handled; Census would retry)"),
}


class Console:
    """Writes what ``serve`` shows, a line at a time, flushed.

    Args:
        out: the stream to write to (``sys.stdout``).
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def line(self, text: str = "") -> None:
        """Write one line."""
        print(text, file=self.out, flush=True)

    def block(self, text: str, indent: str = "    ") -> None:
        """Write ``text`` indented, line by line."""
        for row in text.splitlines():
            self.line(indent + row)

    def delivery(self, outcome: Outcome, body: Body | None, notes: Sequence[str] = ()) -> None:
        """Show how a request was answered, its payload, and what the relays did.

        Args:
            outcome: the answer given.
            body: the body read, or ``None`` when refused before reading it.
            notes: lines about the relays, shown under the delivery.
        """
        stamp = time.strftime("%H:%M:%S")
        event = outcome.event
        if event is not None:
            verdict, comment = _VERDICTS.get(outcome.reason, ("verified", outcome.reason))
            ids = f"workspace={event.workspace_id} sync={event.sync_id} run={event.sync_run_id}"
            answer = f"{outcome.status} {comment}" if comment else str(outcome.status)
            self.line(f"{stamp}  {verdict:<9}  {event.event}  {ids}  -> {answer}")
            if verdict != "duplicate":
                self.block(json.dumps(dict(event.raw), indent=2, ensure_ascii=False))
        else:
            try:
                why = outcome.json().get("error", outcome.reason)
            except ValueError:
                why = outcome.reason
            self.line(f"{stamp}  rejected   {outcome.status} {outcome.reason}: {why}")
            if body:
                if outcome.reason in VERIFIED_REFUSALS:
                    self.line("    verified body, refused:")
                else:
                    self.line("    unverified body, not handled:")
                self.block(preview(bytes(body)), indent="      ")
        for note in notes:
            self.block(note)


def preview(body: bytes) -> str:
    """A body for the terminal: pretty JSON when it parses, else its ``repr``; bounded.

    Args:
        body: the request body.

    Returns:
        At most ``SHOWN_CHARS`` characters, and ``...`` on a last line if cut.
    """
    try:
        text = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        text = repr(body[:SHOWN_CHARS])
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "\n..."


class NoteHandler(logging.Handler):
    """Shows the receiver's warnings that the delivery lines do not already say.

    Args:
        console: where to show them.
    """

    def __init__(self, console: Console) -> None:
        super().__init__(logging.WARNING)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        """Show ``record`` as a note, unless it is about one delivery's answer."""
        if hasattr(record, "census_reason"):
            return  # a rejection or a failed relay: its delivery line says it
        self.console.line(f"    note: {record.getMessage()}")
