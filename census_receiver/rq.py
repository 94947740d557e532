"""Hand Census events to RQ (a Redis job queue) and answer Census once they are safe.

Census gives each delivery 10 seconds. Work that may take longer belongs in a
queue whose workers run on other machines and survive restarts of the receiver.
``enqueue_to`` builds a handler that does only that: it enqueues the event's
payload as an RQ job and returns. The receiver answers 200 after the handler
returned, so after the job is stored in Redis; if enqueuing fails (Redis down),
the handler raises, the receiver answers 500 and Census retries later::

    from redis import Redis
    from rq import Queue
    from census_receiver.rq import enqueue_to

    queue = Queue("census", connection=Redis())
    receiver.on("sync.failed", "sync.alert.*")(enqueue_to(queue, "myapp.jobs.on_census_event"))

    # myapp/jobs.py, run by ``rq worker census``
    from census_receiver.events import event_from_payload

    def on_census_event(payload: dict) -> None:
        event = event_from_payload(payload)   # the same typed event
        ...

Enqueuing is idempotent across Census's retries: the job id comes from the
event's identity fields (as ``census_receiver.dedup.default_key`` does), and a
job that already exists (queued, running, finished or failed) is not enqueued
again. So a retry after a 2xx Census did not see adds no second job, with or
without a dedup store. RQ keeps a finished job's record for ``result_ttl``
seconds (one hour here, well past Census's three-minute retry window); after
that, the same delivery would be enqueued again.

Requires the ``rq`` extra (``pip install census-receiver[rq]``); RQ itself is
imported only by this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .dedup import DEFAULT_TTL, default_key
from .errors import ConfigurationError
from .events import EVENT_TYPES

if TYPE_CHECKING:
    from rq import Queue

    from .events import Event

__all__ = ["DEFAULT_RESULT_TTL", "enqueue_to", "job_id_for"]

logger = logging.getLogger("census_receiver")

#: How long RQ keeps a finished job, so a Census retry still finds it: the dedup TTL.
DEFAULT_RESULT_TTL = int(DEFAULT_TTL)
#: Shorter than this, RQ could forget a finished job while Census still retries it.
_MIN_RESULT_TTL = 300
#: Options ``enqueue_to`` sets itself.
_RESERVED = frozenset({"args", "kwargs", "job_id", "pipeline", "result_ttl"})
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
_WATCH_ATTEMPTS = 5


def job_id_for(event: Event) -> str:
    """The RQ job id of an event: the same for every Census retry of one delivery.

    Documented events get a readable id made of their identity fields
    (``census-sync_failed-3167-3167956-324402082``, plus the alert instance for
    alerts); other events a digest of their dedup key, or of their whole payload
    when it lacks the ids.

    Args:
        event: the verified event.

    Returns:
        An id RQ accepts (letters, digits, ``_`` and ``-``).
    """
    if None in (event.workspace_id, event.sync_id, event.sync_run_id):
        basis = json.dumps(dict(event.raw), sort_keys=True, separators=(",", ":"))
    else:
        basis = default_key(event, b"")
        if event.event in EVENT_TYPES:
            return (
                "census-"
                + _UNSAFE.sub("_", event.event)
                + "-"
                + basis.split(":", 1)[1].replace(":", "-")
            )
    return "census-" + hashlib.sha256(basis.encode("utf-8")).hexdigest()[:40]


def enqueue_to(
    queue: Queue,
    func: str | Callable[..., object],
    *,
    job_id: Callable[[Event], str] = job_id_for,
    result_ttl: int = DEFAULT_RESULT_TTL,
    **options: Any,
) -> Callable[[Event], str]:
    """A handler that enqueues each event's payload as an RQ job, once per delivery.

    Register it like any handler: ``receiver.on("sync.failed")(enqueue_to(queue, ...))``.
    The job calls ``func(payload)`` with the event's JSON payload as a ``dict``
    (``census_receiver.events.event_from_payload`` turns it back into the typed
    event). The handler returns once the job is stored in Redis; it raises if
    Redis cannot be reached, so the receiver answers 500 and Census retries.

    Args:
        queue: the ``rq.Queue`` to enqueue on (its workers run the jobs).
        func: the job function, or its dotted path (``"myapp.jobs.on_event"``) so
            the receiver need not import the workers' code.
        job_id: builds the job id from the event; ids must repeat across Census's
            retries of one delivery and differ between deliveries.
        result_ttl: seconds RQ keeps a finished job; a retry that comes later is
            enqueued again. ``-1`` keeps it for good.
        **options: passed to ``queue.enqueue_call`` (``timeout``, ``failure_ttl``,
            ``retry``, ``description``, ``meta``, ``at_front``...).

    Returns:
        The handler. Called directly, it returns the job id.

    Raises:
        ConfigurationError: if ``queue`` is not an RQ queue handing jobs to
            workers, ``result_ttl`` is too short, or an option is one this
            function sets itself.
    """
    from redis.exceptions import WatchError
    from rq import Queue

    if not isinstance(queue, Queue):
        raise ConfigurationError(f"enqueue_to needs an rq.Queue, not {type(queue).__name__}")
    if not queue.is_async:
        raise ConfigurationError(
            "enqueue_to needs a queue whose jobs run in workers (is_async=True); to run jobs "
            "in a test, start rq's SimpleWorker(...).work(burst=True) after the deliveries"
        )
    if not (result_ttl == -1 or result_ttl >= _MIN_RESULT_TTL):
        raise ConfigurationError(
            f"result_ttl must be -1 (keep) or at least {_MIN_RESULT_TTL} s: RQ forgets a "
            "finished job after it, and a Census retry arriving later is enqueued again"
        )
    if not callable(job_id):
        raise ConfigurationError("job_id must be a function of the event, such as job_id_for")
    clash = sorted(_RESERVED & options.keys())
    if clash:
        raise ConfigurationError(f"enqueue_to sets {', '.join(clash)} itself")
    if not (isinstance(func, str) and func) and not callable(func):
        raise ConfigurationError("func must be a callable or its dotted path")
    # RQ types func as a TypeVar constrained to str or a callable, not their union.
    enqueue_call: Callable[..., object] = queue.enqueue_call
    connection = queue.connection

    def enqueue(event: Event) -> str:
        jid = job_id(event)
        key = queue.job_class.key_for(jid)
        with connection.pipeline() as pipe:
            for _ in range(_WATCH_ATTEMPTS):
                try:
                    # WATCH the job's key and look for it; RQ then puts the
                    # pipeline in MULTI (its documented use of a caller's
                    # pipeline), so the enqueue fails with WatchError if anyone
                    # touched the key since: concurrent copies make one job.
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    if pipe.exists(key):
                        logger.info(
                            "census event %s already enqueued as RQ job %s", event.event, jid
                        )
                        return jid
                    enqueue_call(
                        func,
                        args=(dict(event.raw),),
                        job_id=jid,
                        result_ttl=result_ttl,
                        pipeline=pipe,
                        **options,
                    )
                    pipe.execute()
                except WatchError:
                    continue
                logger.info(
                    "census event %s enqueued as RQ job %s on %s", event.event, jid, queue.name
                )
                return jid
        raise RuntimeError(f"RQ job {jid} kept changing while being enqueued; retry later")

    enqueue.__name__ = enqueue.__qualname__ = f"enqueue_to({queue.name!r})"
    return enqueue
