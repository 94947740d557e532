"""ASGI, in-process: the middleware against a bare ASGI app and a Starlette route by hand.

The benchmark builds ``scope``/``receive``/``send`` itself and awaits each app
directly on one event loop, so no server or socket is measured: only what the
app does with a request. Figures (requests per second, as ratios):

- a Starlette app with ``CensusWebhookMiddleware`` / the same Starlette app with
  the webhook route written by hand (``await request.body()``, recipe, json);
- the middleware around a 404 app / a bare pure-ASGI app doing the same by hand;
- both again with a sync handler (run in a worker thread, as Starlette runs sync
  endpoints), for what that choice costs.

Run on its own with ``python3 -m bench.asgi``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from census_receiver.testing import DOCUMENTED_EXAMPLES, sign

from .apps import ASGI, PATH, SECRET, Calls, Message, asgi_apps, close_receivers
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

__all__ = ["FIGURES", "drive", "run"]

GROUP = "asgi"
#: A full run: up to 61 rounds of six apps, capped at 20 s.
BUDGET = Budget(rounds=61, seconds=20.0)

FIGURES = [
    Figure(
        "middleware in Starlette / Starlette by hand, req/s",
        "middleware in Starlette",
        "Starlette by hand",
        "rate",
        must=1.0,
        aim=2.2,
    ),
    Figure(
        "middleware / bare ASGI, req/s",
        "middleware",
        "bare ASGI",
        "rate",
        must=0.80,
        aim=0.90,
    ),
    Figure(
        "middleware in Starlette, sync handler / Starlette by hand, req/s",
        "middleware in Starlette (sync handler)",
        "Starlette by hand",
        "rate",
    ),
    Figure(
        "middleware, sync handler / bare ASGI, req/s",
        "middleware (sync handler)",
        "bare ASGI",
        "rate",
    ),
]


def _scope(body: bytes, signature: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"Census-Webhooks/1.0"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-signature", signature),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def drive(app: ASGI, body: bytes, signature: bytes, n: int) -> dict[int, int]:
    """Send ``n`` requests to ``app``, one after the other; count the answers by status.

    Args:
        app: the ASGI app.
        body: the request body.
        signature: the ``X-Signature`` value.
        n: how many requests.

    Returns:
        status -> how many answers had it.
    """
    template = _scope(body, signature)
    request: Message = {"type": "http.request", "body": body, "more_body": False}
    statuses: dict[int, int] = {}
    status = 0

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    for _ in range(n):
        delivered = False

        async def receive() -> Message:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return request

        status = 0
        await app(dict(template), receive, send)
        statuses[status] = statuses.get(status, 0) + 1
    return statuses


def check_app(
    loop: asyncio.AbstractEventLoop, name: str, app: ASGI, calls: Calls, body: bytes
) -> None:
    """200 and one handler call on a valid delivery; 401 and none on forged ones."""
    valid = sign(body, SECRET).encode()
    before = calls.n
    got = loop.run_until_complete(drive(app, body, valid, 1))
    check(got == {200: 1}, f"{name}: a valid delivery got {got}, not 200")
    check(calls.n == before + 1, f"{name}: the handler ran {calls.n - before} times, not once")
    forged = sign(body, b"not the secret").encode()
    got = loop.run_until_complete(drive(app, body, forged, 1))
    check(got == {401: 1}, f"{name}: a forged signature got {got}, not 401")
    tampered = body.replace(b"3167", b"3168", 1)
    got = loop.run_until_complete(drive(app, tampered, valid, 1))
    check(got == {401: 1}, f"{name}: a tampered body got {got}, not 401")
    check(calls.n == before + 1, f"{name}: the handler ran for a forged delivery")


def run(budget: Budget) -> list[Row]:
    """Measure the ASGI figures.

    Args:
        budget: batch duration and rounds.

    Returns:
        The rows, in table order.

    Raises:
        CorrectnessError: if an app answers wrongly or runs its handler other
            than exactly once per valid request.
    """
    body = json.dumps(DOCUMENTED_EXAMPLES[5]).encode()  # sync.failed
    signature = sign(body, SECRET).encode()
    loop = asyncio.new_event_loop()
    apps = asgi_apps()
    sent = dict.fromkeys(apps, 0)
    ok = dict.fromkeys(apps, 0)
    contenders: dict[str, Batch] = {}
    try:
        for name, (app, calls, _) in apps.items():
            check_app(loop, name, app, calls, body)
            calls.n = 0

            def batch(n: int, name: str = name, app: ASGI = app) -> None:
                got = loop.run_until_complete(drive(app, body, signature, n))
                sent[name] += n
                ok[name] += got.get(200, 0)

            contenders[name] = batch
        samples = measure(contenders, budget)
        for name, (_, calls, _) in apps.items():
            check_counts(name, sent[name], ok[name], calls.n)
    finally:
        close_receivers(apps)
        loop.close()
    return [make_row(GROUP, figure, samples, quick=budget.quick) for figure in FIGURES]


def main() -> int:
    """Run this group alone and print its table; non-zero if a must was missed."""
    return run_alone(run, BUDGET)


if __name__ == "__main__":
    sys.exit(main())
