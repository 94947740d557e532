"""The inspector: a small web page over a journal, for people.

It shows the deliveries, newest first, filtered by status, event, sync or run,
with new ones appearing as they arrive; one delivery with its ids, payload,
answers, attempts and a failed handler's traceback, and a button to replay it;
each sync's runs as a timeline with its health figures; and the requests
refused before verification. Server-rendered HTML, one small static script, no
build step; Jinja2 is the ``inspector`` extra::

    from census_receiver.inspector import Inspector, WSGIInspector

    app.mount("/inspector", Inspector(journal, receiver=receiver, token=token))  # ASGI
    app.wsgi_app = DispatcherMiddleware(                                          # WSGI
        app.wsgi_app, {"/inspector": WSGIInspector(journal, receiver=receiver, token=token)}
    )

It needs credentials to be built: a ``token`` (sent as ``Authorization: Bearer``,
or once as ``?token=``, which sets a cookie) or your own ``auth`` callable.
Request handling is written once, in ``core``; ``Inspector`` (ASGI) and
``WSGIInspector`` only move bytes.
"""

from __future__ import annotations

from .asgi import Inspector
from .messages import InspectorRequest
from .wsgi import WSGIInspector

__all__ = ["Inspector", "InspectorRequest", "WSGIInspector"]
