"""Running verified deliveries: claim, handlers, hooks, settle, and the deadline.

Driven through the public two-step core (``triage`` then ``run``/``run_async``,
as ``handle`` and ``handle_async`` compose them), with in-memory stores and
stores that fail, hang or block as a real one can. The Redis stores have their
own tests against a real redis-server in integration/test_dedup_redis.py.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from census_receiver import DedupUnavailable, Event, Outcome, WebhookReceiver
from census_receiver.dedup import Claim, InMemoryDedupStore
from census_receiver.delivery import VerifiedDelivery
from census_receiver.testing import make_delivery

from .conftest import SECRET
from .support import Clock


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def runner(receiver: WebhookReceiver, mode: str) -> Callable[..., Outcome]:
    if mode == "sync":
        return receiver.handle
    return lambda *a, **k: asyncio.run(receiver.handle_async(*a, **k))


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

    blocking = True  # its calls wait, as a network store's do

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()

    def claim(self, key: str) -> Claim:
        assert self.released.wait(5)
        return super().claim(key)


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
        store.released.set()  # the store answers at last: the late claim is released
        await asyncio.sleep(0.05)
        retry = await deliver() if mode == "async" else receiver.handle(d.body, d.headers)
        return first, elapsed, [retry.reason]

    first, elapsed, later = asyncio.run(scenario())
    # Answered at the deadline, not when the store came back (or Census's 10 s ran out).
    assert (first.status, first.reason) == (503, "dedup_unavailable")
    assert elapsed < 2
    assert any("did not answer within the 0.1 s deadline" in m for m in caplog.messages)
    # The claim that landed after the answer was released: the next retry runs at once,
    # instead of meeting 409 until the claim's lease runs out.
    assert later == ["handled"] and len(calls) == 1, later
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


def test_store_failure_after_success_still_answers_200(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = WebhookReceiver(SECRET, dedup=UnsettlingStore())
    receiver.on("*")(lambda e: None)
    d = make_delivery("sync.failed", secret=SECRET)
    assert runner(receiver, mode)(d.body, d.headers).status == 200
    assert any("may be handled again" in m for m in caplog.messages)


def test_deadline_answers_503_then_retry_finds_it_done_under_handle_async() -> None:
    receiver = WebhookReceiver(SECRET, dedup=InMemoryDedupStore(), deadline=0.05)
    finished = threading.Event()

    @receiver.on("*")
    def slow(event: Event) -> None:
        time.sleep(0.3)
        finished.set()

    d = make_delivery("sync.failed", secret=SECRET)

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


@pytest.mark.parametrize("store", [InMemoryDedupStore, HungStore, None])
def test_handle_runs_sync_handlers_on_the_callers_thread(store: Any) -> None:
    # Thread-locals and Flask's request context live on the caller's thread: turning
    # dedup on must not move the handlers off it.
    dedup = store() if store is not None else None
    if isinstance(dedup, HungStore):
        dedup.released.set()
    receiver = WebhookReceiver(SECRET, dedup=dedup, deadline=5 if dedup else None)
    local = threading.local()
    local.request = "this request"
    seen: list[object] = []
    receiver.on("*")(
        lambda e: seen.append((threading.get_ident(), getattr(local, "request", None)))
    )
    d = make_delivery("sync.failed", secret=SECRET)
    assert receiver.handle(d.body, d.headers).reason == "handled"
    assert seen == [(threading.get_ident(), "this request")]
    receiver.close()


def test_handle_lets_slow_handlers_finish_past_the_deadline() -> None:
    # Under handle the deadline bounds the store's answer only: a handler on the
    # caller's thread cannot be cut short, so its delivery is answered when it ends.
    receiver, calls = slow_receiver(dedup=InMemoryDedupStore(), deadline=0.05)
    d = make_delivery("sync.failed", secret=SECRET)
    assert [receiver.handle(d.body, d.headers).reason for _ in range(2)] == [
        "handled",
        "duplicate",
    ]
    assert len(calls) == 1
    receiver.close()


def test_a_full_pool_at_the_deadline_is_answered_busy_not_store_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One worker thread, taken by a slow sync handler: the next delivery's claim (a
    # blocking store's call) never gets a thread. The store is fine; the pool is full.
    store = HungStore()
    store.released.set()
    receiver, _ = slow_receiver(dedup=store, deadline=0.1, max_threads=1)
    first = make_delivery("sync.failed", secret=SECRET)
    second = make_delivery("sync.failed", secret=SECRET, sync_run_id=99)

    async def main() -> list[tuple[int, str]]:
        one = asyncio.ensure_future(receiver.handle_async(first.body, first.headers))
        await asyncio.sleep(0.02)  # the first one's handler now holds the thread
        two = await receiver.handle_async(second.body, second.headers)
        return [(o.status, o.reason) for o in (await one, two)]

    assert asyncio.run(main()) == [(503, "deadline"), (503, "busy")]
    assert any("all 1 worker threads were taken" in m for m in caplog.messages)
    assert not any("did not answer" in m for m in caplog.messages)
    receiver.close()


class CountingHungStore(HungStore):
    """A HungStore that notes each claim a thread started."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: list[str] = []

    def claim(self, key: str) -> Claim:
        self.claims.append(key)
        return super().claim(key)


def test_handle_withdraws_a_claim_that_never_got_a_thread() -> None:
    # One worker thread, held by a claim the store does not answer: the next
    # delivery's claim waits for a thread, is answered busy, and is never made.
    store = CountingHungStore()
    receiver = WebhookReceiver(SECRET, dedup=store, deadline=0.1, max_threads=1)
    calls: list[Event] = []
    receiver.on("*")(calls.append)
    first = make_delivery("sync.failed", secret=SECRET)
    second = make_delivery("sync.failed", secret=SECRET, sync_run_id=99)
    answers: list[Outcome] = []
    holder = threading.Thread(
        target=lambda: answers.append(receiver.handle(first.body, first.headers))
    )
    holder.start()
    deadline = time.monotonic() + 5
    while not store.claims:  # the first claim now holds the only thread
        assert time.monotonic() < deadline
        time.sleep(0.005)
    busy = receiver.handle(second.body, second.headers)
    assert (busy.status, busy.reason) == (503, "busy")
    store.released.set()
    holder.join(5)
    assert [(a.status, a.reason) for a in answers] == [(503, "dedup_unavailable")]
    # Census's retry: its claim queues behind any claim left in the pool, so by its
    # answer a withdrawn claim would have been made. It was not: two claims in all.
    assert receiver.handle(second.body, second.headers).reason == "handled"
    assert len(store.claims) == 2
    assert [e.sync_run_id for e in calls] == [99]
    receiver.close()


def test_triage_returns_a_delivery_that_runs_once_per_call() -> None:
    receiver = WebhookReceiver(SECRET)
    calls: list[Event] = []
    receiver.on("sync.failed")(calls.append)
    d = make_delivery("sync.failed", secret=SECRET)
    triaged = receiver.triage(d.body, d.headers)
    assert isinstance(triaged, VerifiedDelivery) and triaged.event.event == "sync.failed"
    assert calls == []  # triage runs nothing
    assert triaged.run().reason == "handled" and len(calls) == 1


def test_triage_answers_refusals_and_ignored_deliveries_itself() -> None:
    receiver = WebhookReceiver(SECRET)
    receiver.on("sync.failed")(lambda e: None)
    forged = make_delivery("sync.failed", secret=SECRET, bad_signature=True)
    other = make_delivery("sync.started", secret=SECRET)
    refused = receiver.triage(forged.body, forged.headers)
    ignored = receiver.triage(other.body, other.headers)
    assert isinstance(refused, Outcome) and refused.status == 401
    assert isinstance(ignored, Outcome) and ignored.reason == "ignored"


def test_triage_takes_the_signature_value_an_adapter_found() -> None:
    receiver = WebhookReceiver(SECRET)
    receiver.on("*")(lambda e: None)
    d = make_delivery("sync.failed", secret=SECRET)
    triaged = receiver.triage(d.body, signature=d.headers["X-Signature"])
    assert isinstance(triaged, VerifiedDelivery)


def test_no_deadline_waits_for_the_handlers(mode: str) -> None:
    receiver, calls = slow_receiver(dedup=InMemoryDedupStore(), deadline=None)
    d = make_delivery("sync.failed", secret=SECRET)
    run = runner(receiver, mode)
    assert [run(d.body, d.headers).reason for _ in range(2)] == ["handled", "duplicate"]
    assert len(calls) == 1
    receiver.close()


def test_deadline_keeps_flask_style_context(mode: str) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    receiver = WebhookReceiver(SECRET, dedup=InMemoryDedupStore(), deadline=5)
    seen: list[str] = []
    receiver.on("*")(lambda e: seen.append(var.get()))
    d = make_delivery("sync.failed", secret=SECRET)
    var.set("request context")
    runner(receiver, mode)(d.body, d.headers)
    assert seen == ["request context"]
    receiver.close()
