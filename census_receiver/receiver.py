"""The webhook receiver: secrets, handlers and limits, turned into HTTP answers.

No I/O of its own and no web framework: ``handle`` takes the raw body and the
request headers and returns an ``Outcome`` (status, JSON body, headers, event)
that an adapter writes back. Its steps, in order::

    size check -> X-Signature (decode once, HMAC per secret) -> strict JSON -> Event
      -> allowlist -> handlers_for(event) -> [dedup claim] -> run handlers -> [complete/release]

The first steps are pure (``verify_event``); only running handlers and talking
to the dedup store have effects. ``handle`` and ``handle_async`` share every
step but how handlers run (both start in ``_begin``, where the adapters call in
with the X-Signature value they found): the sync path calls sync handlers
directly and runs async ones on a private event loop thread; the async path
awaits async handlers and runs sync ones in a worker thread, so the event loop
is never blocked.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import json
import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar, overload

from .dedup import Claim, ClaimState, DedupStore, default_key
from .errors import (
    ConfigurationError,
    DedupUnavailable,
    InvalidSignature,
    MethodNotAllowed,
    NonRetryableError,
    PayloadTooLarge,
    RequestRejected,
    WorkspaceNotAllowed,
    shown_value,
)
from .events import Event, parse_event
from .routing import Route, Router, describe, is_async_callable
from .signature import SecretSet, decode_signature, signature_from_headers
from .stats import ReceiverStats

if TYPE_CHECKING:
    from ._types import Body, ErrorHook, Headers, Secret
    from .dedup import KeyFunction

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_PATH",
    "DEFAULT_SLOW_HANDLING",
    "SECRET_ENV_VAR",
    "Outcome",
    "WebhookReceiver",
    "check_path",
]

logger = logging.getLogger("census_receiver")
_INFO = logging.INFO

#: The environment variable read when no ``secret`` is given.
SECRET_ENV_VAR = "CENSUS_WEBHOOK_SECRET"
#: Census payloads are well under 1 KiB; 1 MiB leaves room and bounds memory.
DEFAULT_MAX_BODY_SIZE = 1_048_576
#: With dedup on, answer 503 after this many seconds if handlers still run:
#: Census gives up on an attempt after 10 s and would retry anyway.
DEFAULT_DEADLINE = 8.0
#: Where the adapters answer Census unless told otherwise.
DEFAULT_PATH = "/webhooks/census"
#: Log a warning when handling a delivery takes longer than this.
DEFAULT_SLOW_HANDLING = 5.0

_H = TypeVar("_H", bound=Callable[..., Any])
_E = TypeVar("_E", bound=Callable[..., Any])


class Outcome(NamedTuple):
    """What to answer a delivery, and what happened to it (immutable).

    A named tuple: one is built per delivery, and a tuple is the cheapest
    immutable record to build.

    Attributes:
        status: the HTTP status code.
        body: the JSON answer, as bytes: ``{"status": ...}`` on 2xx,
            ``{"error": ...}`` otherwise.
        headers: ``(name, value)`` pairs, Content-Type and Content-Length included.
        event: the verified event, or ``None`` when the delivery was refused
            before it was verified and parsed.
        reason: a short label of what happened (``"handled"``, ``"ignored"``,
            ``"duplicate"``, ``"invalid_signature"``, ...; see ``REASONS``).
        result: what the ``endpoint`` given to ``handle`` returned, if any.
    """

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    event: Event | None = None
    reason: str = "handled"
    result: object = None

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx (Census will not retry)."""
        return 200 <= self.status < 300

    def json(self) -> dict[str, Any]:
        """The decoded answer body."""
        decoded: dict[str, Any] = json.loads(self.body)
        return decoded


_HTML_SAFE = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026"}


@functools.lru_cache(maxsize=256)
def _answer(status: int, key: str, text: str, reason: str, *extra: tuple[str, str]) -> Outcome:
    # ASCII-only JSON with <, > and & escaped too: verified payload text quoted in a
    # message stays inert even if the answer ends up shown inside an HTML page.
    body = json.dumps({key: text}).translate(_HTML_SAFE).encode("ascii")
    headers = (
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        *extra,
    )
    return Outcome(status, body, headers, None, reason)


_HANDLED = _answer(200, "status", "ok", "handled")
_IGNORED = _answer(200, "status", "ignored", "ignored")
_DUPLICATE = _answer(200, "status", "duplicate", "duplicate")
_DROPPED = _answer(200, "status", "dropped", "dropped")
_HANDLER_ERROR = _answer(
    500, "error", "a handler failed; the delivery can be retried", "handler_error"
)
_IN_PROGRESS = _answer(409, "error", "this delivery is being handled; retry later", "in_progress")
_DEADLINE = _answer(503, "error", "still handling this delivery; retry later", "deadline")
_UNAVAILABLE = _answer(503, "error", "the deduplication store is unavailable", "dedup_unavailable")

#: Every ``Outcome.reason``, with its status.
REASONS: dict[str, int] = {
    o.reason: o.status
    for o in (
        _HANDLED,
        _IGNORED,
        _DUPLICATE,
        _DROPPED,
        _HANDLER_ERROR,
        _IN_PROGRESS,
        _DEADLINE,
        _UNAVAILABLE,
    )
}
for _cls in RequestRejected.__subclasses__():
    REASONS[_cls.reason] = _cls.status_code


_new_tuple = tuple.__new__


def check_path(path: str) -> str:
    """Check an adapter's webhook path.

    Args:
        path: the path the adapter answers, e.g. ``"/webhooks/census"``.

    Returns:
        ``path`` unchanged.

    Raises:
        ConfigurationError: if it does not start with ``/`` (the message leaves the
            value out: some endpoints carry a token in their path).
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigurationError("path must start with '/'")
    return path


def _secrets_from(secret: Secret | Sequence[Secret] | None) -> list[Secret]:
    if secret is None:
        from_env = os.environ.get(SECRET_ENV_VAR, "")
        if not from_env:
            raise ConfigurationError(
                f"no webhook secret: pass secret=... or set {SECRET_ENV_VAR} "
                "to the secret Census showed when the webhook was created"
            )
        return [from_env]
    if isinstance(secret, str | bytes):
        if not secret:
            raise ConfigurationError("secret must not be empty")
        return [secret]
    if isinstance(secret, Iterable):
        secrets = list(secret)
        if not secrets:
            raise ConfigurationError("secret must not be an empty list")
        return secrets
    raise ConfigurationError(
        f"secret must be str, bytes or a list of them, not {type(secret).__name__}"
    )


def _positive(name: str, value: float | None, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number, not {shown_value(value)}")


class WebhookReceiver:
    """Verifies Census deliveries and dispatches them to handlers.

    Args:
        secret: the webhook secret (``str`` or ``bytes``), or a list of them when
            several webhooks point at one endpoint or a secret is being rotated.
            ``None`` reads ``CENSUS_WEBHOOK_SECRET``.
        max_body_size: larger bodies are answered 413, before any HMAC.
        dedup: a store from ``census_receiver.dedup`` to handle each delivery once.
        dedup_key: builds the dedup key from ``(event, body)``; defaults to the
            event's identity fields (``census_receiver.dedup.default_key``).
        dedup_fail_open: when the dedup store is unreachable, run the handlers
            anyway (risking a duplicate) instead of answering 503 (the default).
        deadline: with dedup on, seconds after which a delivery whose handlers
            still run is answered 503; they finish in the background and Census's
            retry then finds the delivery done (200) or released (run again).
            ``None`` waits for the handlers however long they take.
        slow_handling: seconds of handling above which a warning is logged.
        allowed_workspaces: if given, only these Census workspace ids are handled;
            verified deliveries from others are answered 403.
        max_threads: worker threads for sync handlers under ``handle_async``
            (and for the deadline under ``handle``).
        stats: counters to update (one is made if not given).

    Raises:
        ConfigurationError: if there is no usable secret or an option is invalid.
    """

    def __init__(
        self,
        secret: Secret | Sequence[Secret] | None = None,
        *,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        dedup: DedupStore | None = None,
        dedup_key: KeyFunction | None = None,
        dedup_fail_open: bool = False,
        deadline: float | None = DEFAULT_DEADLINE,
        slow_handling: float | None = DEFAULT_SLOW_HANDLING,
        allowed_workspaces: Collection[int] | None = None,
        max_threads: int = 40,
        stats: ReceiverStats | None = None,
    ) -> None:
        self._secrets = SecretSet(_secrets_from(secret))
        if (
            isinstance(max_body_size, bool)
            or not isinstance(max_body_size, int)
            or max_body_size < 1
        ):
            raise ConfigurationError(
                "max_body_size must be a positive number of bytes, not "
                + shown_value(max_body_size)
            )
        _positive("deadline", deadline)
        if deadline is not None and deadline >= 10:
            raise ConfigurationError(
                "deadline must be under 10 seconds: Census gives up on a delivery after 10 s"
            )
        _positive("slow_handling", slow_handling)
        _positive("max_threads", max_threads, optional=False)
        if dedup is not None and not isinstance(dedup, DedupStore):
            raise ConfigurationError(
                "dedup must be a store from census_receiver.dedup "
                f"(InMemoryDedupStore, RedisDedupStore), not {type(dedup).__name__}"
            )
        if dedup_key is not None and not callable(dedup_key):
            raise ConfigurationError("dedup_key must be a function of (event, body)")
        allowed: frozenset[int] | None = None
        if allowed_workspaces is not None:
            allowed = frozenset(allowed_workspaces)
            if not all(type(w) is int for w in allowed):
                raise ConfigurationError("allowed_workspaces must hold integer workspace ids")
        #: Bodies larger than this many bytes are answered 413.
        self.max_body_size: int = max_body_size
        #: The dedup store, or ``None``.
        self.dedup: DedupStore | None = dedup
        self.dedup_fail_open = dedup_fail_open
        self.deadline = deadline
        self.slow_handling = slow_handling
        #: The workspace allowlist, or ``None`` for any workspace.
        self.allowed_workspaces: frozenset[int] | None = allowed
        #: Counts of deliveries by event and outcome, and handling times.
        self.stats: ReceiverStats = stats if stats is not None else ReceiverStats()
        self._dedup_key: KeyFunction = dedup_key or default_key
        self._router = Router()
        self._error_hooks: list[ErrorHook] = []
        self._max_threads = max_threads
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop_thread: _LoopThread | None = None
        self._lock = threading.Lock()
        self._background: set[asyncio.Future[Outcome]] = set()

    def __repr__(self) -> str:
        store = type(self.dedup).__name__ if self.dedup is not None else None
        return (
            f"<WebhookReceiver secrets={len(self._secrets)} handlers={len(self._router)} "
            f"max_body_size={self.max_body_size} dedup={store}>"
        )

    # -- registration -----------------------------------------------------------------

    def on(self, *patterns: str, **filters: Any) -> Callable[[_H], _H]:
        """Register the decorated function for events matching any of ``patterns``.

        Every matching handler runs, in registration order. Handlers may be
        ``async def``.

        Args:
            *patterns: event names or shell-style patterns: ``"sync.failed"``,
                ``"sync.alert.*"``, ``"*"`` (``*`` spans dots).
            **filters: payload fields the event must have, e.g.
                ``status="emergency"``; a tuple/list/set lists allowed values and a
                callable is a predicate on the field's value.

        Returns:
            A decorator that registers the function and returns it unchanged.

        Raises:
            ConfigurationError: if no pattern is given or a pattern is not a string.
        """
        patterns_t = tuple(patterns)
        if not patterns_t:
            raise ConfigurationError("name at least one event, e.g. on('sync.failed') or on('*')")

        def register(handler: _H) -> _H:
            self._router.add(handler, patterns_t, filters)
            return handler

        return register

    def on_error(self, hook: _E) -> _E:
        """Register a function called as ``hook(exc, event)`` when a handler fails.

        Use it to alert on failures; it runs before the 500 answer. A hook's own
        failure is logged and otherwise ignored. May be ``async def``.

        Args:
            hook: the function.

        Returns:
            ``hook`` unchanged, so this works as a decorator.

        Raises:
            ConfigurationError: if ``hook`` is not callable.
        """
        if not callable(hook):
            raise ConfigurationError("an error hook must be callable")
        self._error_hooks.append(hook)
        return hook

    @property
    def routes(self) -> tuple[Route, ...]:
        """Every handler registration, in order."""
        return self._router.routes

    # -- the pure steps ----------------------------------------------------------------

    def verify(self, body: Body, signature: str | bytes | None) -> bool:
        """Check an ``X-Signature`` value against every configured secret.

        Args:
            body: the exact request body.
            signature: the header value (``None`` if absent).

        Returns:
            Whether it is a well-formed signature of ``body`` under some secret.
        """
        try:
            claimed = decode_signature(signature)
        except RequestRejected:
            return False
        return self._secrets.match(body, claimed) is not None

    def verify_event(self, body: Body, headers: Headers) -> Event:
        """Verify a delivery and decode its event, without running any handler.

        Args:
            body: the exact request body.
            headers: the request headers (mapping or pairs; names in any case).

        Returns:
            The typed event.

        Raises:
            RequestRejected: a subclass saying why (``.status_code`` is the answer).
        """
        return self._authenticate(body, signature_from_headers(headers))[0]

    def _authenticate(self, body: Body, signature: str | bytes | None) -> tuple[Event, int]:
        if len(body) > self.max_body_size:
            raise PayloadTooLarge(f"the body is larger than {self.max_body_size} bytes")
        claimed = decode_signature(signature)
        position = self._secrets.match(body, claimed)
        if position is None:
            raise InvalidSignature(
                "the X-Signature does not match the body for any configured secret"
            )
        event = parse_event(body)
        allowed = self.allowed_workspaces
        if allowed is not None and event.workspace_id not in allowed:
            raise WorkspaceNotAllowed(
                f"workspace {_printable(event.workspace_id)} is not one of the allowed workspaces"
            )
        return event, position

    def check_request(
        self, method: str, content_length: str | bytes | None = None
    ) -> Outcome | None:
        """Refuse a request from its method and declared length, before reading the body.

        Adapters call this first; a declared length over the limit is answered
        413 without reading anything. A missing or unparsable length is left to
        the size check of ``handle`` on the bytes actually read.

        Args:
            method: the HTTP method.
            content_length: the Content-Length header value, if any.

        Returns:
            The 405 or 413 answer, or ``None`` when the request may proceed.
        """
        if method != "POST":
            return self.reject(MethodNotAllowed("use POST to deliver Census webhooks"))
        if content_length:
            try:
                declared = int(content_length)
            except ValueError:
                return None
            if declared > self.max_body_size:
                return self.reject(
                    PayloadTooLarge(f"the body is larger than {self.max_body_size} bytes")
                )
        return None

    def reject(self, error: RequestRejected, *, started: float | None = None) -> Outcome:
        """Turn a refusal into its answer, logging and counting it.

        Args:
            error: why the delivery is refused.
            started: ``perf_counter()`` when handling began, for the timing.

        Returns:
            The answer: ``error.status_code`` with ``{"error": str(error)}``.
        """
        extra = (("allow", "POST"),) if isinstance(error, MethodNotAllowed) else ()
        outcome = _answer(error.status_code, "error", str(error), error.reason, *extra)
        logger.warning(
            "census delivery rejected (%d %s): %s",
            outcome.status,
            outcome.reason,
            error,
            extra={"census_reason": outcome.reason, "census_status": outcome.status},
        )
        self.stats.record(None, outcome.reason, perf_counter() - started if started else 0.0)
        return outcome

    # -- the sync path -----------------------------------------------------------------

    def handle(
        self, body: Body, headers: Headers, *, endpoint: Callable[[Event], object] | None = None
    ) -> Outcome:
        """Verify, decode and dispatch one delivery; never raises for bad input.

        Args:
            body: the exact request body.
            headers: the request headers (mapping or pairs; names in any case).
            endpoint: an extra callable run after the handlers, as part of handling
                (a Flask view); what it returns is ``Outcome.result``.

        Returns:
            The answer to give, following the HTTP contract.
        """
        return self._begin(False, body, None, endpoint, headers)

    def _deliver_once(
        self,
        dedup: DedupStore,
        body: Body,
        event: Event,
        position: int,
        routes: tuple[Route, ...],
        endpoint: Callable[[Event], object] | None,
        started: float,
    ) -> Outcome:
        """The rest of a delivery with dedup on: claim, run and settle, within the deadline.

        The store's answer counts against the deadline too: a store that stops
        answering (rather than refusing) must not hold the request past Census's
        10 s. The work runs in a worker thread, carrying the contextvars (so a
        Flask view still sees its request), while this thread waits.
        """
        progress = _Progress()
        work = functools.partial(
            self._claim_and_run, dedup, body, event, position, routes, endpoint, started, progress
        )
        if self.deadline is None:
            return work()
        future = self._pool().submit(contextvars.copy_context().run, work)
        try:
            return future.result(timeout=max(0.0, self.deadline - (perf_counter() - started)))
        except concurrent.futures.TimeoutError:
            if progress.stage == "unclaimed":  # failed open: no claim, so no deadline either
                return future.result()
            return self._past_deadline(progress, event, started, position)

    def _claim_and_run(
        self,
        dedup: DedupStore,
        body: Body,
        event: Event,
        position: int,
        routes: tuple[Route, ...],
        endpoint: Callable[[Event], object] | None,
        started: float,
        progress: _Progress,
    ) -> Outcome:
        try:
            got: Claim | Exception = dedup.claim(self._dedup_key(event, body))
        except ConfigurationError:
            raise
        except Exception as exc:  # noqa: BLE001 - any store failure is "unavailable"
            got = exc
        claim = self._check_claim(got, event, started, position, progress)
        if isinstance(claim, Outcome):
            return claim
        return self._run_and_settle(routes, event, endpoint, claim, started, position)

    def _run_and_settle(
        self,
        routes: tuple[Route, ...],
        event: Event,
        endpoint: Callable[[Event], object] | None,
        claim: Claim | None,
        started: float,
        position: int,
    ) -> Outcome:
        failed: Callable[..., object] | None = None
        result: object = None
        try:
            for route in routes:
                failed = route.handler
                # _call_sync inlined: this loop runs for every delivery.
                returned = route.handler(event)
                if returned is not None and inspect.isawaitable(returned):
                    self._run_coroutine(returned)  # an async handler, on the private loop
            if endpoint is not None:
                failed = endpoint
                result = self._call_sync(endpoint, event)
        except Exception as exc:  # noqa: BLE001 - a handler's failure becomes a 500
            if not isinstance(exc, NonRetryableError):
                for hook in self._error_hooks:
                    self._call_hook_sync(hook, exc, event)
            return self._settle_failure(
                exc, failed, event, claim, started, position, self._store_sync
            )
        except BaseException:
            self._store_sync(claim, done=False)
            raise
        if claim is not None:
            self._store_sync(claim, done=True)
        return self._finish(_HANDLED, event, started, position, result)

    def _call_sync(self, fn: Callable[[Event], object], event: Event) -> object:
        result = fn(event)
        if result is not None and inspect.isawaitable(result):
            result = self._run_coroutine(result)
        return result

    def _call_hook_sync(self, hook: ErrorHook, exc: BaseException, event: Event) -> None:
        try:
            result = hook(exc, event)
            if inspect.isawaitable(result):
                self._run_coroutine(result)
        except Exception:
            logger.exception("census error hook %s failed", describe(hook))

    def _run_coroutine(self, awaitable: Awaitable[Any]) -> Any:
        with self._lock:
            if self._loop_thread is None:
                self._loop_thread = _LoopThread(self)
        return self._loop_thread.run(awaitable)

    def _store_sync(self, claim: Claim | None, *, done: bool) -> None:
        if claim is None or self.dedup is None:
            return
        try:
            if done:
                self.dedup.complete(claim)
            else:
                self.dedup.release(claim)
        except Exception as exc:  # noqa: BLE001 - see _store_error
            _store_error(exc, done)

    # -- the async path ----------------------------------------------------------------

    async def handle_async(
        self, body: Body, headers: Headers, *, endpoint: Callable[[Event], object] | None = None
    ) -> Outcome:
        """``handle`` for an event loop: async handlers are awaited, sync ones run in threads.

        Args:
            body: the exact request body.
            headers: the request headers (mapping or pairs; names in any case).
            endpoint: an extra callable (sync or async) run after the handlers.

        Returns:
            The answer to give, following the HTTP contract.
        """
        pending = self._begin(True, body, None, endpoint, headers)
        return pending if isinstance(pending, Outcome) else await pending

    async def _deliver_once_async(
        self,
        dedup: DedupStore,
        body: Body,
        event: Event,
        position: int,
        routes: tuple[Route, ...],
        endpoint: Callable[[Event], object] | None,
        started: float,
    ) -> Outcome:
        """``_deliver_once`` for the event loop: the work is a task, awaited up to the deadline."""
        progress = _Progress()
        work = self._claim_and_run_async(
            dedup, body, event, position, routes, endpoint, started, progress
        )
        if self.deadline is None:
            return await work
        task = asyncio.ensure_future(work)
        # Keep a reference until it is done: past the deadline it settles the claim.
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        remaining = max(0.0, self.deadline - (perf_counter() - started))
        done, _ = await asyncio.wait((task,), timeout=remaining)
        if done or progress.stage == "unclaimed":  # failed open: no claim, so no deadline
            return await task
        return self._past_deadline(progress, event, started, position)

    async def _claim_and_run_async(
        self,
        dedup: DedupStore,
        body: Body,
        event: Event,
        position: int,
        routes: tuple[Route, ...],
        endpoint: Callable[[Event], object] | None,
        started: float,
        progress: _Progress,
    ) -> Outcome:
        try:
            got: Claim | Exception = await dedup.claim_async(self._dedup_key(event, body))
        except ConfigurationError:
            raise
        except Exception as exc:  # noqa: BLE001 - any store failure is "unavailable"
            got = exc
        claim = self._check_claim(got, event, started, position, progress)
        if isinstance(claim, Outcome):
            return claim
        return await self._run_and_settle_async(routes, event, endpoint, claim, started, position)

    async def _run_and_settle_async(
        self,
        routes: tuple[Route, ...],
        event: Event,
        endpoint: Callable[[Event], object] | None,
        claim: Claim | None,
        started: float,
        position: int,
    ) -> Outcome:
        failed: Callable[..., object] | None = None
        result: object = None
        try:
            for route in routes:
                failed = route.handler
                if route.is_async:  # the common case, awaited here without another coroutine
                    await route.handler(event)  # type: ignore[misc]
                else:
                    await self._call_async(route.handler, False, event)
            if endpoint is not None:
                failed = endpoint
                result = await self._call_async(endpoint, is_async_callable(endpoint), event)
        except Exception as exc:  # noqa: BLE001 - a handler's failure becomes a 500
            if not isinstance(exc, NonRetryableError):
                for hook in self._error_hooks:
                    await self._call_hook_async(hook, exc, event)
            outcome = self._settle_failure(exc, failed, event, claim, started, position, None)
            await self._store_async(claim, done=outcome.ok)
            return outcome
        except BaseException:
            # Cancelled mid-handler: forget the claim so a retry runs the handlers.
            await self._store_async(claim, done=False)
            raise
        if claim is not None:
            await self._store_async(claim, done=True)
        return self._finish(_HANDLED, event, started, position, result)

    async def _call_async(
        self, fn: Callable[[Event], object], is_async: bool, event: Event
    ) -> object:
        result = fn(event) if is_async else await self._in_thread(fn, event)
        if result is not None and inspect.isawaitable(result):
            result = await result
        return result

    async def _call_hook_async(self, hook: ErrorHook, exc: BaseException, event: Event) -> None:
        try:
            result = (
                hook(exc, event)
                if is_async_callable(hook)
                else await self._in_thread(hook, exc, event)
            )
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("census error hook %s failed", describe(hook))

    async def _in_thread(self, fn: Callable[..., object], *args: Any) -> object:
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), functools.partial(context.run, fn, *args))

    async def _store_async(self, claim: Claim | None, *, done: bool) -> None:
        if claim is None or self.dedup is None:
            return
        try:
            if done:
                await self.dedup.complete_async(claim)
            else:
                await self.dedup.release_async(claim)
        except Exception as exc:  # noqa: BLE001 - see _store_error
            _store_error(exc, done)

    # -- shared by both paths ----------------------------------------------------------

    @overload
    def _begin(
        self,
        is_async: Literal[False],
        body: Body,
        signature: str | bytes | None,
        endpoint: Callable[[Event], object] | None = None,
        headers: Headers | None = None,
    ) -> Outcome: ...

    @overload
    def _begin(
        self,
        is_async: Literal[True],
        body: Body,
        signature: str | bytes | None,
        endpoint: Callable[[Event], object] | None = None,
        headers: Headers | None = None,
    ) -> Outcome | Coroutine[Any, Any, Outcome]: ...

    def _begin(
        self,
        is_async: bool,
        body: Body,
        signature: str | bytes | None,
        endpoint: Callable[[Event], object] | None = None,
        headers: Headers | None = None,
    ) -> Outcome | Coroutine[Any, Any, Outcome]:
        """Where ``handle`` and ``handle_async`` start, and where adapters call in.

        Adapters that find the one X-Signature value themselves pass it as
        ``signature`` and no ``headers``. Verifying and routing need no awaiting,
        so both paths do them here. The sync path then runs the handlers and
        returns the answer; the async one returns a coroutine, for the caller to
        await, that runs them (a coroutine fewer per delivery than an ``async
        def`` around it all), or the answer when no handler is to run.
        """
        started = perf_counter()
        try:
            if headers is not None:
                signature = signature_from_headers(headers)
            event, position = self._authenticate(body, signature)
        except RequestRejected as exc:
            return self.reject(exc, started=started)
        routes = self._router.handlers_for(event)
        if not routes and endpoint is None:
            return self._finish(_IGNORED, event, started, position)
        dedup = self.dedup
        if is_async:
            if dedup is None:
                return self._run_and_settle_async(routes, event, endpoint, None, started, position)
            return self._deliver_once_async(dedup, body, event, position, routes, endpoint, started)
        if dedup is None:
            return self._run_and_settle(routes, event, endpoint, None, started, position)
        return self._deliver_once(dedup, body, event, position, routes, endpoint, started)

    def _check_claim(
        self,
        got: Claim | Exception,
        event: Event,
        started: float,
        position: int,
        progress: _Progress,
    ) -> Outcome | Claim | None:
        """What the store's answer means: answer now, run with the claim, or run without."""
        if isinstance(got, Claim):
            if got.state is ClaimState.CLAIMED:
                progress.stage = "claimed"
                return got
            template = _DUPLICATE if got.state is ClaimState.DONE else _IN_PROGRESS
            return self._finish(template, event, started, position)
        if self.dedup_fail_open:
            logger.warning(
                "census dedup store unavailable (%s); handling %s without deduplication",
                _describe_store_error(got),
                _printable(event.event),
            )
            progress.stage = "unclaimed"
            return None
        logger.error(
            "census dedup store unavailable (%s); answering 503 so Census retries %s later",
            _describe_store_error(got),
            _printable(event.event),
        )
        return self._finish(_UNAVAILABLE, event, started, position)

    def _past_deadline(
        self, progress: _Progress, event: Event, started: float, position: int
    ) -> Outcome:
        """The 503 of a delivery still going at the deadline: its handlers, or its store."""
        if progress.stage == "claimed":
            return self._finish(_DEADLINE, event, started, position)
        logger.error(
            "census dedup store did not answer within the %.1f s deadline; answering 503 "
            "so Census retries %s later",
            self.deadline,
            _printable(event.event),
        )
        return self._finish(_UNAVAILABLE, event, started, position)

    def _settle_failure(
        self,
        error: Exception,
        failed: Callable[..., object] | None,
        event: Event,
        claim: Claim | None,
        started: float,
        position: int,
        store: Callable[..., None] | None,
    ) -> Outcome:
        """Log a handler's failure and pick the answer; with ``store``, settle the claim too."""
        if isinstance(error, NonRetryableError):
            template = _DROPPED
            logger.error(
                "census handler %s gave up on %s for good (answered 200, no retry): %s",
                describe(failed) if failed else "?",
                _describe_event(event),
                error,
                extra={"census_event": event.event, "census_reason": "dropped"},
            )
        else:
            template = _HANDLER_ERROR
            logger.error(
                "census handler %s failed on %s",
                describe(failed) if failed else "?",
                _describe_event(event),
                exc_info=error,
                extra={"census_event": event.event, "census_reason": "handler_error"},
            )
        if store is not None:
            store(claim, done=template.ok)
        return self._finish(template, event, started, position)

    def _finish(
        self,
        template: Outcome,
        event: Event,
        started: float,
        position: int,
        result: object = None,
    ) -> Outcome:
        """Build the answer from ``template`` for ``event``; count it and log it."""
        elapsed = perf_counter() - started
        reason = template[4]
        outcome = _new_tuple(
            Outcome, (template[0], template[1], template[2], event, reason, result)
        )
        name = event.event
        self.stats.record(name, reason, elapsed)
        if logger.isEnabledFor(_INFO):
            logger.info(
                "census delivery %s: %s (%d) in %.1f ms, secret #%d [%s]",
                _describe_event(event),
                outcome.reason,
                outcome.status,
                elapsed * 1000,
                position,
                self._secrets.fingerprints[position],
                extra={
                    "census_event": name,
                    "census_reason": outcome.reason,
                    "census_status": outcome.status,
                    "census_ms": elapsed * 1000,
                    "census_secret": position,
                },
            )
        if self.slow_handling is not None and elapsed > self.slow_handling:
            logger.warning(
                "census delivery %s took %.1f s, over the %.1f s budget (Census gives up "
                "after 10 s): hand slow work to a queue",
                _describe_event(event),
                elapsed,
                self.slow_handling,
            )
        return outcome

    # -- resources ---------------------------------------------------------------------

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        executor = self._executor
        if executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = concurrent.futures.ThreadPoolExecutor(
                        max_workers=self._max_threads, thread_name_prefix="census-receiver"
                    )
                executor = self._executor
        return executor

    def close(self) -> None:
        """Stop the receiver's worker threads and private event loop, if started.

        Handlers still running in them finish first. Registration stays; the
        receiver starts new threads if used again.
        """
        with self._lock:
            executor, self._executor = self._executor, None
            loop_thread, self._loop_thread = self._loop_thread, None
        if executor is not None:
            executor.shutdown(wait=True)
        if loop_thread is not None:
            loop_thread.stop()


class _Progress:
    """How far a deduplicated delivery got, read when its deadline passes."""

    __slots__ = ("stage",)

    def __init__(self) -> None:
        #: "claiming", then "claimed", or "unclaimed" when the store failed open.
        self.stage = "claiming"


class _LoopThread:
    """A private event loop in a daemon thread, for async handlers under ``handle``.

    One loop serves every call, so async clients created by one handler call
    stay usable in the next; it stops with ``close()`` or when the receiver is
    garbage-collected.
    """

    def __init__(self, owner: WebhookReceiver) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name="census-receiver-loop", daemon=True)
        self.thread.start()
        self._finalizer = weakref.finalize(owner, _stop_loop, self.loop, self.thread)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def run(self, awaitable: Awaitable[Any]) -> Any:
        if threading.current_thread() is self.thread:
            raise RuntimeError(
                "receiver.handle cannot be called from one of its own async handlers"
            )

        async def wrap() -> Any:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result()

    def stop(self) -> None:
        self._finalizer()


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    if not loop.is_closed():
        loop.call_soon_threadsafe(loop.stop)
    if thread is not threading.current_thread():
        thread.join(timeout=5)


def _printable(value: object, limit: int = 64) -> str:
    """Verified payload text for a log line or a message: one short, escaped line."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _describe_event(event: Event) -> str:
    return (
        f"{_printable(event.event)} workspace={_printable(event.workspace_id)} "
        f"sync={_printable(event.sync_id)} run={_printable(event.sync_run_id)}"
    )


def _describe_store_error(exc: Exception) -> str:
    # The exception text of a store client may carry a connection URL with a
    # password; name the type, and our own DedupUnavailable's message.
    if isinstance(exc, DedupUnavailable):
        return str(exc)
    return type(exc).__name__


def _store_error(exc: Exception, done: bool) -> None:
    if done:
        logger.warning(
            "census dedup store unavailable (%s) after the handlers succeeded; the delivery "
            "was answered 200 but may be handled again if Census retries it",
            _describe_store_error(exc),
        )
    else:
        logger.warning(
            "census dedup store unavailable (%s) while releasing a failed delivery; its "
            "claim expires after the store's lease and a later retry runs it",
            _describe_store_error(exc),
        )
