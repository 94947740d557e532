"""The handler registry: which functions run for an event, in which order.

No I/O, no web framework. Finding handlers is a pure lookup: each route holds
shell-style patterns (``*`` spans dots, so ``"*"`` matches every event) and
optional filters on payload fields. ``handlers_for`` returns every matching
route in registration order; matches by name are cached per event name.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fnmatch import translate
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, shown_value

if TYPE_CHECKING:
    from ._types import Handler
    from .events import Event

__all__ = ["Route", "Router", "is_async_callable"]

_MISSING = object()
_CHOICES = (tuple, list, set, frozenset)  # a filter value that lists allowed values
_CACHE_LIMIT = 256  # distinct event names remembered; Census has seven


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` returns a coroutine (``async def``, partials, ``async __call__``)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    )


@dataclass(frozen=True, slots=True)
class Route:
    """One registration: a handler, the patterns that select it, and its filters."""

    handler: Handler
    patterns: tuple[str, ...]
    filters: tuple[tuple[str, Any], ...]
    is_async: bool
    _regex: re.Pattern[str]

    def matches_name(self, name: str) -> bool:
        """Whether the event name matches one of the patterns."""
        return self._regex.fullmatch(name) is not None

    def accepts(self, event: Event) -> bool:
        """Whether every filter holds for the event's payload."""
        raw = event.raw
        for key, wanted in self.filters:
            value = raw.get(key, _MISSING)
            if callable(wanted):
                if value is _MISSING or not wanted(value):
                    return False
            elif isinstance(wanted, _CHOICES):
                if value is _MISSING or value not in wanted:
                    return False
            elif value is _MISSING or value != wanted or type(value) is not type(wanted):
                return False
        return True


def _compile(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{translate(p)})" for p in patterns))


class Router:
    """Handlers by event pattern, kept in registration order."""

    __slots__ = ("_by_name", "_routes")

    def __init__(self) -> None:
        self._routes: list[Route] = []
        # event name -> (routes matching it by name, whether any of them has filters)
        self._by_name: dict[str, tuple[tuple[Route, ...], bool]] = {}

    def __len__(self) -> int:
        return len(self._routes)

    @property
    def routes(self) -> tuple[Route, ...]:
        """Every registration, in order."""
        return tuple(self._routes)

    def add(self, handler: Handler, patterns: tuple[str, ...], filters: Mapping[str, Any]) -> Route:
        """Register ``handler`` for events matching any of ``patterns`` and all ``filters``.

        Args:
            handler: a function (sync or async) taking the event.
            patterns: event names or shell-style patterns (``"sync.alert.*"``, ``"*"``).
            filters: payload field values the event must have; a tuple, list or set
                lists allowed values, and a callable is a predicate called with the
                field's value (a missing field never matches).

        Returns:
            The new route.

        Raises:
            ConfigurationError: if there is no pattern, a pattern is not a non-empty
                string, or the handler is not callable.
        """
        if not patterns:
            raise ConfigurationError("name at least one event, e.g. on('sync.failed') or on('*')")
        for pattern in patterns:
            if not isinstance(pattern, str) or not pattern:
                raise ConfigurationError(
                    "event patterns must be non-empty strings, not "
                    + ("an empty string" if pattern == "" else shown_value(pattern))
                )
        if not callable(handler):
            raise ConfigurationError(f"a handler must be callable, not {type(handler).__name__}")
        route = Route(
            handler=handler,
            patterns=patterns,
            filters=tuple(filters.items()),
            is_async=is_async_callable(handler),
            _regex=_compile(patterns),
        )
        self._routes.append(route)
        self._by_name.clear()
        return route

    def handlers_for(self, event: Event) -> tuple[Route, ...]:
        """Every route that applies to ``event``, in registration order."""
        name = event.event
        cached = self._by_name.get(name)
        if cached is None:
            by_name = tuple(r for r in self._routes if r.matches_name(name))
            cached = (by_name, any(r.filters for r in by_name))
            if len(self._by_name) >= _CACHE_LIMIT:
                self._by_name.clear()
            self._by_name[name] = cached
        by_name, filtered = cached
        if not filtered:
            return by_name
        return tuple(r for r in by_name if not r.filters or r.accepts(event))


def describe(handler: Callable[..., object]) -> str:
    """A readable name for a handler, for logs."""
    module = getattr(handler, "__module__", None)
    qualname = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{module}.{qualname}" if module else qualname
