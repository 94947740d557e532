"""Census webhooks in a FastAPI app: the middleware, or a route of your own.

Run it (the secret is the one Census shows when you create the webhook)::

    CENSUS_WEBHOOK_SECRET=... python examples/fastapi_app.py [--host H] [--port P]

``/webhooks/census`` is answered by the middleware; ``/census/events`` shows the
``census_event`` dependency, for an endpoint you write yourself (the same
routes as docs/fastapi.md).

It listens on http://127.0.0.1:8000 (this machine only) and prints the
``census-receiver send`` command that posts it a signed test delivery. Census
itself posts to a public HTTPS URL: while developing, put a tunnel in front of
this port (docs/local-development.md); in production, an HTTPS reverse proxy
(docs/deploy.md). Then point Census at ``https://<public host>/webhooks/census``.
``--host 0.0.0.0`` listens on every interface, for a proxy on another machine
or a container.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI

from census_receiver import Event, SyncFailed, WebhookReceiver
from census_receiver.fastapi import census_event
from census_receiver.starlette import CensusWebhookMiddleware

receiver = WebhookReceiver()  # reads CENSUS_WEBHOOK_SECRET


@receiver.on("sync.failed")
async def page_oncall(event: SyncFailed) -> None:
    print(f"sync {event.sync_id} failed in run {event.sync_run_id}")


app = FastAPI()
app.add_middleware(CensusWebhookMiddleware, receiver=receiver, path="/webhooks/census")

CensusEvent = Annotated[Event, Depends(census_event(receiver))]


@app.post("/census/events")
async def census(event: CensusEvent) -> dict[str, str]:
    # Runs once the delivery is verified and the receiver's handlers succeeded.
    return {"status": "ok", "event": event.event}


@app.get("/")
async def home() -> dict[str, str]:
    return {"app": "the rest of your API"}


if __name__ == "__main__":
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="Serve this example until Ctrl-C.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (%(default)s)")
    args = parser.parse_args()
    local = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    base = f"http://{local}:{args.port}"
    url = f"{base}/webhooks/census"
    print(f"Listening on {url}  (Ctrl-C to stop)")
    print("Send a signed test delivery from another terminal (same CENSUS_WEBHOOK_SECRET):")
    print(f"    census-receiver send sync.failed --url {url}")
    print(f"(the census_event route is {base}/census/events: send there too)", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port)
    finally:
        receiver.close()
    print("stopped")
