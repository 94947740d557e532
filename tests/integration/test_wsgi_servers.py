"""The WSGI middleware under real servers on 127.0.0.1: Werkzeug's, and gunicorn.

Both serve ``wsgi_target.create_app()``, one server per module and kind; what
it handled is read back through its pass-through ``GET /count`` route, since
gunicorn runs in another process. Tests use distinct sync_run_ids and compare
counts before and after, so they share a server.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from census_receiver.testing import make_delivery
from tests.adapter_contract import LIMIT, PATH, WAIT, wait_for
from tests.conftest import SECRET
from tests.integration.conftest import (
    Served,
    connection,
    deliver_many,
    read_response,
    request_bytes,
)
from tests.integration.wsgi_target import create_app

TARGET = "tests.integration.wsgi_target:create_app()"


@pytest.fixture(scope="module", params=["werkzeug", "gunicorn"])
def server(
    request: pytest.FixtureRequest,
    werkzeug_server: Callable[[Any], Served],
    gunicorn_server: Callable[[str], Served],
) -> Served:
    if request.param == "werkzeug":
        return werkzeug_server(create_app(SECRET))
    return gunicorn_server(TARGET)


def report(server: Served) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{server.url}/count", timeout=WAIT).json()
    return answer


@pytest.fixture
def quiet(server: Served, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test if the server logged an error (gunicorn: its error log file)."""
    with caplog.at_level(logging.INFO):
        yield
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    if isinstance(server.handle, Path):
        log = server.handle.read_text()
        assert "[ERROR]" not in log and "Traceback" not in log, log


def test_hundreds_of_concurrent_deliveries_are_each_handled_once(server: Served) -> None:
    runs = range(1000, 1300)
    statuses = deliver_many(server.url, runs)
    assert Counter(statuses) == {200: 300}
    handled = report(server)["handled"]
    assert [handled.get(str(n)) for n in runs] == [1] * 300


def test_forged_deliveries_are_all_refused(server: Served) -> None:
    runs = range(2000, 2300)
    statuses = deliver_many(server.url, runs, forged=True)
    assert Counter(statuses) == {401: 300}
    assert set(report(server)["handled"]).isdisjoint(str(n) for n in runs)


def test_chunked_body_over_the_limit_is_answered_413(server: Served, quiet: None) -> None:
    with connection(server) as sock:
        sock.sendall(request_bytes(b"x" * (LIMIT * 8), signature="x", chunk=True))
        assert read_response(sock)[0] == 413
    d = make_delivery("sync.failed", secret=SECRET, sync_run_id=3000)
    with connection(server) as sock:  # within the limit, chunked works
        sock.sendall(request_bytes(d.body, signature=d.headers["X-Signature"], chunk=True))
        assert read_response(sock)[0] == 200
    assert report(server)["handled"]["3000"] == 1


def test_client_leaving_mid_body_leaves_the_server_healthy(server: Served, quiet: None) -> None:
    before = report(server)
    d = make_delivery("sync.failed", secret=SECRET, sync_run_id=4000)
    with connection(server) as sock:
        sock.sendall(request_bytes(d.body, signature=d.headers["X-Signature"])[:-20])
    wait_for(lambda: report(server)["finished"] == before["finished"] + 1)
    assert "4000" not in report(server)["handled"]
    assert deliver_many(server.url, range(4001, 4004)) == [200] * 3


def test_other_routes_get_their_body_unchanged(server: Served) -> None:
    body = bytes(range(256)) * 64  # 16 KiB, far over the webhook limit
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        assert client.post("/echo", content=body).content == body
        answer = client.get(PATH)
    assert (answer.status_code, answer.headers["allow"]) == (405, "POST")
