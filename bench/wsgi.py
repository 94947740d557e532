"""WSGI, in-process: the WSGI middleware against a bare WSGI app written by hand.

The benchmark builds each ``environ`` (with a fresh ``wsgi.input``) and calls the
app directly, so no server is measured. Figure (requests per second, as a
ratio): ``CensusWebhookMiddleware`` around a 404 app / a bare WSGI app reading
``CONTENT_LENGTH`` bytes, checking the recipe and ``json.loads``-ing the body.

Run on its own with ``python3 -m bench.wsgi``.
"""

from __future__ import annotations

import io
import json
import sys
from typing import TYPE_CHECKING, Any

from census_receiver import WebhookReceiver
from census_receiver.testing import DOCUMENTED_EXAMPLES, sign

from .apps import PATH, SECRET, Calls, close_receivers, wsgi_apps
from .harness import (
    Batch,
    Budget,
    Figure,
    Row,
    check,
    check_counts,
    make_row,
    measure,
    run_alone,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["FIGURES", "drive", "measure_apps", "run"]

GROUP = "wsgi"
#: A full run: up to 61 rounds, capped at 8 s.
BUDGET = Budget(rounds=61, seconds=8.0)

FIGURES = [
    Figure(
        "WSGI middleware / bare WSGI, req/s",
        "WSGI middleware",
        "bare WSGI",
        "rate",
        must=0.80,
        aim=0.90,
    ),
]


def _environ(body: bytes, signature: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": PATH,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "Census-Webhooks/1.0",
        "HTTP_X_SIGNATURE": signature,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def drive(app: WSGIApplication, body: bytes, signature: str, n: int) -> dict[int, int]:
    """Call ``app`` with ``n`` requests, one after the other; count the answers by status.

    Args:
        app: the WSGI app.
        body: the request body.
        signature: the ``X-Signature`` value.
        n: how many requests.

    Returns:
        status -> how many answers had it.
    """
    template = _environ(body, signature)
    statuses: dict[int, int] = {}
    status = 0

    def start_response(line: str, headers: Any, exc_info: Any = None) -> Any:
        nonlocal status
        status = int(line[:3])
        return None

    for _ in range(n):
        environ = dict(template)
        environ["wsgi.input"] = io.BytesIO(body)
        status = 0
        result = app(environ, start_response)
        try:
            b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        statuses[status] = statuses.get(status, 0) + 1
    return statuses


def check_app(name: str, app: WSGIApplication, calls: Calls, body: bytes) -> None:
    """200 and one handler call on a valid delivery; 401 and none on forged ones."""
    valid = sign(body, SECRET)
    before = calls.n
    got = drive(app, body, valid, 1)
    check(got == {200: 1}, f"{name}: a valid delivery got {got}, not 200")
    check(calls.n == before + 1, f"{name}: the handler ran {calls.n - before} times, not once")
    got = drive(app, body, sign(body, b"not the secret"), 1)
    check(got == {401: 1}, f"{name}: a forged signature got {got}, not 401")
    got = drive(app, body.replace(b"3167", b"3168", 1), valid, 1)
    check(got == {401: 1}, f"{name}: a tampered body got {got}, not 401")
    check(calls.n == before + 1, f"{name}: the handler ran for a forged delivery")


def measure_apps(
    apps: dict[str, tuple[WSGIApplication, Calls, WebhookReceiver | None]], budget: Budget
) -> dict[str, list[float]]:
    """Check each app, time them in interleaved rounds, then check every answer was right.

    Args:
        apps: name -> (app, handler counter, receiver or None).
        budget: batch duration and rounds.

    Returns:
        name -> seconds per request, one value per round.

    Raises:
        CorrectnessError: if an app answers wrongly or runs its handler other
            than exactly once per valid request.
    """
    body = json.dumps(DOCUMENTED_EXAMPLES[5]).encode()  # sync.failed
    signature = sign(body, SECRET)
    sent = dict.fromkeys(apps, 0)
    ok = dict.fromkeys(apps, 0)
    contenders: dict[str, Batch] = {}
    for name, (app, calls, _) in apps.items():
        check_app(name, app, calls, body)
        calls.n = 0

        def batch(n: int, name: str = name, app: WSGIApplication = app) -> None:
            got = drive(app, body, signature, n)
            sent[name] += n
            ok[name] += got.get(200, 0)

        contenders[name] = batch
    samples = measure(contenders, budget)
    for name, (_, calls, _) in apps.items():
        check_counts(name, sent[name], ok[name], calls.n)
    return samples


def run(budget: Budget) -> list[Row]:
    """Measure the WSGI figures.

    Args:
        budget: batch duration and rounds.

    Returns:
        The rows, in table order.

    Raises:
        CorrectnessError: if an app answers wrongly.
    """
    apps = wsgi_apps()
    try:
        samples = measure_apps(apps, budget)
    finally:
        close_receivers(apps)
    return [make_row(GROUP, figure, samples, quick=budget.quick) for figure in FIGURES]


def main() -> int:
    """Run this group alone and print its table; non-zero if a must was missed."""
    return run_alone(run, BUDGET)


if __name__ == "__main__":
    sys.exit(main())
