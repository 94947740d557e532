"""Deduplication of Census deliveries: the store protocol and its stores.

No web framework. Census retries a delivery (byte-identical) when it did not see
a 2xx in time, so one event can arrive up to six times. With a store, the
receiver turns each delivery into a three-step protocol on a key that identifies
the event:

1. ``claim(key)`` atomically, before any handler runs. It answers
   ``CLAIMED`` (run the handlers), ``DONE`` (handled before: answer 200, run
   nothing) or ``IN_PROGRESS`` (another worker is on it now: answer 409 so
   Census retries later). A claim is a lease: if its holder crashes, it expires
   after ``lease`` seconds and a later retry runs the handlers.
2. ``complete(claim)`` once every handler succeeded: the key is remembered as
   done for ``ttl`` seconds, longer than Census's whole retry window.
3. ``release(claim)`` when a handler failed: the key is forgotten, so Census's
   retry runs the handlers again.

``complete`` and ``release`` only act on the holder's own claim (a token checks
it), so a worker whose lease expired cannot undo a newer claim.

Stores: ``InMemoryDedupStore`` for one process; ``RedisDedupStore`` (redis-py's
``redis.Redis``) and ``AsyncRedisDedupStore`` (``redis.asyncio``) for many
processes and machines. A store follows ``DedupStore`` (plain methods) or
``AsyncDedupStore`` (coroutines). A store that cannot
reach its backend raises ``DedupUnavailable``; the receiver answers 503 then
(or runs the handlers anyway when built with ``dedup_fail_open=True``).
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import inspect
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

from ..errors import ConfigurationError, check_positive

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._types import Body
    from ..events import Event

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_TTL",
    "AsyncDedupStore",
    "AsyncRedisDedupStore",
    "Claim",
    "ClaimState",
    "DedupStore",
    "InMemoryDedupStore",
    "KeyFunction",
    "RedisDedupStore",
    "check_durations",
    "default_key",
    "is_async_store",
]

#: How long a handled delivery is remembered: Census's retries span about three
#: minutes (4+8+16+32+64 s of delay plus up to six 10 s timeouts); an hour leaves
#: ample margin, for clock skew and for Census's own queueing.
DEFAULT_TTL = 3600.0
#: How long a claim outlives a crashed holder. Longer than any handler should run
#: (the receiver answers at its 8 s deadline and lets the handlers finish), short
#: enough that a later Census retry (the last comes about two minutes after the
#: first attempt) finds it expired and runs the handlers.
DEFAULT_LEASE = 60.0

#: Builds the dedup key of a verified delivery from its event and exact body.
KeyFunction: TypeAlias = "Callable[[Event, Body], str]"


class ClaimState(enum.Enum):
    """What ``claim`` found."""

    CLAIMED = "claimed"
    DONE = "done"
    IN_PROGRESS = "in_progress"


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer of ``claim``: the state and, when claimed, the holder's token."""

    key: str
    state: ClaimState
    token: str = ""


@runtime_checkable
class DedupStore(Protocol):
    """What the receiver needs of a dedup store whose calls block (or never wait).

    ``handle`` calls these on the caller's thread (under a deadline, in a worker
    thread); ``handle_async`` calls them in a worker thread, unless the store says
    it never waits (``blocking = False``, as ``InMemoryDedupStore`` does), when
    they run on the event loop.
    """

    def claim(self, key: str) -> Claim:
        """Atomically claim ``key`` unless it is done or claimed by someone else."""
        ...

    def complete(self, claim: Claim) -> None:
        """Remember the claimed key as done (only if the claim is still held)."""
        ...

    def release(self, claim: Claim) -> None:
        """Forget the claim (only if still held), so a retry runs the handlers again."""
        ...


@runtime_checkable
class AsyncDedupStore(Protocol):
    """A dedup store with an asyncio client: the same three steps, awaited.

    It serves ``handle_async`` (ASGI) only: its client belongs to the server's loop.
    """

    async def claim(self, key: str) -> Claim:
        """Atomically claim ``key`` unless it is done or claimed by someone else."""
        ...

    async def complete(self, claim: Claim) -> None:
        """Remember the claimed key as done (only if the claim is still held)."""
        ...

    async def release(self, claim: Claim) -> None:
        """Forget the claim (only if still held), so a retry runs the handlers again."""
        ...


def is_async_store(store: object) -> bool:
    """Whether ``store`` follows ``AsyncDedupStore`` (its ``claim`` is a coroutine function)."""
    return inspect.iscoroutinefunction(getattr(store, "claim", None))


def default_key(event: Event, body: Body) -> str:
    """The dedup key of a delivery: its identity fields, or a digest of the body.

    Census retries are byte-identical, but two different events must never share
    a key, so the key names the workspace, sync, run and event (and the alert
    instance for alerts). A payload without those ids (an unknown event) falls
    back to the SHA-256 of the verified body.

    Args:
        event: the verified event.
        body: the exact verified bytes.

    Returns:
        A short string, stable across processes.
    """
    ids = (event.workspace_id, event.sync_id, event.sync_run_id)
    if None in ids:
        return "body:" + hashlib.sha256(body).hexdigest()
    key = f"{event.event}:{ids[0]}:{ids[1]}:{ids[2]}"
    alert = event.raw.get("alert_instance_id")
    if event.event.startswith("sync.alert.") and alert is not None:
        key += f":{alert}"
    return key


def check_durations(ttl: float, lease: float) -> None:
    """Refuse non-positive durations, and a lease longer than the ttl.

    Raises:
        ConfigurationError: naming the setting at fault.
    """
    check_positive("ttl", ttl, unit=" of seconds")
    check_positive("lease", lease, unit=" of seconds")
    if lease > ttl:
        raise ConfigurationError("lease must not be longer than ttl")


class InMemoryDedupStore:
    """A dedup store in this process's memory: right for one process, lost on restart.

    Several worker processes (gunicorn, uvicorn ``--workers``) do not share it:
    use ``RedisDedupStore`` there.

    Args:
        ttl: seconds a handled delivery is remembered.
        lease: seconds a claim survives without ``complete``/``release``.
        clock: a monotonic clock (tests may pass their own).

    Raises:
        ConfigurationError: for a non-positive ``ttl`` or ``lease``.
    """

    #: Its steps never wait on I/O, so ``handle_async`` calls them on the event loop.
    blocking = False

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        lease: float = DEFAULT_LEASE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_durations(ttl, lease)
        self.ttl = ttl
        self.lease = lease
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (token, expires_at); token "" marks a done key.
        self._entries: dict[str, tuple[str, float]] = {}
        self._expiries: list[tuple[float, str]] = []

    def __repr__(self) -> str:
        return f"InMemoryDedupStore(ttl={self.ttl!r}, lease={self.lease!r}, keys={len(self)})"

    def __len__(self) -> int:
        with self._lock:
            self._purge(self._clock())
            return len(self._entries)

    def _purge(self, now: float) -> None:
        expiries, entries = self._expiries, self._entries
        while expiries and expiries[0][0] <= now:
            expires_at, key = heapq.heappop(expiries)
            entry = entries.get(key)
            if entry is not None and entry[1] == expires_at:
                del entries[key]

    def _set(self, key: str, token: str, expires_at: float) -> None:
        self._entries[key] = (token, expires_at)
        heapq.heappush(self._expiries, (expires_at, key))

    def claim(self, key: str) -> Claim:
        """Atomically claim ``key``; see the module docstring."""
        with self._lock:
            now = self._clock()
            self._purge(now)
            entry = self._entries.get(key)
            if entry is not None:
                return Claim(key, ClaimState.IN_PROGRESS if entry[0] else ClaimState.DONE)
            token = secrets.token_hex(8)
            self._set(key, token, now + self.lease)
            return Claim(key, ClaimState.CLAIMED, token)

    def complete(self, claim: Claim) -> None:
        """Mark the claimed key done for ``ttl`` seconds, if the claim is still held."""
        with self._lock:
            entry = self._entries.get(claim.key)
            if entry is not None and entry[0] == claim.token:
                self._set(claim.key, "", self._clock() + self.ttl)

    def release(self, claim: Claim) -> None:
        """Drop the claim, if still held, so a retry runs the handlers again."""
        with self._lock:
            entry = self._entries.get(claim.key)
            if entry is not None and entry[0] == claim.token:
                del self._entries[claim.key]


# The Redis stores, at the end: their module builds on the names above.
from .redis import AsyncRedisDedupStore, RedisDedupStore  # noqa: E402
