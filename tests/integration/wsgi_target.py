"""The WSGI app the WSGI servers serve: the middleware around a tiny app that reports.

``GET /count`` answers how many times each sync_run_id was handled and how many
webhook requests have finished (refused and abandoned ones included), so a test
can check a server in another process. gunicorn loads it as
``tests.integration.wsgi_target:create_app()``, with the secret in
``CENSUS_WEBHOOK_SECRET``.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from census_receiver import Event, WebhookReceiver
from census_receiver.wsgi import CensusWebhookMiddleware
from tests.adapter_contract import LIMIT, PATH

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def create_app(secret: str | None = None) -> WSGIApplication:
    receiver = WebhookReceiver(secret, max_body_size=LIMIT)
    handled: Counter[int | None] = Counter()
    finished = 0
    lock = threading.Lock()

    @receiver.on("*")
    def count(event: Event) -> None:
        with lock:
            handled[event.sync_run_id] += 1

    def report(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/echo":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        else:
            with lock:
                counts = {"handled": dict(handled), "finished": finished}
                body = json.dumps(counts).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    webhook = CensusWebhookMiddleware(report, receiver=receiver)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        nonlocal finished
        try:
            return webhook(environ, start_response)
        finally:
            if environ["PATH_INFO"] == PATH:
                with lock:
                    finished += 1

    return app
