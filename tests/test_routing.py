"""The handler registry: patterns, filters, order and caching."""

from __future__ import annotations

import functools
import linecache
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from census_receiver import ConfigurationError, Event, SyncFailed, parse_event
from census_receiver._types import Handler
from census_receiver.routing import (
    RegistrationWarning,
    Router,
    check_registration,
    describe,
    is_async_callable,
)
from census_receiver.testing import EVENT_NAMES, make_body


def event(name: str, **fields: Any) -> Event:
    return parse_event(make_body(name, **fields))


def noop(e: Event) -> None:
    return None


def names(router: Router, e: Event) -> list[str]:
    return [r.patterns[0] for r in router.handlers_for(e)]


def test_exact_name_matches_only_that_event() -> None:
    router = Router()
    router.add(noop, ("sync.failed",), {})
    assert len(router.handlers_for(event("sync.failed"))) == 1
    assert router.handlers_for(event("sync.success")) == ()


def test_wildcard_spans_dots() -> None:
    router = Router()
    router.add(noop, ("*",), {})
    router.add(noop, ("sync.*",), {})
    router.add(noop, ("sync.alert.*",), {})
    assert names(router, event("sync.alert.raised")) == ["*", "sync.*", "sync.alert.*"]
    assert names(router, event("sync.started")) == ["*", "sync.*"]
    assert names(router, event("other.thing")) == ["*"]


def test_character_classes_and_question_mark_work() -> None:
    router = Router()
    router.add(noop, ("sync.s[tu]*",), {})
    router.add(noop, ("sync.faile?",), {})
    assert len(router.handlers_for(event("sync.started"))) == 1
    assert len(router.handlers_for(event("sync.success"))) == 1
    assert len(router.handlers_for(event("sync.failed"))) == 1
    assert router.handlers_for(event("sync.triggered")) == ()


def test_pattern_must_match_whole_name() -> None:
    router = Router()
    router.add(noop, ("sync.alert",), {})
    assert router.handlers_for(event("sync.alert.raised")) == ()


def test_several_patterns_on_one_route_match_once() -> None:
    router = Router()
    router.add(noop, ("sync.failed", "sync.*"), {})
    assert len(router.handlers_for(event("sync.failed"))) == 1


def test_registration_order_is_kept_whatever_matched() -> None:
    router = Router()
    calls: list[int] = []
    for i, pattern in enumerate(["sync.failed", "*", "sync.f*", "sync.failed"]):
        router.add(functools.partial(lambda i, e: calls.append(i), i), (pattern,), {})
    for route in router.handlers_for(event("sync.failed")):
        route.handler(event("sync.failed"))
    assert calls == [0, 1, 2, 3]


def test_filter_on_field_value() -> None:
    router = Router()
    router.add(noop, ("sync.completed",), {"status": "emergency"})
    assert router.handlers_for(event("sync.completed", status="ok")) == ()
    assert len(router.handlers_for(event("sync.completed", status="emergency"))) == 1


def test_filter_with_several_allowed_values() -> None:
    router = Router()
    router.add(noop, ("*",), {"sync_id": (1, 2)})
    assert len(router.handlers_for(event("sync.failed", sync_id=2))) == 1
    assert router.handlers_for(event("sync.failed", sync_id=3)) == ()


def test_filter_with_predicate() -> None:
    router = Router()
    router.add(noop, ("*",), {"sync_id": lambda v: v > 100})
    assert len(router.handlers_for(event("sync.failed", sync_id=101))) == 1
    assert router.handlers_for(event("sync.failed", sync_id=100)) == ()


def test_filter_on_missing_field_never_matches() -> None:
    router = Router()
    router.add(noop, ("*",), {"status": "ok"})
    router.add(noop, ("*",), {"status": lambda v: True})
    assert router.handlers_for(event("sync.failed")) == ()


def test_filter_does_not_confuse_true_with_one() -> None:
    router = Router()
    router.add(noop, ("*",), {"flag": 1})
    assert router.handlers_for(event("sync.failed", flag=True)) == ()
    assert len(router.handlers_for(event("sync.failed", flag=1))) == 1


def test_cache_is_invalidated_by_new_registration() -> None:
    router = Router()
    router.add(noop, ("sync.failed",), {})
    assert len(router.handlers_for(event("sync.failed"))) == 1
    router.add(noop, ("*",), {})
    assert len(router.handlers_for(event("sync.failed"))) == 2


def test_cache_stays_bounded_with_many_names() -> None:
    router = Router()
    router.add(noop, ("*",), {})
    for i in range(1000):
        assert len(router.handlers_for(event(f"custom.{i}"))) == 1
    assert len(router._by_name) <= 256


@pytest.mark.parametrize("patterns", [(), ("",), (3,)])
def test_bad_patterns_are_refused(patterns: tuple[Any, ...]) -> None:
    with pytest.raises(ConfigurationError):
        Router().add(noop, patterns, {})


def test_non_callable_handler_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="callable"):
        Router().add("nope", ("*",), {})  # type: ignore[arg-type]


def test_async_detection_sees_through_partials_and_callable_objects() -> None:
    async def coro(e: Event) -> None:
        return None

    class AsyncCallable:
        async def __call__(self, e: Event) -> None:
            return None

    assert is_async_callable(coro)
    assert is_async_callable(functools.partial(coro))
    assert is_async_callable(AsyncCallable())
    assert not is_async_callable(noop)


def test_describe_names_handlers() -> None:
    assert describe(noop) == "tests.test_routing.noop" or describe(noop).endswith(
        "test_routing.noop"
    )
    assert "partial" in describe(functools.partial(noop))


def test_every_documented_name_is_routable() -> None:
    router = Router()
    router.add(noop, EVENT_NAMES, {})
    assert all(len(router.handlers_for(event(n))) == 1 for n in EVENT_NAMES)


def test_bad_pattern_is_named_by_type_not_echoed() -> None:
    with pytest.raises(ConfigurationError) as info:
        Router().add(noop, (b"whsec_pasted_here",), {})  # type: ignore[arg-type]
    assert "whsec_pasted_here" not in str(info.value)
    assert "bytes" in str(info.value)


# -- registration checks ---------------------------------------------------------------------


def on(*patterns: object, **filters: Any) -> Callable[[Handler], Handler]:
    """Stands in for ``WebhookReceiver.on``: checks eagerly, registers when decorating."""
    checked = check_registration(patterns, filters, stacklevel=2)

    def register(handler: Handler) -> Handler:
        Router().add(handler, checked, filters)
        return handler

    return register


def silently(patterns: tuple[object, ...], filters: Mapping[str, Any]) -> tuple[str, ...]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return check_registration(patterns, filters)


def doubts(patterns: tuple[object, ...], filters: Mapping[str, Any]) -> list[str]:
    with pytest.warns(RegistrationWarning) as record:
        check_registration(patterns, filters)
    return [str(w.message) for w in record]


def test_on_without_parentheses_raises_with_the_fix() -> None:
    with pytest.raises(ConfigurationError) as info:

        @on
        def page_oncall(e: Event) -> None:
            return None

    message = str(info.value)
    assert message.startswith(
        "write @receiver.on('sync.failed') (or on('*') for every event): "
        "@receiver.on needs the event names in parentheses"
    )
    assert message.endswith("page_oncall")


def test_router_add_names_the_missing_parentheses_too() -> None:
    with pytest.raises(ConfigurationError, match="needs the event names in parentheses"):
        Router().add(noop, (noop,), {})  # type: ignore[arg-type]


def test_event_model_as_pattern_is_refused_with_its_name() -> None:
    with pytest.raises(ConfigurationError, match=re.escape("write on('sync.failed')")):
        check_registration((SyncFailed,), {})


def test_list_of_names_as_one_pattern_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigurationError, match="separate arguments"):
        check_registration((["sync.failed", "sync.success"],), {})


@pytest.mark.parametrize("patterns", [(), ("",), (3,), (b"sync.failed",)])
def test_check_registration_refuses_what_router_refuses(patterns: tuple[object, ...]) -> None:
    with pytest.raises(ConfigurationError):
        check_registration(patterns, {})


def test_check_registration_returns_the_patterns() -> None:
    assert silently(("sync.failed", "sync.alert.*"), {}) == ("sync.failed", "sync.alert.*")


@pytest.mark.parametrize("name", ["sync.faild", "sync_failed", "Sync.Failed"])
def test_misspelt_event_name_warns_with_the_closest_documented_name(name: str) -> None:
    assert doubts((name,), {}) == [
        f"{name!r} is not a documented Census event; did you mean 'sync.failed'? "
        "(unknown names are allowed: Census may add events)"
    ]


def test_unknown_event_name_without_close_match_warns_without_a_suggestion() -> None:
    [message] = doubts(("order.created",), {})
    assert message.startswith("'order.created' is not a documented Census event")
    assert "did you mean" not in message
    assert "sync.alert.resolved" in message  # the documented names are listed


def test_event_family_without_wildcard_suggests_the_wildcard() -> None:
    [message] = doubts(("sync.alert",), {})
    assert "did you mean 'sync.alert.*'?" in message


@pytest.mark.parametrize(
    "pattern",
    [*EVENT_NAMES, "*", "sync.*", "sync.alert.*", "sync.faile?", "sync.[fs]*", "custom.*"],
)
def test_documented_names_and_wildcards_register_silently(pattern: str) -> None:
    silently((pattern,), {})


def test_warning_points_at_the_decorator_line() -> None:
    with pytest.warns(RegistrationWarning) as record:

        @on("sync.faild")
        def handler(e: Event) -> None:
            return None

    assert record[0].filename == __file__
    assert linecache.getline(record[0].filename, record[0].lineno).strip() == '@on("sync.faild")'


def test_warning_points_at_the_caller_of_check_registration_by_default() -> None:
    with pytest.warns(RegistrationWarning) as record:
        check_registration(("sync.faild",), {})
    assert record[0].filename == __file__
    assert "check_registration((" in linecache.getline(record[0].filename, record[0].lineno)


def test_registration_warning_is_a_user_warning() -> None:
    assert issubclass(RegistrationWarning, UserWarning)


def test_misspelt_filter_field_warns_with_the_closest_documented_field() -> None:
    assert doubts(("sync.completed",), {"statuss": "ok"}) == [
        "filter 'statuss' is not a documented field of 'sync.completed'; did you mean "
        "'status'? (unknown fields are allowed: Census may add fields)"
    ]


def test_unknown_filter_field_without_close_match_warns_without_a_suggestion() -> None:
    [message] = doubts(("*",), {"flag": 1})
    assert message.startswith("filter 'flag' is not a documented field of any Census event")
    assert "did you mean" not in message


def test_filter_field_of_another_event_warns_naming_the_event_that_carries_it() -> None:
    [message] = doubts(("sync.failed",), {"status": "emergency"})
    assert "only 'sync.completed' carries it" in message


def test_filter_fields_are_those_of_every_event_a_wildcard_selects() -> None:
    silently(("sync.*",), {"status": "ok", "alert_type": "FailureAlertConfiguration"})
    [message] = doubts(("sync.alert.*",), {"alert_typ": "FailureAlertConfiguration"})
    assert "'sync.alert.raised' or 'sync.alert.resolved'; did you mean 'alert_type'?" in message


def test_filters_are_not_checked_for_events_census_has_not_documented() -> None:
    silently(("custom.*",), {"flag": 1})
    # The unknown name is warned about; its fields are unknown, so the filter is not.
    assert len(doubts(("sync.failed", "custom.event"), {"flag": 1})) == 1


def test_misspelt_status_value_warns_with_the_closest_documented_value() -> None:
    assert doubts(("sync.completed",), {"status": "emergncy"}) == [
        "status='emergncy' matches no documented Census payload; did you mean 'emergency'? "
        "(status is 'ok' or 'emergency')"
    ]


def test_each_listed_filter_value_is_checked() -> None:
    messages = doubts(("sync.completed",), {"status": ("ok", "emergncy", "failed")})
    assert len(messages) == 2
    assert "did you mean 'emergency'?" in messages[0]
    assert "status='failed'" in messages[1] and "did you mean" not in messages[1]


def test_predicate_filter_values_are_not_checked() -> None:
    silently(("sync.completed",), {"status": lambda status: status.startswith("emer")})


def test_documented_filter_values_register_silently() -> None:
    silently(("sync.completed",), {"status": "emergency", "sync_id": 3167956})
    silently(("sync.completed",), {"status": ["ok", "emergency"], "workspace_id": {3167, 4242}})
    silently(("sync.alert.raised",), {"alert_type": "FailureAlertConfiguration"})


def test_id_filter_given_as_text_warns_that_census_sends_integers() -> None:
    assert doubts(("*",), {"workspace_id": "3167"}) == [
        "workspace_id='3167' matches no documented Census payload: Census sends "
        "workspace_id as an integer; did you mean workspace_id=3167?"
    ]


def test_handler_without_parameters_is_refused_with_the_call_it_gets() -> None:
    def h() -> None:
        return None

    with pytest.raises(ConfigurationError) as info:
        Router().add(h, ("*",), {})  # type: ignore[arg-type]
    assert str(info.value) == "handler h takes no argument; a handler is called as h(event)"


def test_handler_with_a_second_required_parameter_is_refused() -> None:
    def h(event: Event, db: object) -> None:
        return None

    with pytest.raises(ConfigurationError) as info:
        Router().add(h, ("*",), {})  # type: ignore[arg-type]
    assert str(info.value) == (
        "handler h also requires 'db'; a handler is called as h(event): give it a default"
    )


def test_handler_with_a_required_keyword_only_parameter_is_refused() -> None:
    def h(event: Event, *, db: object) -> None:
        return None

    with pytest.raises(ConfigurationError, match="handler h also requires 'db'"):
        Router().add(h, ("*",), {})  # type: ignore[arg-type]


def test_partial_that_binds_every_argument_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=re.escape("called as partial(noop)(event)")):
        Router().add(functools.partial(noop, event("sync.failed")), ("*",), {})


def test_callable_object_that_takes_no_event_is_refused_naming_its_call() -> None:
    class Hook:
        def __call__(self) -> None:
            return None

    with pytest.raises(ConfigurationError, match=re.escape("called as Hook.__call__(event)")):
        Router().add(Hook(), ("*",), {})  # type: ignore[arg-type]


def test_handler_whose_signature_cannot_be_read_is_accepted() -> None:
    class Opaque:
        """Like builtins that have no signature: ``inspect.signature`` fails on it."""

        __signature__ = "not a signature"

        def __call__(self) -> None:
            return None

    router = Router()
    router.add(Opaque(), ("*",), {})  # type: ignore[arg-type]
    assert len(router) == 1


def test_refused_handler_is_not_registered() -> None:
    router = Router()
    with pytest.raises(ConfigurationError):
        router.add(lambda: None, ("*",), {})  # type: ignore[arg-type,misc]
    assert len(router) == 0


class Pager:
    """A handler class: each event builds one."""

    def __init__(self, event: Event) -> None:
        self.event = event

    def __call__(self, event: Event, retries: int = 3) -> None:
        return None

    def page(self, event: Event) -> None:
        return None


async def handle_async(event: Event) -> None:
    return None


def takes_anything(*args: object, **kwargs: object) -> None:
    return None


def injects(func: Callable[[Event, str], None]) -> Handler:
    """A decorator that supplies a second argument, as dependency injectors do."""

    @functools.wraps(func)
    def wrapper(event: Event) -> None:
        func(event, "db")

    return wrapper


@injects
def needs_db(event: Event, db: str) -> None:
    return None


@pytest.mark.parametrize(
    "handler",
    [
        pytest.param(noop, id="function"),
        pytest.param(lambda e: None, id="lambda"),
        pytest.param(handle_async, id="async-function"),
        pytest.param(Pager, id="class"),
        pytest.param(Pager(event("sync.failed")), id="callable-object-with-defaults"),
        pytest.param(Pager(event("sync.failed")).page, id="bound-method"),
        pytest.param(functools.partial(takes_anything, 1), id="partial"),
        pytest.param(takes_anything, id="variadic"),
        pytest.param(needs_db, id="wrapper-that-supplies-an-argument"),
        pytest.param(print, id="builtin"),
        pytest.param([].append, id="builtin-method"),
    ],
)
def test_handlers_callable_with_the_event_are_accepted(handler: Handler) -> None:
    router = Router()
    router.add(handler, ("*",), {})
    assert len(router) == 1
