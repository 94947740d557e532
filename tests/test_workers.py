"""workers.py: the receiver's thread pool and private event loop."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator

import pytest

from census_receiver.workers import Workers

WAIT = 10.0

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


@pytest.fixture
def workers() -> Iterator[Workers]:
    w = Workers(max_threads=2)
    yield w
    w.close()


def test_submit_runs_in_a_pool_thread_with_the_callers_context(workers: Workers) -> None:
    def work() -> tuple[str, str]:
        seen = request_id.get()
        request_id.set("changed in the pool")
        return seen, threading.current_thread().name

    token = request_id.set("delivery-42")
    try:
        job = workers.submit(work)
        seen, thread = job.result(WAIT)
        assert request_id.get() == "delivery-42"  # the pool's change stays in its copy
    finally:
        request_id.reset(token)
    assert seen == "delivery-42"
    assert thread.startswith("census-receiver") and thread != threading.current_thread().name
    assert job.done() and not job.cancel()  # started, so it can no longer be withdrawn


def test_submit_hands_exceptions_to_whoever_waits(workers: Workers) -> None:
    def fail() -> None:
        raise KeyError("lost")

    job = workers.submit(fail)
    with pytest.raises(KeyError, match="lost"):
        job.result(WAIT)


def test_a_job_is_not_started_while_every_thread_is_busy() -> None:
    workers = Workers(max_threads=1)
    running, gate = threading.Event(), threading.Event()
    ran: list[str] = []

    def hold() -> None:
        running.set()
        gate.wait(WAIT)

    try:
        busy = workers.submit(hold)
        assert running.wait(WAIT)
        waiting = workers.submit(lambda: "ran")
        withdrawn = workers.submit(ran.append, "withdrawn")
        assert busy.running() and not waiting.running() and not waiting.done()
        assert not busy.cancel()  # started: it runs to its end
        assert withdrawn.cancel()  # not started: withdrawn, and it never runs
        gate.set()
        assert waiting.result(WAIT) == "ran"
        assert busy.result(WAIT) is None and withdrawn.cancelled() and ran == []
    finally:
        gate.set()
        workers.close()


def test_in_thread_awaits_a_sync_function_off_the_loop(workers: Workers) -> None:
    async def scenario() -> tuple[str, str, str]:
        request_id.set("async-delivery")
        loop_thread = threading.current_thread().name
        seen, thread = await workers.in_thread(
            lambda: (request_id.get(), threading.current_thread().name)
        )
        return loop_thread, seen, thread

    loop_thread, seen, thread = asyncio.run(scenario())
    assert seen == "async-delivery" and thread != loop_thread


def test_run_coroutine_uses_one_private_loop_for_every_call(workers: Workers) -> None:
    async def which_loop() -> tuple[asyncio.AbstractEventLoop, str]:
        return asyncio.get_running_loop(), threading.current_thread().name

    first_loop, thread = workers.run_coroutine(which_loop())
    second_loop, _ = workers.run_coroutine(which_loop())
    assert first_loop is second_loop
    assert thread == "census-receiver-loop"


def test_run_coroutine_works_from_inside_another_running_loop(workers: Workers) -> None:
    async def answer() -> int:
        return 42

    async def caller() -> int:
        return workers.run_coroutine(answer())  # a sync caller running under some loop

    assert asyncio.run(caller()) == 42


def test_run_coroutine_from_its_own_loop_raises_instead_of_deadlocking(workers: Workers) -> None:
    async def inner() -> None:
        """Never run: the call is refused first."""

    async def reentrant() -> str:
        coroutine = inner()
        try:
            workers.run_coroutine(coroutine)
        except RuntimeError as exc:
            return str(exc)
        finally:
            coroutine.close()
        return "no error"

    assert "cannot be called from one of its own async handlers" in workers.run_coroutine(
        reentrant()
    )


def test_close_stops_the_threads_and_they_start_again_on_use() -> None:
    workers = Workers(max_threads=2)

    async def loop_thread() -> threading.Thread:
        return threading.current_thread()

    pool = workers.submit(threading.current_thread).result(WAIT)
    loop = workers.run_coroutine(loop_thread())
    workers.close()
    assert not pool.is_alive() and not loop.is_alive()
    # Used again after close: both start afresh.
    assert workers.submit(lambda: "again").result(WAIT) == "again"
    again = workers.run_coroutine(loop_thread())
    assert again is not loop and again.name == "census-receiver-loop"
    workers.close()
    assert not again.is_alive()
    workers.close()  # closing twice, or with nothing started, is fine


def test_close_lets_running_work_finish(workers: Workers) -> None:
    started = threading.Event()
    finished: list[str] = []

    def slow() -> None:
        started.set()
        threading.Event().wait(0.05)
        finished.append("done")

    workers.submit(slow)
    assert started.wait(WAIT)
    workers.close()
    assert finished == ["done"]
