"""RedisDedupStore against a real redis-server, alone and under the receiver.

Every test talks to a redis-server the suite starts on 127.0.0.1 (see
tests/redis_server.py); the down/up tests start their own so they can stop it.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from census_receiver import ConfigurationError, DedupUnavailable, Event, Outcome, WebhookReceiver
from census_receiver.dedup import AsyncRedisDedupStore, ClaimState, RedisDedupStore, default_key
from census_receiver.testing import Delivery, make_delivery
from tests.conftest import SECRET
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    redis_server.flush()
    with redis_server.client() as c:
        yield c


def fast_failing(server: RedisServer) -> redis.Redis:
    """A client set up as docs/retries.md advises: it gives up on a dead Redis quickly.

    redis-py's default retries a refused connection ten times, with backoff, for
    about four seconds: too long inside Census's 10 s budget.
    """
    return server.client(
        socket_timeout=2,
        socket_connect_timeout=2,
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.05), 1),
    )


def async_client(server: RedisServer) -> redis.asyncio.Redis:
    return redis.asyncio.Redis(
        host="127.0.0.1",
        port=server.port,
        socket_timeout=2,
        socket_connect_timeout=2,
        retry=AsyncRetry(ExponentialBackoff(cap=0.1, base=0.05), 1),
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def counting_receiver(
    store: RedisDedupStore | AsyncRedisDedupStore, **options: object
) -> tuple[WebhookReceiver, list[Event]]:
    receiver = WebhookReceiver(SECRET, dedup=store, **options)  # type: ignore[arg-type]
    calls: list[Event] = []
    receiver.on("*")(calls.append)
    return receiver, calls


def delivery(**fields: Any) -> Delivery:
    return make_delivery("sync.failed", secret=SECRET, **fields)


# -- the store alone ----------------------------------------------------------------------------


def test_claim_complete_then_done_for_ttl(client: redis.Redis) -> None:
    store = RedisDedupStore(client, ttl=120, lease=30)
    claim = store.claim("k")
    assert claim.state is ClaimState.CLAIMED and len(claim.token) == 32
    assert 29_000 < client.pttl("census:dedup:k") <= 30_000
    assert store.claim("k").state is ClaimState.IN_PROGRESS
    store.complete(claim)
    assert store.claim("k").state is ClaimState.DONE
    assert client.get("census:dedup:k") == b"done"
    assert 119_000 < client.pttl("census:dedup:k") <= 120_000


def test_release_lets_the_next_claim_win(client: redis.Redis) -> None:
    store = RedisDedupStore(client)
    store.release(store.claim("k"))
    assert client.exists("census:dedup:k") == 0
    assert store.claim("k").state is ClaimState.CLAIMED


def test_only_the_holder_settles_a_claim(client: redis.Redis) -> None:
    store = RedisDedupStore(client, lease=0.2)
    stale = store.claim("k")
    assert wait_for(lambda: store.claim("k").state is ClaimState.CLAIMED)
    # The expired holder cannot release nor complete the new claim.
    store.release(stale)
    store.complete(stale)
    assert store.claim("k").state is ClaimState.IN_PROGRESS


def test_prefix_separates_stores(client: redis.Redis) -> None:
    a = RedisDedupStore(client, prefix="app-a:")
    b = RedisDedupStore(client, prefix="app-b:")
    a.complete(a.claim("k"))
    assert b.claim("k").state is ClaimState.CLAIMED
    assert client.get("app-a:k") == b"done"


def test_works_with_decoded_responses(redis_server: RedisServer) -> None:
    redis_server.flush()
    with redis_server.client(decode_responses=True) as c:
        store = RedisDedupStore(c)
        store.complete(store.claim("k"))
        assert store.claim("k").state is ClaimState.DONE


def test_concurrent_claims_have_one_winner(client: redis.Redis) -> None:
    store = RedisDedupStore(client)
    barrier = threading.Barrier(8)

    def claim(_: int) -> ClaimState:
        barrier.wait(5)
        return store.claim("k").state

    with ThreadPoolExecutor(8) as pool:
        states = list(pool.map(claim, range(8)))
    assert states.count(ClaimState.CLAIMED) == 1
    assert states.count(ClaimState.IN_PROGRESS) == 7


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ttl": 0}, "ttl"),
        ({"lease": -1}, "lease"),
        ({"ttl": 10, "lease": 20}, "longer than ttl"),
        ({"prefix": ""}, "prefix"),
    ],
)
def test_bad_options_are_refused(
    client: redis.Redis, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisDedupStore(client, **options)  # type: ignore[arg-type]


def test_client_without_socket_timeout_is_warned_about(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # redis-py 8 sets 5 s by default; older versions (and explicit None) wait forever.
    with redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=None) as bare:
        RedisDedupStore(bare)
    assert any("socket_timeout" in m for m in caplog.messages)
    caplog.clear()
    with redis_server.client() as timed:
        RedisDedupStore(timed)
    assert not caplog.messages


def test_repr_names_the_client_kind_not_its_address(redis_server: RedisServer) -> None:
    with redis_server.client() as c:
        text = repr(RedisDedupStore(c, ttl=60, lease=10))
    assert text == "RedisDedupStore(ttl=60, lease=10, prefix='census:dedup:')"


# -- async: the asyncio client natively, the sync client in a thread ---------------------------


def test_asyncio_client_steps(redis_server: RedisServer) -> None:
    redis_server.flush()

    async def main() -> list[ClaimState]:
        async with async_client(redis_server) as ac:
            store = AsyncRedisDedupStore(ac)
            claim = await store.claim("k")
            second = await store.claim("k")
            await store.complete(claim)
            third = await store.claim("k")
            other = await store.claim("j")
            await store.release(other)
            fourth = await store.claim("j")
            return [claim.state, second.state, third.state, fourth.state]

    assert asyncio.run(main()) == [
        ClaimState.CLAIMED,  # a fresh key
        ClaimState.IN_PROGRESS,  # claimed again before it settled
        ClaimState.DONE,  # claimed after complete
        ClaimState.CLAIMED,  # claimed after release
    ]


def test_each_store_refuses_the_other_kind_of_client(redis_server: RedisServer) -> None:
    async def main() -> None:
        async with async_client(redis_server) as ac:
            with pytest.raises(ConfigurationError, match="use AsyncRedisDedupStore"):
                RedisDedupStore(ac)  # type: ignore[arg-type]

    asyncio.run(main())
    with redis_server.client() as c, pytest.raises(ConfigurationError, match="use RedisDedupStore"):
        AsyncRedisDedupStore(c)


def test_asyncio_store_under_handle_is_a_configuration_error(redis_server: RedisServer) -> None:
    calls: list[Event] = []

    async def main() -> None:
        async with async_client(redis_server) as ac:
            # Under the sync receiver (WSGI, Flask) the mistake surfaces, not a 503.
            receiver = WebhookReceiver(SECRET, dedup=AsyncRedisDedupStore(ac))
            receiver.on("*")(calls.append)
            d = delivery()
            with pytest.raises(ConfigurationError, match="ASGI apps"):
                receiver.handle(d.body, d.headers)

    asyncio.run(main())
    assert calls == []


def test_sync_client_does_not_block_the_event_loop(
    redis_server: RedisServer, client: redis.Redis
) -> None:
    receiver, calls = counting_receiver(RedisDedupStore(client))
    ticks: list[float] = []
    d = delivery()

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def main() -> tuple[str, int]:
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        await asyncio.sleep(0)
        with redis_server.client() as admin:
            # Scripts wait while the server is paused: the claim is slow to answer.
            admin.execute_command("CLIENT", "PAUSE", "400", "WRITE")
        before = len(ticks)
        outcome = await receiver.handle_async(d.body, d.headers)
        during = len(ticks) - before
        stop.set()
        await task
        return outcome.reason, during

    reason, during = asyncio.run(main())
    # A blocking call would have frozen the ticker for the whole pause.
    assert reason == "handled" and during >= 5 and len(calls) == 1
    receiver.close()


# -- the receiver with Redis: exactly once -------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async-over-sync-client"])
def test_six_sequential_deliveries_are_handled_once(client: redis.Redis, mode: str) -> None:
    receiver, calls = counting_receiver(RedisDedupStore(client))
    d = delivery()
    run: Callable[[], Outcome]
    if mode == "sync":
        run = lambda: receiver.handle(d.body, d.headers)  # noqa: E731
    else:
        run = lambda: asyncio.run(receiver.handle_async(d.body, d.headers))  # noqa: E731
    outcomes = [run() for _ in range(6)]
    assert [(o.status, o.reason) for o in outcomes] == [(200, "handled")] + [(200, "duplicate")] * 5
    assert len(calls) == 1
    receiver.close()


def test_six_sequential_deliveries_with_asyncio_client(redis_server: RedisServer) -> None:
    redis_server.flush()

    async def main() -> tuple[list[str], int]:
        async with async_client(redis_server) as ac:
            receiver, calls = counting_receiver(AsyncRedisDedupStore(ac))
            d = delivery()
            reasons = [(await receiver.handle_async(d.body, d.headers)).reason for _ in range(6)]
            receiver.close()
            return reasons, len(calls)

    assert asyncio.run(main()) == (["handled"] + ["duplicate"] * 5, 1)


def test_six_concurrent_deliveries_in_threads_are_handled_once(client: redis.Redis) -> None:
    receiver = WebhookReceiver(SECRET, dedup=RedisDedupStore(client))
    started, release = threading.Event(), threading.Event()
    calls: list[Event] = []

    @receiver.on("*")
    def slow(event: Event) -> None:
        calls.append(event)
        started.set()
        assert release.wait(10)

    d = delivery()
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(receiver.handle, d.body, d.headers)
        assert started.wait(10)
        others = [pool.submit(receiver.handle, d.body, d.headers) for _ in range(5)]
        answers = [f.result(10) for f in others]
        release.set()
        assert first.result(10).reason == "handled"
    assert [(o.status, o.reason) for o in answers] == [(409, "in_progress")] * 5
    # Census's retries of the five 409s then find the delivery done.
    assert [receiver.handle(d.body, d.headers).reason for _ in range(5)] == ["duplicate"] * 5
    assert len(calls) == 1
    receiver.close()


def test_racing_deliveries_in_threads_run_each_event_once(client: redis.Redis) -> None:
    receiver, calls = counting_receiver(RedisDedupStore(client))
    events = [delivery(sync_run_id=run) for run in range(1, 21)]
    barrier = threading.Barrier(6)

    def deliver(d: Delivery) -> str:
        barrier.wait(10)
        return receiver.handle(d.body, d.headers).reason

    with ThreadPoolExecutor(6) as pool:
        for d in events:
            reasons = list(pool.map(deliver, [d] * 6))
            assert reasons.count("handled") == 1
            assert set(reasons) <= {"handled", "duplicate", "in_progress"}
    assert sorted(e.sync_run_id or 0 for e in calls) == list(range(1, 21))
    receiver.close()


def test_six_concurrent_deliveries_with_asyncio_client_are_handled_once(
    redis_server: RedisServer,
) -> None:
    redis_server.flush()

    async def main() -> tuple[list[str], list[str], int]:
        async with async_client(redis_server) as ac:
            receiver = WebhookReceiver(SECRET, dedup=AsyncRedisDedupStore(ac))
            started, release = asyncio.Event(), asyncio.Event()
            calls: list[Event] = []

            @receiver.on("*")
            async def slow(event: Event) -> None:
                calls.append(event)
                started.set()
                await release.wait()

            d = delivery()
            first = asyncio.create_task(receiver.handle_async(d.body, d.headers))
            await asyncio.wait_for(started.wait(), 10)
            others = await asyncio.gather(
                *(receiver.handle_async(d.body, d.headers) for _ in range(5))
            )
            release.set()
            reasons = [(await first).reason, *(o.reason for o in others)]
            # A burst of six at once, on another event: one runs.
            burst = delivery(sync_run_id=7)
            racing = await asyncio.gather(
                *(receiver.handle_async(burst.body, burst.headers) for _ in range(6))
            )
            receiver.close()
            return reasons, [o.reason for o in racing], len(calls)

    reasons, racing, calls = asyncio.run(main())
    assert reasons == ["handled"] + ["in_progress"] * 5
    assert racing.count("handled") == 1 and calls == 2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_failure_then_retry_runs_the_handler_again(client: redis.Redis, mode: str) -> None:
    receiver = WebhookReceiver(SECRET, dedup=RedisDedupStore(client))
    attempts: list[int] = []

    @receiver.on("*")
    def flaky(event: Event) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")

    d = delivery()
    if mode == "sync":
        statuses = [receiver.handle(d.body, d.headers).status for _ in range(3)]
    else:
        statuses = [asyncio.run(receiver.handle_async(d.body, d.headers)).status for _ in range(3)]
    assert statuses == [500, 200, 200]
    assert len(attempts) == 2
    receiver.close()


def test_non_retryable_error_is_remembered_as_done(client: redis.Redis) -> None:
    from census_receiver import NonRetryableError

    receiver = WebhookReceiver(SECRET, dedup=RedisDedupStore(client))
    attempts: list[int] = []

    @receiver.on("*")
    def hopeless(event: Event) -> None:
        attempts.append(1)
        raise NonRetryableError("the sync no longer exists")

    d = delivery()
    answers = [receiver.handle(d.body, d.headers) for _ in range(2)]
    assert [(o.status, o.reason) for o in answers] == [(200, "dropped"), (200, "duplicate")]
    assert len(attempts) == 1
    receiver.close()


CRASHING_WORKER = textwrap.dedent(
    """
    import sys, time
    import redis
    from census_receiver import WebhookReceiver
    from census_receiver.dedup import RedisDedupStore
    from census_receiver.testing import make_delivery

    client = redis.Redis(port=int(sys.argv[1]), socket_timeout=5)
    receiver = WebhookReceiver(sys.argv[2], dedup=RedisDedupStore(client, lease=1.5), deadline=None)

    @receiver.on("*")
    def hang(event):
        print("handling", flush=True)
        time.sleep(60)

    d = make_delivery("sync.failed", secret=sys.argv[2])
    receiver.handle(d.body, d.headers)
    """
)


def test_claim_of_a_crashed_process_expires_and_a_retry_runs(
    redis_server: RedisServer, client: redis.Redis
) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WORKER, str(redis_server.port), SECRET],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline() == "handling\n"
    finally:
        worker.kill()  # the process dies mid-handler, holding the claim
        worker.wait(10)
        if worker.stdout is not None:
            worker.stdout.close()
    receiver, calls = counting_receiver(RedisDedupStore(client, lease=1.5))
    d = delivery()
    assert receiver.handle(d.body, d.headers).reason == "in_progress"
    # Census's next retry, once the lease ran out, runs the handlers.
    assert wait_for(lambda: receiver.handle(d.body, d.headers).reason != "in_progress")
    assert len(calls) == 1
    assert receiver.handle(d.body, d.headers).reason == "duplicate"
    receiver.close()


# -- Redis down, then back ----------------------------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.mark.parametrize("mode", ["sync", "async-over-sync-client"])
def test_redis_down_answers_503_and_the_retry_is_handled_once_back(
    own_redis: RedisServer, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    c = fast_failing(own_redis)
    receiver, calls = counting_receiver(RedisDedupStore(c))
    d = delivery()

    def run() -> Outcome:
        if mode == "sync":
            return receiver.handle(d.body, d.headers)
        return asyncio.run(receiver.handle_async(d.body, d.headers))

    assert run().reason == "handled"  # scripts loaded, connection pooled
    other = delivery(sync_run_id=99)
    own_redis.stop()
    down = (
        receiver.handle(other.body, other.headers)
        if mode == "sync"
        else asyncio.run(receiver.handle_async(other.body, other.headers))
    )
    assert (down.status, down.reason) == (503, "dedup_unavailable")
    assert len(calls) == 1
    assert any("unavailable" in m and "ConnectionError" in m for m in caplog.messages)
    own_redis.start()  # empty again: no persistence
    d = other
    assert run().reason == "handled"  # Census's retry
    assert run().reason == "duplicate"
    assert [e.sync_run_id for e in calls] == [324402082, 99]
    receiver.close()
    c.close()


def test_redis_down_with_asyncio_client_answers_503_then_handles(own_redis: RedisServer) -> None:
    async def main() -> list[str]:
        async with async_client(own_redis) as ac:
            receiver, calls = counting_receiver(AsyncRedisDedupStore(ac))
            d = delivery()
            reasons = []
            own_redis.stop()
            reasons.append((await receiver.handle_async(d.body, d.headers)).reason)
            own_redis.start()
            reasons.append((await receiver.handle_async(d.body, d.headers)).reason)
            reasons.append((await receiver.handle_async(d.body, d.headers)).reason)
            reasons.append(str(len(calls)))
            receiver.close()
            return reasons

    assert asyncio.run(main()) == ["dedup_unavailable", "handled", "duplicate", "1"]


def test_redis_down_can_fail_open(own_redis: RedisServer) -> None:
    c = fast_failing(own_redis)
    receiver, calls = counting_receiver(RedisDedupStore(c), dedup_fail_open=True)
    own_redis.stop()
    d = delivery()
    assert [receiver.handle(d.body, d.headers).reason for _ in range(2)] == ["handled"] * 2
    # Without the store nothing is deduplicated: that is the risk fail-open takes.
    assert len(calls) == 2
    receiver.close()
    c.close()


def test_redis_lost_after_the_handlers_still_answers_200(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    c = fast_failing(own_redis)
    receiver = WebhookReceiver(SECRET, dedup=RedisDedupStore(c))
    receiver.on("*")(lambda event: own_redis.stop())
    d = delivery()
    outcome = receiver.handle(d.body, d.headers)
    # The work is done: 2xx, with a warning that a retry could run it again.
    assert (outcome.status, outcome.reason) == (200, "handled")
    assert any("may be handled again" in m for m in caplog.messages)
    receiver.close()
    c.close()


def test_unavailable_message_never_shows_the_password_or_url(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="census_receiver")
    url = f"redis://:hunter2-pw@127.0.0.1:{own_redis.port}/0"
    c = redis.Redis.from_url(url, socket_timeout=2, retry=Retry(ExponentialBackoff(), 0))
    store = RedisDedupStore(c)
    own_redis.stop()
    with pytest.raises(DedupUnavailable) as info:
        store.claim("k")
    shown = "".join(traceback.format_exception(info.value)) + repr(store)
    assert "Redis did not answer the dedup claim (ConnectionError)" in shown
    receiver, _ = counting_receiver(store)
    d = delivery()
    assert receiver.handle(d.body, d.headers).status == 503
    shown += "\n".join(r.getMessage() for r in caplog.records)
    assert "hunter2" not in shown and "redis://" not in shown
    receiver.close()
    c.close()


def test_default_key_is_what_the_store_holds(client: redis.Redis) -> None:
    receiver, _ = counting_receiver(RedisDedupStore(client))
    d = delivery()
    receiver.handle(d.body, d.headers)
    key = default_key(receiver.verify_event(d.body, d.headers), d.body)
    assert client.get("census:dedup:" + key) == b"done"
    receiver.close()
