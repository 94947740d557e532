"""A store that stops answering mid-claim: its late claim must not hold the next retry.

When Redis hangs (SIGSTOP here), the receiver's claim times out and it answers
503, but the claim command is still queued in Redis and is applied when Redis
resumes, under a token nobody holds any more. The store remembers that token
and releases it before its next claim, so Census's next retry (simulated, on a
short scale) is handled at once instead of meeting 409 until the 60 s lease
runs out. Shown with the sync and the asyncio Redis clients.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from census_receiver import DedupUnavailable, Event, WebhookReceiver
from census_receiver.dedup import AsyncRedisDedupStore, ClaimState, RedisDedupStore
from census_receiver.testing import make_delivery

from ..conftest import SECRET
from ..postgres_server import PostgresServer
from ..redis_server import RedisServer

TIMEOUT = 0.3  # the client's socket timeout: the claim gives up after this long


def sync_client(server: RedisServer) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=server.port,
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )


def test_a_claim_applied_after_its_timeout_does_not_hold_the_next_attempt(
    redis_server: RedisServer,
) -> None:
    redis_server.flush()
    with sync_client(redis_server) as client:
        store = RedisDedupStore(client, lease=60)
        store.release(store.claim("warm-up"))  # a connection open and the scripts loaded
        with redis_server.paused(), pytest.raises(DedupUnavailable, match="did not answer"):
            store.claim("k")  # sent, but the answer never comes
        # Redis resumes and applies the queued claim: the key is held by a lost token.
        deadline = time.monotonic() + 5
        with redis_server.client() as admin:
            while admin.exists(store.prefix + "k") == 0:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        assert store.claim("k").state is ClaimState.CLAIMED  # not IN_PROGRESS for 60 s


def test_census_next_retry_after_a_hang_is_handled_at_once(redis_server: RedisServer) -> None:
    redis_server.flush()
    with sync_client(redis_server) as client:
        store = RedisDedupStore(client, lease=60)
        store.release(store.claim("warm-up"))  # a connection open and the scripts loaded
        receiver = WebhookReceiver(SECRET, dedup=store, deadline=1)
        calls: list[Event] = []
        receiver.on("sync.failed")(calls.append)
        d = make_delivery("sync.failed", secret=SECRET)
        with redis_server.paused():
            first = receiver.handle(d.body, d.headers)
            time.sleep(TIMEOUT)  # Redis is still stopped when the client gives up
        assert (first.status, first.reason) == (503, "dedup_unavailable")
        time.sleep(0.04)  # Census's first retry: 4 s later, on a 1/100 scale
        retry = receiver.handle(d.body, d.headers)
        assert (retry.status, retry.reason) == (200, "handled") and len(calls) == 1
        receiver.close()


def test_the_asyncio_store_releases_its_unanswered_claims_too(redis_server: RedisServer) -> None:
    redis_server.flush()
    calls: list[Event] = []
    d = make_delivery("sync.failed", secret=SECRET)

    async def main() -> list[str]:
        client = redis.asyncio.Redis(
            host="127.0.0.1",
            port=redis_server.port,
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            retry=AsyncRetry(NoBackoff(), 0),
        )
        try:
            store = AsyncRedisDedupStore(client, lease=60)
            await store.release(await store.claim("warm-up"))
            receiver = WebhookReceiver(SECRET, dedup=store)
            receiver.on("sync.failed")(calls.append)
            with redis_server.paused():
                first = await receiver.handle_async(d.body, d.headers)
                await asyncio.sleep(TIMEOUT)
            await asyncio.sleep(0.04)
            retry = await receiver.handle_async(d.body, d.headers)
            return [first.reason, retry.reason]
        finally:
            await client.aclose()

    assert asyncio.run(main()) == ["dedup_unavailable", "handled"]
    assert len(calls) == 1


def test_an_asyncio_claim_given_up_at_the_deadline_does_not_hold_the_retry(
    redis_server: RedisServer,
) -> None:
    # The deadline passes before the client's own timeout: the claim is cancelled,
    # then applied once Redis resumes; the retry must not meet it as in_progress.
    redis_server.flush()
    calls: list[Event] = []
    d = make_delivery("sync.failed", secret=SECRET)

    async def main() -> list[str]:
        client = redis.asyncio.Redis(
            host="127.0.0.1",
            port=redis_server.port,
            socket_timeout=5,
            retry=AsyncRetry(NoBackoff(), 0),
        )
        try:
            store = AsyncRedisDedupStore(client, lease=60)
            await store.release(await store.claim("warm-up"))
            receiver = WebhookReceiver(SECRET, dedup=store, deadline=0.2)
            receiver.on("sync.failed")(calls.append)
            with redis_server.paused():
                first = await receiver.handle_async(d.body, d.headers)
            await client.aclose()  # the cancelled call's connection: a fresh one answers
            await asyncio.sleep(0.1)  # Redis applies the claim it had queued
            retry = await receiver.handle_async(d.body, d.headers)
            return [first.reason, retry.reason]
        finally:
            await client.aclose()

    assert asyncio.run(main()) == ["dedup_unavailable", "handled"]
    assert len(calls) == 1


def test_a_journal_claim_the_database_applies_late_does_not_hold_the_retry(
    postgres_server: PostgresServer,
) -> None:
    import os
    import signal

    import psycopg

    from census_receiver.journal import PostgresJournal

    name = "faults_journal"
    with psycopg.connect(postgres_server.conninfo, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    conninfo = psycopg.conninfo.make_conninfo(postgres_server.conninfo, dbname=name)
    # One connection, so the test knows which server process serves the claims.
    journal = PostgresJournal(conninfo, min_size=1, max_size=1, lease=60)
    receiver = WebhookReceiver(SECRET, journal=journal, deadline=0.5)
    calls: list[Event] = []
    receiver.on("sync.failed")(calls.append)
    d = make_delivery("sync.failed", secret=SECRET)
    with journal.transaction() as cur:
        (backend,) = cur.execute("SELECT pg_backend_pid()", ()).fetchone()
    os.kill(backend, signal.SIGSTOP)  # the database stops answering mid-claim
    try:
        first = receiver.handle(d.body, d.headers)
    finally:
        os.kill(backend, signal.SIGCONT)
    assert (first.status, first.reason) == (503, "journal_unavailable") and calls == []
    # The database goes on and commits the claim; it is released as it lands, so
    # Census's next retry runs the handlers instead of meeting 409 for 60 s.
    deadline = time.monotonic() + 10
    while journal.deliveries() == [] or journal.deliveries()[0].status == "running":
        assert time.monotonic() < deadline, journal.deliveries()
        time.sleep(0.05)
    retry = receiver.handle(d.body, d.headers)
    assert (retry.status, retry.reason) == (200, "handled") and len(calls) == 1
    receiver.close()
    journal.close()
