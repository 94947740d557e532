"""Census webhooks in a Flask app, through the ``census_webhook`` view decorator.

Run it (the secret is the one Census shows when you create the webhook)::

    CENSUS_WEBHOOK_SECRET=... python examples/flask_app.py
"""

from __future__ import annotations

from flask import Flask

from census_receiver import Event, SyncFailed, WebhookReceiver
from census_receiver.flask import census_webhook

receiver = WebhookReceiver()  # reads CENSUS_WEBHOOK_SECRET


@receiver.on("sync.failed")
def page_oncall(event: SyncFailed) -> None:
    print(f"sync {event.sync_id} failed in run {event.sync_run_id}")


app = Flask(__name__)


@app.post("/webhooks/census")
@census_webhook(receiver)
def census(event: Event) -> dict[str, str] | None:
    # Called after the receiver's handlers, with the verified event; None answers 200.
    if event.event == "sync.success":
        return {"status": "ok", "note": "nice"}
    return None


@app.get("/")
def home() -> str:
    return "the rest of your app"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=8000)
