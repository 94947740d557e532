"""The handler registry: patterns, filters, order and caching."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from census_receiver import ConfigurationError, Event, parse_event
from census_receiver.routing import Router, describe, is_async_callable
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
