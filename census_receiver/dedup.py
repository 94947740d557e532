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
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

from .errors import ConfigurationError, DedupUnavailable, shown_value

if TYPE_CHECKING:
    from collections.abc import Callable

    import redis
    import redis.asyncio

    from ._types import Body
    from .events import Event

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
    for name, value in (("ttl", ttl), ("lease", lease)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigurationError(
                f"{name} must be a positive number of seconds, not {shown_value(value)}"
            )
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


logger = logging.getLogger("census_receiver")

# The three steps as Lua scripts, each atomic on the server. A key holds either
# the claim holder's token (hex, so never "done") with the lease as expiry, or
# "done" with the ttl as expiry.
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == 'done' then return 2 end
return 3
"""
_COMPLETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
    return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_STATES = {1: ClaimState.CLAIMED, 2: ClaimState.DONE, 3: ClaimState.IN_PROGRESS}
_HELD = 3  # the claim script's answer for a key someone else holds
#: Unanswered claims remembered at most (a long outage under load): older ones expire
#: with their lease anyway.
_UNANSWERED_KEPT = 10_000

_STATES = {1: ClaimState.CLAIMED, 2: ClaimState.DONE, 3: ClaimState.IN_PROGRESS}


class _RedisScripts:
    """What both Redis stores share: settings, the three scripts, error wording.

    ``register_script`` hands back a Script (sync client) or an AsyncScript, whose
    call returns the reply or an awaitable of it; each runs EVALSHA, then EVAL
    once if the server does not know the script (after a restart).

    A claim whose answer never came (the client timed out on a Redis that had
    stopped answering) may still be applied when Redis resumes, holding the key
    under a token nobody has. Its token is kept, and released as soon as Redis
    answers a later claim (which is made again if that token was what held its
    key), so Census's next retry is not answered 409 for the whole lease. While
    Redis is down, nothing is tried beyond the claim itself.
    """

    def __init__(self, client: Any, *, ttl: float, lease: float, prefix: str) -> None:
        import redis.exceptions

        check_durations(ttl, lease)
        if not prefix:
            raise ConfigurationError("prefix must not be empty: it keeps dedup keys apart")
        self.ttl = ttl
        self.lease = lease
        self.prefix = prefix
        self._client = client
        self._ttl_ms = max(1, round(ttl * 1000))
        self._lease_ms = max(1, round(lease * 1000))
        self._errors: tuple[type[Exception], ...] = (redis.exceptions.RedisError, OSError)
        self._claim: Callable[..., Any] = client.register_script(_CLAIM)
        self._complete: Callable[..., Any] = client.register_script(_COMPLETE)
        self._release: Callable[..., Any] = client.register_script(_RELEASE)
        #: (key, token) of claims whose answer never came: released once Redis answers.
        self._unanswered: list[tuple[str, str]] = []
        self._unanswered_lock = threading.Lock()
        pool = getattr(client, "connection_pool", None)
        options = getattr(pool, "connection_kwargs", None)
        if isinstance(options, dict) and options.get("socket_timeout") is None:
            logger.warning(
                "census %s: the Redis client has no socket_timeout; calls to a Redis that "
                "stops answering would wait forever, each holding a worker thread or task "
                "(pass socket_timeout=2, socket_connect_timeout=2 to the client)",
                type(self).__name__,
            )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(ttl={self.ttl!r}, lease={self.lease!r}, prefix={self.prefix!r})"
        )

    def _unanswered_claim(self, key: str, token: str) -> None:
        with self._unanswered_lock:
            if len(self._unanswered) < _UNANSWERED_KEPT:
                self._unanswered.append((self.prefix + key, token))

    def _take_unanswered(self) -> list[tuple[str, str]]:
        with self._unanswered_lock:
            taken, self._unanswered = self._unanswered, []
        return taken

    def _keep_unanswered(self, pending: list[tuple[str, str]]) -> None:
        with self._unanswered_lock:
            self._unanswered[:0] = pending

    def _unavailable(self, step: str, exc: Exception) -> DedupUnavailable:
        # Name the failure by type only: redis-py's messages carry host names and
        # the URL a client came from may carry a password.
        return DedupUnavailable(f"Redis did not answer the dedup {step} ({type(exc).__name__})")

    @staticmethod
    def _claimed(key: str, state: int, token: str) -> Claim:
        result = _STATES[state]
        return Claim(key, result, token if result is ClaimState.CLAIMED else "")


class RedisDedupStore(_RedisScripts):
    """A dedup store in Redis, shared by every process and machine that uses it.

    Each step is one Lua script, atomic on the server: ``claim`` is a
    ``SET key token NX PX lease``; ``complete`` and ``release`` act only when the
    key still holds the caller's token; a done key is kept for ``ttl`` seconds.

    Give it the ``redis.Redis`` client your code already uses; it serves both
    ``handle`` (WSGI, Flask) and ``handle_async`` (ASGI, where each call runs in
    a worker thread so the event loop never blocks). For an asyncio client, use
    ``AsyncRedisDedupStore``. Set ``socket_timeout`` (and
    ``socket_connect_timeout``) on the client, a second or two: the receiver
    answers 503 at its deadline when Redis stops answering, but the call itself
    waits on (holding a worker thread) until the socket times out.

    Args:
        client: a ``redis.Redis`` (a ``redis.RedisCluster`` works too: every
            script touches one key).
        ttl: seconds a handled delivery is remembered.
        lease: seconds a claim survives its holder (a crashed process).
        prefix: put before every dedup key, to share a Redis database.

    Raises:
        ConfigurationError: for an asyncio client, a non-positive ``ttl`` or
            ``lease``, a lease longer than the ttl, or an empty prefix.
    """

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        *,
        ttl: float = DEFAULT_TTL,
        lease: float = DEFAULT_LEASE,
        prefix: str = "census:dedup:",
    ) -> None:
        if inspect.iscoroutinefunction(getattr(client, "execute_command", None)):
            raise ConfigurationError(
                "RedisDedupStore takes a redis.Redis client; for a redis.asyncio client "
                "use AsyncRedisDedupStore (it serves ASGI apps only)"
            )
        super().__init__(client, ttl=ttl, lease=lease, prefix=prefix)

    def claim(self, key: str) -> Claim:
        """Atomically claim ``key``; see the module docstring.

        Args:
            key: the dedup key of the delivery.

        Returns:
            The claim: ``CLAIMED`` with a token, ``DONE`` or ``IN_PROGRESS``.

        Raises:
            DedupUnavailable: when Redis cannot be reached or fails.
        """
        token = secrets.token_hex(16)
        full = self.prefix + key
        try:
            state = int(self._claim(keys=[full], args=[token, self._lease_ms]))
            # Redis answers again: free what earlier claims may have left behind,
            # and claim once more if one of them was what held this very key.
            if self._unanswered and self._release_unanswered(full) and state == _HELD:
                state = int(self._claim(keys=[full], args=[token, self._lease_ms]))
        except self._errors as exc:
            self._unanswered_claim(key, token)  # it may be applied once Redis resumes
            raise self._unavailable("claim", exc) from None
        return self._claimed(key, state, token)

    def _release_unanswered(self, key: str) -> bool:
        """Release the claims whose answer never came; whether one was on ``key``."""
        pending = self._take_unanswered()
        for done, (held, token) in enumerate(pending):
            try:
                self._release(keys=[held], args=[token])
            except self._errors:
                self._keep_unanswered(pending[done:])  # not answering again: next time
                return False
        return any(held == key for held, _ in pending)

    def complete(self, claim: Claim) -> None:
        """Mark the claimed key done for ``ttl`` seconds, if the claim is still held.

        Raises:
            DedupUnavailable: when Redis cannot be reached or fails.
        """
        try:
            self._complete(keys=[self.prefix + claim.key], args=[claim.token, self._ttl_ms])
        except self._errors as exc:
            raise self._unavailable("complete", exc) from None

    def release(self, claim: Claim) -> None:
        """Drop the claim, if still held, so a retry runs the handlers again.

        Raises:
            DedupUnavailable: when Redis cannot be reached or fails.
        """
        try:
            self._release(keys=[self.prefix + claim.key], args=[claim.token])
        except self._errors as exc:
            raise self._unavailable("release", exc) from None


class AsyncRedisDedupStore(_RedisScripts):
    """``RedisDedupStore`` for a ``redis.asyncio`` client: the same scripts, awaited.

    It serves ``handle_async`` (ASGI apps) only, since its client belongs to the
    server's event loop; ``handle`` with it is a ``ConfigurationError``.

    Args:
        client: a ``redis.asyncio.Redis`` (or ``redis.asyncio.RedisCluster``).
        ttl: seconds a handled delivery is remembered.
        lease: seconds a claim survives its holder (a crashed process).
        prefix: put before every dedup key, to share a Redis database.

    Raises:
        ConfigurationError: for a sync client, a non-positive ``ttl`` or ``lease``,
            a lease longer than the ttl, or an empty prefix.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis | redis.asyncio.RedisCluster,
        *,
        ttl: float = DEFAULT_TTL,
        lease: float = DEFAULT_LEASE,
        prefix: str = "census:dedup:",
    ) -> None:
        if not inspect.iscoroutinefunction(getattr(client, "execute_command", None)):
            raise ConfigurationError(
                "AsyncRedisDedupStore takes a redis.asyncio client; for redis.Redis "
                "use RedisDedupStore"
            )
        super().__init__(client, ttl=ttl, lease=lease, prefix=prefix)

    async def claim(self, key: str) -> Claim:
        """Atomically claim ``key``; see the module docstring.

        Raises:
            DedupUnavailable: when Redis cannot be reached or fails.
        """
        token = secrets.token_hex(16)
        full = self.prefix + key
        try:
            state = int(await self._claim(keys=[full], args=[token, self._lease_ms]))
            # As in RedisDedupStore.claim: free what earlier claims left behind.
            if self._unanswered and await self._release_unanswered(full) and state == _HELD:
                state = int(await self._claim(keys=[full], args=[token, self._lease_ms]))
        except self._errors as exc:
            self._unanswered_claim(key, token)  # it may be applied once Redis resumes
            raise self._unavailable("claim", exc) from None
        return self._claimed(key, state, token)

    async def _release_unanswered(self, key: str) -> bool:
        """Release the claims whose answer never came; whether one was on ``key``."""
        pending = self._take_unanswered()
        for done, (held, token) in enumerate(pending):
            try:
                await self._release(keys=[held], args=[token])
            except self._errors:
                self._keep_unanswered(pending[done:])  # not answering again: next time
                return False
        return any(held == key for held, _ in pending)

    async def complete(self, claim: Claim) -> None:
        """Mark the claimed key done for ``ttl`` seconds, if the claim is still held.

        Raises:
            DedupUnavailable: when Redis cannot be reached or fails.
        """
        try:
            await self._complete(keys=[self.prefix + claim.key], args=[claim.token, self._ttl_ms])
        except self._errors as exc:
            raise self._unavailable("complete", exc) from None

    async def release(self, claim: Claim) -> None:
        """Drop the claim, if still held, so a retry runs the handlers again.

        Raises:
            DedupUnavailable: when Redis cannot be reached or fails.
        """
        try:
            await self._release(keys=[self.prefix + claim.key], args=[claim.token])
        except self._errors as exc:
            raise self._unavailable("release", exc) from None
