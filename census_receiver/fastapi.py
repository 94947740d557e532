"""FastAPI: receive the verified Census event in a route of your own.

The ASGI middleware of ``census_receiver.starlette`` works with FastAPI as it
is. For users who prefer their own endpoint, ``census_event(receiver)`` is a
dependency that verifies the delivery, runs the receiver's handlers and gives
the route the typed event::

    @app.post("/webhooks/census")
    async def census(event: Annotated[Event, Depends(census_event(receiver))]) -> dict: ...

Refused deliveries never reach the route: they are answered with the status
every adapter uses (401, 400, 413, ...) through an ``HTTPException``, whose
body is FastAPI's ``{"detail": ...}``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request
from starlette.requests import ClientDisconnect

from .answers import Outcome
from .bodies import BoundedBody
from .events import Event
from .receiver import WebhookReceiver, check_receiver
from .starlette import client_address

__all__ = ["census_event"]


def census_event(receiver: WebhookReceiver) -> Callable[[Request], Awaitable[Event]]:
    """A FastAPI dependency giving the route the verified event of a delivery.

    The route runs only for a new delivery whose handlers succeeded. Every
    other case raises ``HTTPException`` with the status of the HTTP contract
    (405 with ``Allow: POST``, 413, 401, 400, 403, 500 when a handler failed,
    and with dedup on 409 or 503). With dedup on, a duplicate of a delivery
    already handled is answered ``200 {"detail": "duplicate"}`` without calling
    the route: the delivery counts as done once the handlers succeeded, so work
    that must be retried when it fails belongs in a handler, not in the route.

    Args:
        receiver: the receiver that verifies and dispatches deliveries.

    Returns:
        The dependency, for ``Depends(...)``.
    """

    check_receiver(receiver)

    async def verified_census_event(request: Request) -> Event:
        # The client's address, for the journal's log of refused requests.
        remote = client_address(request.scope) if receiver.journal is not None else None
        length = request.headers.get("content-length")
        outcome = receiver.check_request(request.method, length, remote=remote)
        if outcome is None:
            try:
                body = await _read_body(request, receiver.max_body_size)
            except ClientDisconnect:
                raise HTTPException(400, "the client disconnected") from None
            # The no-op endpoint makes the route part of handling: a duplicate is
            # refused even when no handler matches.
            triaged = receiver.triage(body, request.headers, endpoint=_route, remote=remote)
            outcome = triaged if isinstance(triaged, Outcome) else await triaged.run_async()
        if outcome.reason == "handled" and outcome.event is not None:
            return outcome.event
        answer = outcome.json()
        extra = {k: v for k, v in outcome.headers if k not in ("content-type", "content-length")}
        raise HTTPException(outcome.status, answer.get("error", answer.get("status")), extra)

    return verified_census_event


async def _route(event: Event) -> None:
    """Stands for the route, which runs after the dependency returns."""


async def _read_body(request: Request, limit: int) -> bytes:
    """Read the body within ``limit`` (see census_receiver.bodies)."""
    body = BoundedBody(limit)
    async with contextlib.aclosing(request.stream()) as stream:
        async for chunk in stream:
            if not body.add(chunk):
                break
    return body.value()
