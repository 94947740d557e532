"""Census webhooks around any WSGI app, here a bare one served by the standard library.

Run it (the secret is the one Census shows when you create the webhook)::

    CENSUS_WEBHOOK_SECRET=... python examples/wsgi_app.py

The same line wraps Django's ``application`` or any other WSGI callable.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from census_receiver import SyncFailed, WebhookReceiver
from census_receiver.wsgi import CensusWebhookMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

receiver = WebhookReceiver()  # reads CENSUS_WEBHOOK_SECRET


@receiver.on("sync.failed")
def page_oncall(event: SyncFailed) -> None:
    print(f"sync {event.sync_id} failed in run {event.sync_run_id}")


def your_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the rest of your app"]


app = CensusWebhookMiddleware(your_app, receiver=receiver, path="/webhooks/census")

if __name__ == "__main__":
    from wsgiref.simple_server import make_server

    with make_server("127.0.0.1", 8000, app) as server:
        server.serve_forever()
