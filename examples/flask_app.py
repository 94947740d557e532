"""Census webhooks in a Flask app, through the ``census_webhook`` view decorator.

Run it (the secret is the one Census shows when you create the webhook)::

    CENSUS_WEBHOOK_SECRET=... python examples/flask_app.py [--host H] [--port P]

It listens on http://127.0.0.1:8000 (this machine only; Flask's development
server) and prints the ``census-receiver send`` command that posts it a signed
test delivery. Census itself posts to a public HTTPS URL: while developing, put
a tunnel in front of this port (docs/local-development.md); in production,
gunicorn behind an HTTPS reverse proxy (docs/deploy.md). Then point Census at
``https://<public host>/webhooks/census``. ``--host 0.0.0.0`` listens on every
interface, for a proxy on another machine or a container.
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
    import argparse

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
        app.run(host=args.host, port=args.port)  # returns on Ctrl-C
    finally:
        receiver.close()
    print("stopped")
