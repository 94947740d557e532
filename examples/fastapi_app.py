"""Census webhooks in a FastAPI app: the middleware, or a route of your own.

Run it (the secret is the one Census shows when you create the webhook)::

    CENSUS_WEBHOOK_SECRET=... python examples/fastapi_app.py

``/webhooks/census`` is answered by the middleware; ``/census/route`` shows the
``census_event`` dependency, for an endpoint you write yourself.
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


@app.post("/census/route")
async def census(event: CensusEvent) -> dict[str, str]:
    # Runs once the delivery is verified and the receiver's handlers succeeded.
    return {"status": "ok", "event": event.event}


@app.get("/")
async def home() -> dict[str, str]:
    return {"app": "the rest of your API"}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
