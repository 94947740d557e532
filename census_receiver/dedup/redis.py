"""The dedup stores in Redis: one for a ``redis.Redis`` client, one for ``redis.asyncio``.

Each step of the claim protocol (see ``census_receiver.dedup``) is one Lua
script, atomic on the server; redis-py is imported when a store is made, so
importing ``census_receiver.dedup`` needs no Redis client library.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import threading
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, DedupUnavailable
from . import DEFAULT_LEASE, DEFAULT_TTL, Claim, ClaimState, check_durations

if TYPE_CHECKING:
    from collections.abc import Callable

    import redis
    import redis.asyncio

__all__ = ["AsyncRedisDedupStore", "RedisDedupStore"]

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
        except asyncio.CancelledError:  # given up at the deadline: it may be applied too
            self._unanswered_claim(key, token)
            raise
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
