"""Census webhooks in a Starlette app, through the ASGI middleware.

Run it (the secret is the one Census shows when you create the webhook)::

    CENSUS_WEBHOOK_SECRET=... python examples/starlette_app.py [--host H] [--port P]

It listens on http://127.0.0.1:8000 (this machine only) and prints the
``census-receiver send`` command that posts it a signed test delivery. Census
itself posts to a public HTTPS URL: while developing, put a tunnel in front of
this port (docs/local-development.md); in production, an HTTPS reverse proxy
(docs/deploy.md). Then point Census at ``https://<public host>/webhooks/census``.
``--host 0.0.0.0`` listens on every interface, for a proxy on another machine
or a container.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from census_receiver import SyncCompleted, SyncFailed, WebhookReceiver
from census_receiver.starlette import CensusWebhookMiddleware

receiver = WebhookReceiver()  # reads CENSUS_WEBHOOK_SECRET


@receiver.on("sync.failed")
def page_oncall(event: SyncFailed) -> None:
    print(f"sync {event.sync_id} failed in run {event.sync_run_id}")


@receiver.on("sync.completed", status="emergency")
async def open_incident(event: SyncCompleted) -> None:
    print(f"run {event.sync_run_id} ended in an emergency")


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("the rest of your app")


app = Starlette(routes=[Route("/", home)])
app.add_middleware(CensusWebhookMiddleware, receiver=receiver, path="/webhooks/census")

if __name__ == "__main__":
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="Serve this example until Ctrl-C.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (%(default)s)")
    args = parser.parse_args()
    local = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{local}:{args.port}/webhooks/census"
    print(f"Listening on {url}  (Ctrl-C to stop)")
    print("Send a signed test delivery from another terminal (same CENSUS_WEBHOOK_SECRET):")
    print(f"    census-receiver send sync.failed --url {url}", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port)
    finally:
        receiver.close()
    print("stopped")
