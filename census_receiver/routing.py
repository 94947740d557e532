"""The handler registry: which functions run for an event, in which order.

No I/O, no web framework. Finding handlers is a pure lookup: each route holds
shell-style patterns (``*`` spans dots, so ``"*"`` matches every event) and
optional filters on payload fields. ``handlers_for`` returns every matching
route in registration order; matches by name are cached per event name.

Registration mistakes surface when the module that registers a handler is
imported, not when the first delivery finds nothing to run. ``check_registration``
refuses ``@receiver.on`` written without parentheses and warns, with a
``RegistrationWarning``, about event names, filter fields and filter values that
no documented Census payload carries; ``Router.add`` refuses a handler that
cannot be called with the event. Unknown names and fields are warned about, not
refused, because Census may add events and fields (census/SPEC.md).
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from fnmatch import translate
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, shown_value
from .events import EVENT_TYPES, Event

if TYPE_CHECKING:
    from ._types import Handler

__all__ = ["RegistrationWarning", "Route", "Router", "check_registration", "is_async_callable"]

_MISSING = object()
_CHOICES = (tuple, list, set, frozenset)  # a filter value that lists allowed values
_CACHE_LIMIT = 256  # distinct event names remembered; Census has seven
_WILDCARDS = frozenset("*?[")

# The documented payload of each event (census/SPEC.md), for registration checks
# only: delivery never consults it, since Census may send more than it documents.
_COMMON_FIELDS = ("event", "workspace_id", "sync_id", "sync_run_id")
_ALERT_FIELDS = ("alert_instance_id", "alert_type", "message", "details", "followup_url")
_MORE_FIELDS = {
    "sync.completed": ("status",),
    "sync.alert.raised": _ALERT_FIELDS,
    "sync.alert.resolved": _ALERT_FIELDS,
}
_FIELDS: Mapping[str, frozenset[str]] = {
    name: frozenset(_COMMON_FIELDS + _MORE_FIELDS.get(name, ())) for name in EVENT_TYPES
}
_VALUES: Mapping[str, tuple[str, ...]] = {"status": ("ok", "emergency")}  # closed value lists
_INTEGER_FIELDS = frozenset({"workspace_id", "sync_id", "sync_run_id", "alert_instance_id"})

_Kind = inspect.Parameter
_POSITIONAL = frozenset({_Kind.POSITIONAL_ONLY, _Kind.POSITIONAL_OR_KEYWORD, _Kind.VAR_POSITIONAL})
_VARIADIC = frozenset({_Kind.VAR_POSITIONAL, _Kind.VAR_KEYWORD})


class RegistrationWarning(UserWarning):
    """A registration that is allowed but probably a mistake.

    Issued at registration for an event name, a filter field or a filter value
    that no documented Census payload carries; the message names the closest
    documented one. A handler waiting for an event Census has not documented yet
    can silence it with ``warnings.filterwarnings("ignore", category=RegistrationWarning)``.
    """


def check_registration(
    patterns: tuple[object, ...], filters: Mapping[str, Any], *, stacklevel: int = 1
) -> tuple[str, ...]:
    """Check the arguments of ``receiver.on(*patterns, **filters)`` before any handler.

    Meant to run inside ``on`` itself, so that ``@receiver.on`` without
    parentheses fails on the decorator line and the warnings point at it.

    Args:
        patterns: the positional arguments given to ``on``.
        filters: the keyword arguments given to ``on``.
        stacklevel: the frame the warnings are reported at, counted from the
            caller of this function as ``warnings.warn`` counts from its own:
            1 is the caller, 2 the caller's caller (what ``on`` passes, so that
            the warning names the user's decorator line).

    Returns:
        The patterns, each a non-empty string.

    Raises:
        ConfigurationError: if there is no pattern, a pattern is not a non-empty
            string, or ``on`` was given the function itself (``@receiver.on``
            without parentheses).

    Warns:
        RegistrationWarning: for a name without wildcards that is not a documented
            event, a filter field that none of the documented events the patterns
            select carries, or a filter value those payloads never carry.
    """
    checked = _checked_patterns(patterns)
    for message in _doubts(checked, filters):
        warnings.warn(message, RegistrationWarning, stacklevel=stacklevel + 1)
    return checked


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
                string, or the handler is not callable or cannot be called with one
                positional argument.
        """
        patterns = _checked_patterns(patterns)
        if not callable(handler):
            raise ConfigurationError(f"a handler must be callable, not {type(handler).__name__}")
        _check_handler(handler)
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


def _checked_patterns(patterns: tuple[object, ...]) -> tuple[str, ...]:
    if not patterns:
        raise ConfigurationError("name at least one event, e.g. on('sync.failed') or on('*')")
    checked: list[str] = []
    for pattern in patterns:
        if isinstance(pattern, str) and pattern:
            checked.append(pattern)
        elif isinstance(pattern, type) and issubclass(pattern, Event):
            name = pattern.name or "*"
            raise ConfigurationError(
                f"name events by string: write on({name!r}), not on({pattern.__name__})"
            )
        elif callable(pattern) and len(patterns) == 1:
            # Python called on(func): the decorator line lacks its parentheses.
            raise ConfigurationError(
                "write @receiver.on('sync.failed') (or on('*') for every event): "
                "@receiver.on needs the event names in parentheses, and got the function "
                + _handler_name(pattern)
            )
        elif isinstance(pattern, _CHOICES):
            raise ConfigurationError(
                "give several events as separate arguments, on('sync.failed', 'sync.success') "
                f"or on(*names), not one {type(pattern).__name__}"
            )
        else:
            raise ConfigurationError(
                "event patterns must be non-empty strings, not "
                + ("an empty string" if pattern == "" else shown_value(pattern))
            )
    return tuple(checked)


def _doubts(patterns: tuple[str, ...], filters: Mapping[str, Any]) -> list[str]:
    """The warnings a registration deserves, one message each."""
    doubts = [doubt for doubt in map(_doubt_about_name, patterns) if doubt]
    selected = _selected_events(patterns)
    if selected:
        for key, wanted in filters.items():
            doubts.extend(_doubts_about_filter(key, wanted, selected))
    return doubts


def _doubt_about_name(pattern: str) -> str | None:
    if pattern in _FIELDS or _WILDCARDS.intersection(pattern):
        return None
    normal = pattern.lower().replace("_", ".").replace("-", ".")
    if any(name.startswith(normal + ".") for name in _FIELDS):
        closest: str | None = normal + ".*"  # on("sync.alert") meant the family
    else:
        closest = next(iter(difflib.get_close_matches(normal, _FIELDS, n=1)), None)
    if closest is None:
        return (
            f"{pattern!r} is not a documented Census event (unknown names are allowed: "
            f"Census may add events; the documented ones are {', '.join(_FIELDS)})"
        )
    return (
        f"{pattern!r} is not a documented Census event; did you mean {closest!r}? "
        "(unknown names are allowed: Census may add events)"
    )


def _selected_events(patterns: tuple[str, ...]) -> frozenset[str]:
    """The documented events the patterns select; empty if a pattern selects none.

    A pattern that selects no documented event is meant for events Census has
    not documented, whose fields nobody knows, so filters are then not checked.
    """
    selected: set[str] = set()
    for pattern in patterns:
        regex = _compile((pattern,))
        matched = {name for name in _FIELDS if regex.fullmatch(name)}
        if not matched:
            return frozenset()
        selected |= matched
    return frozenset(selected)


def _doubts_about_filter(key: str, wanted: object, selected: frozenset[str]) -> Iterator[str]:
    fields = frozenset().union(*(_FIELDS[name] for name in selected))
    if key not in fields:
        yield _unknown_field(key, selected, fields)
        return
    if callable(wanted):
        return  # a predicate: nothing to check before it runs
    values = wanted if isinstance(wanted, _CHOICES) else (wanted,)
    for value in values:
        doubt = _doubt_about_value(key, value)
        if doubt:
            yield doubt


def _unknown_field(key: str, selected: frozenset[str], fields: frozenset[str]) -> str:
    if len(selected) == len(_FIELDS):
        where = "any Census event"
    else:
        names = [repr(name) for name in _FIELDS if name in selected]  # documented order
        where = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    carriers = [repr(name) for name in _FIELDS if key in _FIELDS[name]]
    if carriers:
        them = " and ".join(carriers)
        verb, those = ("carries", "that event") if len(carriers) == 1 else ("carry", "those events")
        return (
            f"filter {key!r} is not a field of {where}; only {them} {verb} it, "
            f"so register for {those} instead"
        )
    normal = key.lower().replace("-", "_").replace(".", "_")
    closest = difflib.get_close_matches(normal, sorted(fields), n=1)
    hint = f"; did you mean {closest[0]!r}?" if closest else ""
    return (
        f"filter {key!r} is not a documented field of {where}{hint} "
        "(unknown fields are allowed: Census may add fields)"
    )


def _doubt_about_value(key: str, value: object) -> str | None:
    if key in _INTEGER_FIELDS and isinstance(value, str):
        # A common slip: an id read from the environment or a config file is text.
        text = value.strip()
        hint = f"; did you mean {key}={int(text)}?" if text.isdecimal() and len(text) < 20 else ""
        return (
            f"{key}={value!r} matches no documented Census payload: Census sends {key} "
            f"as an integer{hint}"
        )
    known = _VALUES.get(key)
    if known is None or value in known:
        return None
    closest = difflib.get_close_matches(value.lower(), known, n=1) if isinstance(value, str) else []
    hint = f"; did you mean {closest[0]!r}?" if closest else ""
    documented = " or ".join(map(repr, known))
    return f"{key}={value!r} matches no documented Census payload{hint} ({key} is {documented})"


def _handler_name(handler: object) -> str:
    """How to name a handler in a message: the way it would be called."""
    if isinstance(handler, functools.partial):
        return f"partial({_handler_name(handler.func)})"
    name = getattr(handler, "__name__", None)
    if isinstance(name, str):
        return name
    return f"{type(handler).__name__}.__call__"


def _check_handler(handler: Callable[..., object]) -> None:
    """Refuse a handler that cannot be called as ``handler(event)``."""
    try:
        # Not following __wrapped__: a decorator may well change the arguments.
        signature = inspect.signature(handler, follow_wrapped=False)
    except (TypeError, ValueError):
        return  # some builtins have no signature; trust them
    try:
        signature.bind(object())
    except TypeError:
        raise ConfigurationError(_arity_problem(_handler_name(handler), signature)) from None


def _arity_problem(name: str, signature: inspect.Signature) -> str:
    called = f"a handler is called as {name}(event)"
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in _POSITIONAL]
    if not positional:
        return f"handler {name} takes no argument; {called}"
    required = [
        p.name
        for p in params
        if p is not positional[0] and p.default is p.empty and p.kind not in _VARIADIC
    ]
    if not required:  # pragma: no cover - bind() accepts every other signature
        return f"handler {name} cannot be called with one argument; {called}"
    listed = ", ".join(map(repr, required))
    it = "it" if len(required) == 1 else "them"
    return f"handler {name} also requires {listed}; {called}: give {it} a default"
