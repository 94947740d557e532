"""Flask: the ``census_webhook`` view decorator and the ``CensusWebhooks`` extension.

A decorated view is called with the verified event, after the receiver's
handlers, as part of handling (with dedup on, a duplicate does not call it)::

    @app.post("/webhooks/census")
    @census_webhook(receiver)
    def census(event: Event) -> None: ...

Or, with no view code at all, ``CensusWebhooks(app)`` registers the endpoint
from the ``CENSUS_WEBHOOK_*`` config keys. Async handlers and views run on the
receiver's own event loop, so ``flask[async]`` is not needed.
"""

from __future__ import annotations

import functools
import gc
import io
import warnings
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .errors import ConfigurationError, missing_extra

try:
    from flask import Flask, current_app, request
except ModuleNotFoundError as exc:  # pragma: no cover - depends on what is installed
    raise missing_extra(exc, "census_receiver.flask needs Flask", "flask") from None

from .answers import Outcome
from .receiver import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_PATH,
    WebhookReceiver,
    check_path,
    check_receiver,
)
from .routing import RegistrationWarning, check_registration
from .wsgi import handle_environ

if TYPE_CHECKING:
    from flask.typing import ResponseReturnValue

    from .events import Event

__all__ = ["CensusWebhooks", "census_webhook"]

_F = TypeVar("_F", bound=Callable[..., Any])
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def census_webhook(
    receiver: WebhookReceiver,
) -> Callable[[Callable[..., Any]], Callable[..., ResponseReturnValue]]:
    """Make a view receive verified Census deliveries.

    The view is called as ``view(event, **url_values)`` once the receiver's
    handlers succeeded; what it returns is the answer, and ``None`` gives the
    default ``200 {"status": "ok"}``. Refused deliveries never reach it. The raw
    body is read first, whatever its content type, so ``request.get_json()``
    still works in the view.

    Args:
        receiver: the receiver that verifies and dispatches deliveries.

    Returns:
        A view decorator.
    """

    if not isinstance(receiver, WebhookReceiver):
        if callable(receiver):
            raise ConfigurationError(
                "census_webhook needs the receiver: write @census_webhook(receiver) "
                f"above {getattr(receiver, '__name__', 'the view')}, below @app.post(...)"
            )
        check_receiver(receiver)

    def decorate(view: Callable[..., Any]) -> Callable[..., ResponseReturnValue]:
        if _registered_already(view):
            name = getattr(view, "__name__", "the view")
            raise ConfigurationError(
                f"@census_webhook(receiver) is above the route decorator on {name}: Flask "
                "registered the bare view, which would be called without its event; put "
                "@census_webhook(receiver) below @app.post(...)"
            )

        @functools.wraps(view)
        def webhook(**values: Any) -> ResponseReturnValue:
            # URL values go along; the name stays the view's, for the logs.
            endpoint = functools.wraps(view)(functools.partial(view, **values)) if values else view
            outcome = _handle(receiver, endpoint)
            if outcome.result is not None:
                return cast("ResponseReturnValue", outcome.result)
            return _response(outcome)

        return webhook

    return decorate


def _registered_already(view: Callable[..., Any]) -> bool:
    """Whether a Flask app already serves ``view`` itself (decorators in the wrong order).

    Decorators apply bottom up: ``@census_webhook(receiver)`` written above
    ``@app.post(...)`` wraps a function the app has registered already. Only the
    app's ``view_functions`` dict holds it then, which the garbage collector can
    tell (once per decorated view, at import).
    """
    for holder in gc.get_referrers(view):
        if isinstance(holder, dict) and any(value is view for value in holder.values()):
            for owner in gc.get_referrers(holder):
                # The app's attributes: its __dict__, or (if kept apart) the app itself.
                attributes = owner if isinstance(owner, dict) else getattr(owner, "__dict__", {})
                if attributes.get("view_functions") is holder:
                    return True
    return False


def _handle(receiver: WebhookReceiver, endpoint: Callable[[Event], object] | None) -> Outcome:
    return handle_environ(receiver, request.environ, endpoint, on_body=_refill_stream)


def _refill_stream(body: bytes) -> None:
    request.stream = io.BytesIO(body)  # Werkzeug's cached stream, refilled for the view


def _response(outcome: Outcome) -> ResponseReturnValue:
    return current_app.response_class(outcome.body, outcome.status, list(outcome.headers))


class CensusWebhooks:
    """Flask extension serving the webhook endpoint from app config, with no view code.

    ``init_app`` reads ``CENSUS_WEBHOOK_SECRET`` (a secret or a list; unset falls
    back to the environment variable of that name), ``CENSUS_WEBHOOK_PATH``
    (``/webhooks/census``) and ``CENSUS_WEBHOOK_MAX_BODY_SIZE`` (1 MiB), and
    builds a receiver per app, unless one is given.

    Args:
        app: the app to set up now; or call ``init_app`` later (app factories).
        receiver: a receiver to use for every app instead of building one.
        **options: other ``WebhookReceiver`` keywords (``dedup=...``) for the
            receivers built from config.

    Raises:
        ConfigurationError: if both ``receiver`` and ``options`` are given.
    """

    def __init__(
        self, app: Flask | None = None, *, receiver: WebhookReceiver | None = None, **options: Any
    ) -> None:
        if receiver is not None and options:
            raise ConfigurationError("give either receiver=... or receiver options, not both")
        self._receiver = receiver
        self._options = options
        self._receivers: weakref.WeakKeyDictionary[Flask, WebhookReceiver] = (
            weakref.WeakKeyDictionary()
        )
        self._registrations: list[Callable[[WebhookReceiver], object]] = []
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the webhook endpoint on ``app``.

        Args:
            app: the Flask app.

        Raises:
            ConfigurationError: if this or another ``CensusWebhooks`` is already
                registered on ``app``, or if there is no secret.
        """
        if "census_receiver" in app.extensions:
            raise ConfigurationError(
                "CensusWebhooks is already registered on this app: CensusWebhooks(app) calls "
                "init_app(app) itself, so use one or the other, once per app"
            )
        config = app.config
        config.setdefault("CENSUS_WEBHOOK_SECRET", None)
        config.setdefault("CENSUS_WEBHOOK_PATH", DEFAULT_PATH)
        config.setdefault("CENSUS_WEBHOOK_MAX_BODY_SIZE", DEFAULT_MAX_BODY_SIZE)
        receiver = self._receiver
        if receiver is None:
            receiver = WebhookReceiver(
                config["CENSUS_WEBHOOK_SECRET"],
                max_body_size=config["CENSUS_WEBHOOK_MAX_BODY_SIZE"],
                **self._options,
            )
            for register in self._registrations:
                register(receiver)
        self._receivers[app] = receiver
        app.extensions["census_receiver"] = self
        try:
            check_path(config["CENSUS_WEBHOOK_PATH"])
        except ConfigurationError:
            raise ConfigurationError(
                "CENSUS_WEBHOOK_PATH must start with '/', e.g. '/webhooks/census'"
            ) from None
        app.add_url_rule(
            config["CENSUS_WEBHOOK_PATH"],
            endpoint="census_receiver",
            view_func=lambda: _response(_handle(receiver, None)),
            methods=_METHODS,  # every method reaches the receiver: 405 with Allow: POST
            provide_automatic_options=False,
        )

    @property
    def receiver(self) -> WebhookReceiver:
        """The receiver of the current app (or the one given to the constructor).

        Raises:
            ConfigurationError: if ``init_app`` was not called for the current app.
        """
        if self._receiver is not None:
            return self._receiver
        receiver = self._receivers.get(current_app._get_current_object())  # type: ignore[attr-defined]
        if receiver is None:
            raise ConfigurationError(
                "CensusWebhooks is not set up on this app: call init_app first"
            )
        return receiver

    def on(self, *patterns: str, **filters: Any) -> Callable[[_F], _F]:
        """Register a handler on every app's receiver, as ``WebhookReceiver.on`` does.

        Registrations made before ``init_app`` apply to receivers built later.

        Args:
            *patterns: event names or shell-style patterns.
            **filters: payload fields the event must have.

        Returns:
            A decorator that registers the function and returns it unchanged.
        """

        checked = check_registration(patterns, filters, stacklevel=2)

        def decorate(handler: _F) -> _F:
            def register(receiver: WebhookReceiver) -> None:
                # Checked (and warned about) once above, at the user's line.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RegistrationWarning)
                    receiver.on(*checked, **filters)(handler)

            self._register(register)
            return handler

        return decorate

    def on_error(self, hook: _F) -> _F:
        """Register an error hook on every app's receiver, as ``WebhookReceiver.on_error`` does.

        Args:
            hook: called as ``hook(exc, event)`` when a handler fails.

        Returns:
            ``hook`` unchanged.
        """
        self._register(lambda receiver: receiver.on_error(hook))
        return hook

    def _register(self, register: Callable[[WebhookReceiver], object]) -> None:
        if self._receiver is not None:
            register(self._receiver)
            return
        self._registrations.append(register)
        for receiver in self._receivers.values():
            register(receiver)
