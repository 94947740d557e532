"""Registration: the handlers and hooks a receiver runs, and the decorators that add them.

No I/O. ``Registration`` is the part of ``WebhookReceiver`` users write against
at import time: ``@receiver.on(...)`` for handlers (kept by a ``Router``),
``@receiver.on_error`` for failures, and, with a journal,
``@receiver.on_run_finished`` and ``@receiver.on_run_overdue(after=...)`` for
sync runs. Mistakes are caught here, when the module registering them is
imported, not at the first delivery.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConfigurationError
from .routing import Route, Router, check_registration

if TYPE_CHECKING:
    from ._types import ErrorHook, RunHook
    from .journal.base import Journal

__all__ = ["Registration"]

_H = TypeVar("_H", bound=Callable[..., Any])
_E = TypeVar("_E", bound=Callable[..., Any])


class Registration:
    """Handlers by event pattern, error hooks, and sync-run hooks, in registration order."""

    #: The journal the run hooks need (set by the receiver).
    journal: Journal | None = None

    def __init__(self) -> None:
        self._router = Router()
        self._error_hooks: list[ErrorHook] = []
        self._run_hooks: list[RunHook] = []
        self._overdue_hooks: list[tuple[timedelta, RunHook]] = []

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
            ConfigurationError: if no pattern is given, a pattern is not a string,
                or ``@receiver.on`` is written without parentheses.

        Warns:
            RegistrationWarning: for an event name, filter field or filter value that
                no documented Census payload carries (with the closest one).
        """
        patterns_t = check_registration(patterns, filters, stacklevel=2)

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

    def on_run_finished(self, hook: _E) -> _E:
        """Register a function called as ``hook(run)`` once per finished sync run.

        ``run`` is the ``RunRecord`` (succeeded or failed). The hook runs once per
        run across processes and hosts, as part of handling the delivery that
        finished the run, with the same answer and retry rules as a handler: if
        it raises, that delivery is answered 500 and Census's retry calls it
        again. Needs a journal. May be ``async def``.

        Raises:
            ConfigurationError: if ``hook`` is not callable, or there is no journal.
        """
        self._needs_journal("on_run_finished")
        if not callable(hook):
            raise ConfigurationError("an on_run_finished hook must be callable")
        self._run_hooks.append(hook)
        return hook

    def on_run_overdue(self, *, after: timedelta) -> Callable[[_E], _E]:
        """Register a function called as ``hook(run)`` once per run overdue by ``after``.

        A run is overdue when it was triggered or started and has not finished
        within ``after``. The worker (``run_pending``, ``census-receiver work``)
        checks on every pass. Needs a journal. May be ``async def``.

        Args:
            after: how long a run may take before it counts as overdue.

        Raises:
            ConfigurationError: if ``after`` is not a positive ``timedelta``, or
                there is no journal.
        """
        self._needs_journal("on_run_overdue")
        if not isinstance(after, timedelta) or after <= timedelta(0):
            raise ConfigurationError(
                "after must be a positive timedelta, e.g. on_run_overdue(after=timedelta(hours=2))"
            )

        def register(hook: _E) -> _E:
            if not callable(hook):
                raise ConfigurationError("an on_run_overdue hook must be callable")
            self._overdue_hooks.append((after, hook))
            return hook

        return register

    def _needs_journal(self, what: str) -> None:
        if self.journal is None:
            raise ConfigurationError(
                f"{what} needs a journal: build the receiver with journal=SQLiteJournal(path)"
            )
