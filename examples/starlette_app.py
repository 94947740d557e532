"""Census webhooks in a Starlette app, through the ASGI middleware.

Run it (the secret is the one Census shows when you create the webhook)::

    CENSUS_WEBHOOK_SECRET=... python examples/starlette_app.py

then point Census at http://<host>:8000/webhooks/census.
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
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
