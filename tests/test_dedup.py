"""Dedup stores and the receiver's claim / complete / release protocol (in memory).

The Redis store has its own tests against a real redis-server in test_dedup_redis.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from census_receiver import ConfigurationError, DedupUnavailable, Event, Outcome, WebhookReceiver
from census_receiver.dedup import Claim, ClaimState, DedupStore, InMemoryDedupStore, default_key
from census_receiver.testing import make_body, make_delivery

from .conftest import SECRET


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def runner(receiver: WebhookReceiver, mode: str) -> Callable[..., Outcome]:
    if mode == "sync":
        return receiver.handle
    return lambda *a, **k: asyncio.run(receiver.handle_async(*a, **k))


# -- InMemoryDedupStore ---------------------------------------------------------------------


def test_claim_then_complete_then_duplicate() -> None:
    store = InMemoryDedupStore()
    claim = store.claim("k")
    assert claim.state is ClaimState.CLAIMED and claim.token
    assert store.claim("k").state is ClaimState.IN_PROGRESS
    store.complete(claim)
    assert store.claim("k").state is ClaimState.DONE


def test_release_lets_the_next_claim_win() -> None:
    store = InMemoryDedupStore()
    claim = store.claim("k")
    store.release(claim)
    assert store.claim("k").state is ClaimState.CLAIMED


def test_claim_expires_after_lease() -> None:
    clock = Clock()
    store = InMemoryDedupStore(ttl=100, lease=10, clock=clock)
    stale = store.claim("k")
    clock.now += 10.5
    fresh = store.claim("k")
    assert fresh.state is ClaimState.CLAIMED
    # The crashed holder coming back cannot undo the new claim.
    store.complete(stale)
    store.release(stale)
    assert store.claim("k").state is ClaimState.IN_PROGRESS
    store.complete(fresh)
    assert store.claim("k").state is ClaimState.DONE


def test_done_expires_after_ttl_and_memory_is_reclaimed() -> None:
    clock = Clock()
    store = InMemoryDedupStore(ttl=100, lease=10, clock=clock)
    for i in range(50):
        store.complete(store.claim(f"k{i}"))
    assert len(store) == 50
    clock.now += 99
    assert store.claim("k0").state is ClaimState.DONE
    clock.now += 2
    assert len(store) == 0
    assert len(store._expiries) == 0


@pytest.mark.parametrize(("ttl", "lease"), [(0, 1), (10, 0), (10, -1), (5, 10)])
def test_bad_durations_are_refused(ttl: float, lease: float) -> None:
    with pytest.raises(ConfigurationError):
        InMemoryDedupStore(ttl=ttl, lease=lease)


def test_concurrent_claims_have_one_winner() -> None:
    store = InMemoryDedupStore()
    with ThreadPoolExecutor(8) as pool:
        states = list(pool.map(lambda _: store.claim("k").state, range(200)))
    assert states.count(ClaimState.CLAIMED) == 1


#: What ``async_claim_sequence`` must see from any store.
ASYNC_SEQUENCE = [
    ClaimState.CLAIMED,  # a fresh key
    ClaimState.IN_PROGRESS,  # claimed again before it settled
    ClaimState.DONE,  # claimed after complete
    ClaimState.CLAIMED,  # claimed after release
]


async def async_claim_sequence(store: DedupStore) -> list[ClaimState]:
    """Claim, claim again, complete, claim; claim and release another key, claim it again."""
    claim = await store.claim_async("k")
    second = await store.claim_async("k")
    await store.complete_async(claim)
    third = await store.claim_async("k")
    other = await store.claim_async("j")
    await store.release_async(other)
    return [claim.state, second.state, third.state, (await store.claim_async("j")).state]


def test_async_variants_behave_like_sync_ones() -> None:
    assert asyncio.run(async_claim_sequence(InMemoryDedupStore())) == ASYNC_SEQUENCE


# -- default_key -------------------------------------------------------------------------------


def event_and_body(name: str, **fields: Any) -> tuple[Event, bytes]:
    from census_receiver import parse_event

    body = make_body(name, **fields)
    return parse_event(body), body


def test_default_key_uses_identity_fields() -> None:
    assert default_key(*event_and_body("sync.failed")) == "sync.failed:3167:3167956:324402082"
    # Same ids, another field changed: same delivery identity.
    assert default_key(*event_and_body("sync.failed", note="x")) == default_key(
        *event_and_body("sync.failed")
    )


def test_default_key_separates_events_runs_and_alert_instances() -> None:
    keys = {
        default_key(*event_and_body("sync.failed")),
        default_key(*event_and_body("sync.completed")),
        default_key(*event_and_body("sync.failed", sync_run_id=1)),
        default_key(*event_and_body("sync.alert.raised")),
        default_key(*event_and_body("sync.alert.raised", alert_instance_id=2)),
        default_key(*event_and_body("sync.alert.resolved")),
    }
    assert len(keys) == 6


def test_default_key_falls_back_to_body_digest() -> None:
    a = default_key(*event_and_body("custom.thing", workspace_id=None, x=1))
    b = default_key(*event_and_body("custom.thing", workspace_id=None, x=2))
    assert a.startswith("body:") and b.startswith("body:") and a != b


# -- the receiver with a store -------------------------------------------------------------------


def test_six_sequential_deliveries_are_handled_once(mode: str) -> None:
    receiver = WebhookReceiver(SECRET, dedup=InMemoryDedupStore())
    calls: list[Event] = []
    receiver.on("*")(calls.append)
    run = runner(receiver, mode)
    d = make_delivery("sync.failed", secret=SECRET)
    outcomes = [run(d.body, d.headers) for _ in range(6)]
    assert [o.status for o in outcomes] == [200] * 6
    assert [o.reason for o in outcomes] == ["handled"] + ["duplicate"] * 5
    assert outcomes[1].json() == {"status": "duplicate"}
    assert len(calls) == 1
    receiver.close()


def test_concurrent_duplicates_are_handled_once_and_others_answered_409() -> None:
    receiver = WebhookReceiver(SECRET, dedup=InMemoryDedupStore())
    started, release = threading.Event(), threading.Event()
    calls: list[Event] = []

    @receiver.on("*")
    def slow(event: Event) -> None:
        calls.append(event)
        started.set()
        release.wait(5)

    d = make_delivery("sync.failed", secret=SECRET)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(receiver.handle, d.body, d.headers)
        assert started.wait(5)
        others = [pool.submit(receiver.handle, d.body, d.headers) for _ in range(5)]
        statuses = [f.result(5).status for f in others]
        release.set()
        assert first.result(5).status == 200
    assert statuses == [409] * 5 and len(calls) == 1
    assert receiver.handle(d.body, d.headers).reason == "duplicate"
    receiver.close()


def test_concurrent_async_duplicates_are_handled_once() -> None:
    receiver = WebhookReceiver(SECRET, dedup=InMemoryDedupStore())
    calls: list[Event] = []

    @receiver.on("*")
    async def handler(event: Event) -> None:
        calls.append(event)
        await asyncio.sleep(0.05)

    d = make_delivery("sync.failed", secret=SECRET)

    async def main() -> list[int]:
        outcomes = await asyncio.gather(
            *(receiver.handle_async(d.body, d.headers) for _ in range(6))
        )
        return sorted(o.status for o in outcomes)

    assert asyncio.run(main()) == [200] + [409] * 5
    assert len(calls) == 1


def test_failure_releases_claim_so_retry_runs_again(mode: str) -> None:
    receiver = WebhookReceiver(SECRET, dedup=InMemoryDedupStore())
    attempts: list[int] = []

    @receiver.on("*")
    def flaky(event: Event) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")

    run = runner(receiver, mode)
    d = make_delivery("sync.failed", secret=SECRET)
    assert [run(d.body, d.headers).status for _ in range(3)] == [500, 200, 200]
    assert len(attempts) == 2
    receiver.close()


def test_non_retryable_failure_is_remembered_as_done(mode: str) -> None:
    from census_receiver import NonRetryableError

    receiver = WebhookReceiver(SECRET, dedup=InMemoryDedupStore())
    attempts: list[int] = []

    @receiver.on("*")
    def hopeless(event: Event) -> None:
        attempts.append(1)
        raise NonRetryableError("gone")

    run = runner(receiver, mode)
    d = make_delivery("sync.failed", secret=SECRET)
    assert [run(d.body, d.headers).reason for _ in range(2)] == ["dropped", "duplicate"]
    assert len(attempts) == 1


def test_crashed_claim_expires_and_a_later_retry_runs(mode: str) -> None:
    clock = Clock()
    store = InMemoryDedupStore(ttl=3600, lease=60, clock=clock)
    receiver = WebhookReceiver(SECRET, dedup=store)
    calls: list[Event] = []
    receiver.on("*")(calls.append)
    d = make_delivery("sync.failed", secret=SECRET)
    # A worker claimed this delivery, then its process died before settling.
    from census_receiver.dedup import default_key as key_of

    store.claim(key_of(receiver.verify_event(d.body, d.headers), d.body))
    run = runner(receiver, mode)
    assert run(d.body, d.headers).status == 409
    clock.now += 61
    assert run(d.body, d.headers).reason == "handled"
    assert len(calls) == 1


def test_unmatched_events_do_not_touch_the_store(mode: str) -> None:
    store = InMemoryDedupStore()
    receiver = WebhookReceiver(SECRET, dedup=store)
    d = make_delivery("sync.failed", secret=SECRET)
    assert runner(receiver, mode)(d.body, d.headers).reason == "ignored"
    assert len(store) == 0


def test_custom_key_function(mode: str) -> None:
    receiver = WebhookReceiver(
        SECRET, dedup=InMemoryDedupStore(), dedup_key=lambda e, b: str(e.sync_id)
    )
    calls: list[Event] = []
    receiver.on("*")(calls.append)
    run = runner(receiver, mode)
    for name in ("sync.started", "sync.failed"):  # same sync id: one key
        d = make_delivery(name, secret=SECRET)
        run(d.body, d.headers)
    assert len(calls) == 1


class BrokenStore(InMemoryDedupStore):
    """A store whose backend is down for claims."""

    def claim(self, key: str) -> Claim:
        raise DedupUnavailable("connection refused")

    async def claim_async(self, key: str) -> Claim:
        raise DedupUnavailable("connection refused")


def test_unreachable_store_fails_closed_with_503(mode: str) -> None:
    receiver = WebhookReceiver(SECRET, dedup=BrokenStore())
    calls: list[Event] = []
    receiver.on("*")(calls.append)
    d = make_delivery("sync.failed", secret=SECRET)
    outcome = runner(receiver, mode)(d.body, d.headers)
    assert (outcome.status, outcome.reason) == (503, "dedup_unavailable") and calls == []


def test_unreachable_store_can_fail_open(mode: str) -> None:
    receiver = WebhookReceiver(SECRET, dedup=BrokenStore(), dedup_fail_open=True)
    calls: list[Event] = []
    receiver.on("*")(calls.append)
    d = make_delivery("sync.failed", secret=SECRET)
    assert runner(receiver, mode)(d.body, d.headers).status == 200 and len(calls) == 1


class HungStore(InMemoryDedupStore):
    """A store that stops answering claims (as a paused server does) until released."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()

    def claim(self, key: str) -> Claim:
        assert self.released.wait(5)
        return super().claim(key)

    async def claim_async(self, key: str) -> Claim:
        for _ in range(500):
            if self.released.is_set():
                return super().claim(key)
            await asyncio.sleep(0.01)
        raise AssertionError("never released")


def test_a_store_that_stops_answering_gets_503_at_the_deadline(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = HungStore()
    receiver = WebhookReceiver(SECRET, dedup=store, deadline=0.1)
    calls: list[Event] = []
    receiver.on("*")(calls.append)
    d = make_delivery("sync.failed", secret=SECRET)

    async def deliver() -> Outcome:
        return await receiver.handle_async(d.body, d.headers)

    async def scenario() -> tuple[Outcome, float, list[str]]:
        began = time.monotonic()
        first = await deliver() if mode == "async" else receiver.handle(d.body, d.headers)
        elapsed = time.monotonic() - began
        assert calls == []  # nothing ran without a claim
        store.released.set()  # the store answers at last: the claim goes on in the background
        later = []
        for _ in range(250):
            answer = await deliver() if mode == "async" else receiver.handle(d.body, d.headers)
            later.append(answer.reason)
            if answer.reason == "duplicate":
                break
            await asyncio.sleep(0.02)
        return first, elapsed, later

    first, elapsed, later = asyncio.run(scenario())
    # Answered at the deadline, not when the store came back (or Census's 10 s ran out).
    assert (first.status, first.reason) == (503, "dedup_unavailable")
    assert elapsed < 2
    assert any("did not answer within the 0.1 s deadline" in m for m in caplog.messages)
    # The held-up claim went through, the handler ran once, and the retry found it done.
    assert later[-1] == "duplicate" and len(calls) == 1, later
    receiver.close()


def slow_receiver(**options: Any) -> tuple[WebhookReceiver, list[Event]]:
    """A receiver whose one handler takes 0.2 s, longer than the short deadlines here."""
    receiver = WebhookReceiver(SECRET, **options)
    calls: list[Event] = []

    @receiver.on("*")
    def slow(event: Event) -> None:
        time.sleep(0.2)
        calls.append(event)

    return receiver, calls


def test_failing_open_waits_for_the_handlers_past_the_deadline(mode: str) -> None:
    # Without a claim there is nothing for Census's retry to find: no deadline then.
    receiver, calls = slow_receiver(dedup=BrokenStore(), dedup_fail_open=True, deadline=0.05)
    d = make_delivery("sync.failed", secret=SECRET)
    outcome = runner(receiver, mode)(d.body, d.headers)
    assert (outcome.status, outcome.reason) == (200, "handled") and len(calls) == 1
    receiver.close()


class UnsettlingStore(InMemoryDedupStore):
    """A store that goes down after the claim."""

    def complete(self, claim: Claim) -> None:
        raise DedupUnavailable("gone")

    async def complete_async(self, claim: Claim) -> None:
        raise DedupUnavailable("gone")


def test_store_failure_after_success_still_answers_200(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = WebhookReceiver(SECRET, dedup=UnsettlingStore())
    receiver.on("*")(lambda e: None)
    d = make_delivery("sync.failed", secret=SECRET)
    assert runner(receiver, mode)(d.body, d.headers).status == 200
    assert any("may be handled again" in m for m in caplog.messages)


def test_deadline_answers_503_then_retry_finds_it_done(mode: str) -> None:
    receiver = WebhookReceiver(SECRET, dedup=InMemoryDedupStore(), deadline=0.05)
    finished = threading.Event()

    @receiver.on("*")
    def slow(event: Event) -> None:
        time.sleep(0.3)
        finished.set()

    d = make_delivery("sync.failed", secret=SECRET)
    if mode == "sync":
        first = receiver.handle(d.body, d.headers)
        assert (first.status, first.reason) == (503, "deadline")
        assert receiver.handle(d.body, d.headers).status == 409  # still running
        assert finished.wait(5)
        time.sleep(0.05)
        assert receiver.handle(d.body, d.headers).reason == "duplicate"
    else:

        async def main() -> list[str]:
            first = await receiver.handle_async(d.body, d.headers)
            second = await receiver.handle_async(d.body, d.headers)
            while not finished.is_set():
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.05)
            third = await receiver.handle_async(d.body, d.headers)
            return [first.reason, second.reason, third.reason]

        assert asyncio.run(main()) == ["deadline", "in_progress", "duplicate"]
    receiver.close()


def test_no_deadline_waits_for_the_handlers(mode: str) -> None:
    receiver, calls = slow_receiver(dedup=InMemoryDedupStore(), deadline=None)
    d = make_delivery("sync.failed", secret=SECRET)
    run = runner(receiver, mode)
    assert [run(d.body, d.headers).reason for _ in range(2)] == ["handled", "duplicate"]
    assert len(calls) == 1
    receiver.close()


def test_deadline_keeps_flask_style_context(mode: str) -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    receiver = WebhookReceiver(SECRET, dedup=InMemoryDedupStore(), deadline=5)
    seen: list[str] = []
    receiver.on("*")(lambda e: seen.append(var.get()))
    d = make_delivery("sync.failed", secret=SECRET)
    var.set("request context")
    runner(receiver, mode)(d.body, d.headers)
    assert seen == ["request context"]
    receiver.close()


@pytest.mark.parametrize("option", ["ttl", "lease"])
def test_non_number_durations_are_refused_without_echoing_them(option: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{option} must be a positive number") as info:
        InMemoryDedupStore(**{option: "whsec_pasted_here"})  # type: ignore[arg-type]
    assert "whsec_pasted_here" not in str(info.value)
    assert "str" in str(info.value)
