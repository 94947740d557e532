"""The app the journal's multi-process tests serve: a receiver on a shared journal.

Each worker process (and each ``census-receiver work`` process) imports this
module and builds its own receiver on the journal named by
``CENSUS_TEST_JOURNAL`` (a SQLite path or a PostgreSQL URL). The handler
appends one line per call to ``CENSUS_TEST_CALLS`` (``O_APPEND`` writes of one
short line are atomic), so the test counts calls across processes:
``start <run> <pid>`` when it begins and ``done <run> <pid>`` when it ends;
``finished <run> <pid> <status>`` from the ``on_run_finished`` hook.

``CENSUS_TEST_FAIL_WHILE`` names a file: while it exists, the handler raises
(a downstream outage). ``CENSUS_TEST_HOLD_RUN`` names a sync_run_id whose
handler, in the process started with it, waits for ever (to be killed in the
middle). ``CENSUS_TEST_ACKNOWLEDGE``: ``after_handlers`` or ``on_capture``.
``CENSUS_TEST_LEASE``: the journal's lease, in seconds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from census_receiver import Event, WebhookReceiver
from census_receiver.journal import Journal, SQLiteJournal
from census_receiver.runs import RunRecord
from census_receiver.starlette import CensusWebhookMiddleware as ASGIMiddleware
from census_receiver.wsgi import CensusWebhookMiddleware as WSGIMiddleware

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from census_receiver._types import Receive, Scope, Send

_where = os.environ["CENSUS_TEST_JOURNAL"]
_lease = float(os.environ.get("CENSUS_TEST_LEASE", "60"))
_calls = Path(os.environ["CENSUS_TEST_CALLS"])
_fail_while = os.environ.get("CENSUS_TEST_FAIL_WHILE")
_hold = os.environ.get("CENSUS_TEST_HOLD_RUN")


def _journal() -> Journal:
    if _where.startswith("postgresql://"):
        from census_receiver.journal import PostgresJournal

        return PostgresJournal(_where, lease=_lease, backoff=0.2)
    return SQLiteJournal(_where, lease=_lease, backoff=0.2)


receiver = WebhookReceiver(
    journal=_journal(), acknowledge=os.environ.get("CENSUS_TEST_ACKNOWLEDGE", "after_handlers")
)


def _note(line: str) -> None:
    with _calls.open("a") as out:
        out.write(line + "\n")


@receiver.on("*")
def record(event: Event) -> None:
    pid = os.getpid()
    _note(f"start {event.sync_run_id} {pid}")
    if _fail_while is not None and Path(_fail_while).exists():
        raise ConnectionError("the downstream service is down")
    if _hold is not None and str(event.sync_run_id) == _hold:
        while True:  # killed here
            time.sleep(1)
    time.sleep(0.002)
    _note(f"done {event.sync_run_id} {pid}")


@receiver.on_run_finished
def run_finished(run: RunRecord) -> None:
    _note(f"finished {run.sync_run_id} {os.getpid()} {run.status}")


def _pid(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Every other path answers the worker's process id (the test waits for all workers)."""
    body = str(os.getpid()).encode()
    start_response("200 OK", [("content-type", "text/plain"), ("content-length", str(len(body)))])
    return [body]


async def _pid_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    body = str(os.getpid()).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


wsgi_app = WSGIMiddleware(_pid, receiver=receiver)
asgi_app = ASGIMiddleware(_pid_asgi, receiver=receiver)
