"""The benchmark suite's own checks, run with tiny counts so the scripts keep working.

No speed is asserted here (targets live in ``bench/`` and ``python3 -m bench``):
each in-process group runs once with a quick budget, which still runs every
correctness check, and the checks are shown to catch a contender that answers
wrongly. The peers compared in ``bench.verify`` are the ``bench`` extra; that
group is skipped without them.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from bench import asgi, flask_views, wsgi
from bench.apps import SECRET, Calls, Message, Receive, Scope, Send, bare_asgi
from bench.harness import Budget, CorrectnessError, Figure, failed_musts, make_row, measure
from bench.memory import send_large_body
from bench.serve import Server
from census_receiver.testing import DOCUMENTED_EXAMPLES, sign

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

QUICK = Budget.quick_run()
BODY = json.dumps(DOCUMENTED_EXAMPLES[5]).encode()


@pytest.mark.parametrize("group", [asgi, wsgi, flask_views], ids=lambda g: g.__name__)
def test_in_process_group_passes_its_checks_and_gives_every_figure(group: ModuleType) -> None:
    rows = group.run(QUICK)
    assert [row.title for row in rows] == [figure.title for figure in group.FIGURES]
    assert {row.verdict for row in rows} == {"ran"}
    assert all(row.ratio > 0 for row in rows)


def test_verify_group_checks_census_receiver_and_every_peer() -> None:
    for peer in ("gidgethub", "slack_sdk", "stripe", "standardwebhooks", "svix"):
        pytest.importorskip(peer)
    verify = importlib.import_module("bench.verify")
    titles = [row.title for row in verify.run(QUICK)]
    assert any(title.startswith("receiver.verify / fastest peer") for title in titles)
    for peer in verify.PEERS:
        assert any(title.startswith(f"receiver.verify / {peer} ") for title in titles)
    assert any(title.startswith("verify throughput / raw sha256 (1 MiB)") for title in titles)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_asgi_check_fails_an_app_that_accepts_forged_deliveries(
    loop: asyncio.AbstractEventLoop,
) -> None:
    calls = Calls()

    async def trusting(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        calls.n += 1
        start: Message = {"type": "http.response.start", "status": 200, "headers": []}
        await send(start)
        await send({"type": "http.response.body", "body": b"{}"})

    with pytest.raises(CorrectnessError, match="forged signature got"):
        asgi.check_app(loop, "trusting", trusting, calls, BODY)


def test_asgi_check_fails_an_app_that_refuses_valid_deliveries(
    loop: asyncio.AbstractEventLoop,
) -> None:
    calls = Calls()
    wrong_secret = bare_asgi(calls, secret=b"not the secret")
    with pytest.raises(CorrectnessError, match="valid delivery got"):
        asgi.check_app(loop, "wrong secret", wrong_secret, calls, BODY)


def test_wsgi_check_fails_an_app_that_runs_its_handler_twice() -> None:
    calls = Calls()

    def twice(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        calls.n += 2
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    with pytest.raises(CorrectnessError, match="ran 2 times"):
        wsgi.check_app("twice", twice, calls, BODY)


def test_measure_pairs_one_sample_per_round_for_every_contender() -> None:
    ran: dict[str, int] = {"a": 0, "b": 0}

    def batch(name: str) -> Callable[[int], None]:
        def run(n: int) -> None:
            ran[name] += n

        return run

    samples = measure({"a": batch("a"), "b": batch("b")}, Budget(batch_seconds=0.0, rounds=5))
    assert [len(values) for values in samples.values()] == [5, 5]
    assert ran == {"a": 6, "b": 6}  # one calibration call, then one per round


def test_rate_figure_ratio_is_how_many_times_faster_the_subject_is() -> None:
    samples = {"census": [1e-6, 1e-6, 2e-6], "hand": [2e-6, 3e-6, 4e-6]}
    row = make_row("g", Figure("f", "census", "hand", "rate", must=1.0, aim=2.2), samples)
    assert row.ratio == pytest.approx(2.0)  # per-round ratios 2, 3, 2
    assert row.ratio_min == pytest.approx(2.0)
    assert row.ratio_max == pytest.approx(3.0)
    assert row.verdict == "pass"
    assert row.subject_median == pytest.approx(1e6)  # shown as requests per second


def test_time_figure_missing_its_must_is_a_failure() -> None:
    samples = {"census": [3e-6, 3e-6], "recipe": [2e-6, 2e-6]}
    row = make_row("g", Figure("f", "census", "recipe", "time", must=1.10), samples)
    assert row.ratio == pytest.approx(1.5)
    assert failed_musts([row]) == [row]


def test_served_middleware_app_answers_and_refuses_a_large_body() -> None:
    with Server("middleware") as server:
        assert server.post(BODY, sign(BODY, SECRET)) == 200
        assert server.post(BODY, sign(BODY, b"not the secret")) == 401
        assert server.count() == 1
        assert send_large_body(server.port, 4 * 1_048_576, chunked=True) == 413
        assert server.count() == 1
        assert server.peak_rss() >= server.rss() > 0
        assert server.cpu_seconds() > 0
