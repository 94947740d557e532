"""Census webhooks around any WSGI app, here a bare one served by the standard library.

Run it (the secret is the one Census shows when you create the webhook)::

    CENSUS_WEBHOOK_SECRET=... python examples/wsgi_app.py [--host H] [--port P]

The same line wraps Django's ``application`` or any other WSGI callable.

It listens on http://127.0.0.1:8000 (this machine only; the standard library's
server, for trying it out) and prints the ``census-receiver send`` command that
posts it a signed test delivery. Census itself posts to a public HTTPS URL:
while developing, put a tunnel in front of this port
(docs/local-development.md); in production, gunicorn behind an HTTPS reverse
proxy (docs/deploy.md). Then point Census at
``https://<public host>/webhooks/census``. ``--host 0.0.0.0`` listens on every
interface, for a proxy on another machine or a container.
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
    import argparse
    from wsgiref.simple_server import make_server

    parser = argparse.ArgumentParser(description="Serve this example until Ctrl-C.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (%(default)s)")
    args = parser.parse_args()
    local = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{local}:{args.port}/webhooks/census"
    with make_server(args.host, args.port, app) as server:
        print(f"Listening on {url}  (Ctrl-C to stop)")
        print("Send a signed test delivery from another terminal (same CENSUS_WEBHOOK_SECRET):")
        print(f"    census-receiver send sync.failed --url {url}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass  # Ctrl-C: stop like the other examples, without a traceback
        finally:
            receiver.close()
    print("stopped")
