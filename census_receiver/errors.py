"""The exception tree of census_receiver.

No I/O happens here. Every error a request can cause carries the HTTP status an
adapter answers with (``status_code``) and a short machine-readable ``reason``
used in logs and metrics, so adapters map errors to answers without a table::

    CensusReceiverError                 base; catching it catches everything of ours
    +-- RequestRejected                 the sender's fault; carries .status_code and .reason
    |   +-- MissingSignature     401
    |   +-- InvalidSignature     401    bad base64, duplicate header and digest mismatch alike
    |   +-- MalformedPayload     400    also a ValueError
    |   +-- PayloadTooLarge      413
    |   +-- WorkspaceNotAllowed  403    verified, but from a workspace outside the allowlist
    |   +-- MethodNotAllowed     405
    |   +-- IncompleteBody       400    the client left before sending its whole body
    +-- ConfigurationError              bad setup (empty secret, double init_app); a ValueError
    +-- DedupUnavailable                the dedup store cannot be reached (answered 503)
    +-- NonRetryableError               raised by a handler: log as failed for good, answer 2xx

Messages name what failed and never contain a secret, a digest or the body.
"""

from __future__ import annotations

__all__ = [
    "CensusReceiverError",
    "ConfigurationError",
    "DedupUnavailable",
    "IncompleteBody",
    "InvalidSignature",
    "MalformedPayload",
    "MethodNotAllowed",
    "MissingSignature",
    "NonRetryableError",
    "PayloadTooLarge",
    "RequestRejected",
    "WorkspaceNotAllowed",
]


class CensusReceiverError(Exception):
    """Base class of every exception census_receiver raises."""


class RequestRejected(CensusReceiverError):
    """A delivery was refused because of what the sender sent.

    Attributes:
        status_code: the HTTP status every adapter answers with.
        reason: a short snake_case label for logs and metrics.
    """

    status_code: int = 400
    reason: str = "rejected"


class MissingSignature(RequestRejected):
    """The request carries no ``X-Signature`` header, or an empty one."""

    status_code = 401
    reason = "missing_signature"


class InvalidSignature(RequestRejected):
    """The ``X-Signature`` header is malformed, repeated, or matches no secret."""

    status_code = 401
    reason = "invalid_signature"


class MalformedPayload(RequestRejected, ValueError):
    """The verified body is not a Census event (bad JSON, missing or mistyped field)."""

    status_code = 400
    reason = "malformed_payload"


class PayloadTooLarge(RequestRejected):
    """The body is larger than the receiver's ``max_body_size``."""

    status_code = 413
    reason = "payload_too_large"


class WorkspaceNotAllowed(RequestRejected):
    """A verified delivery names a workspace outside ``allowed_workspaces``."""

    status_code = 403
    reason = "workspace_not_allowed"


class MethodNotAllowed(RequestRejected):
    """The webhook path was called with a method other than POST."""

    status_code = 405
    reason = "method_not_allowed"


class IncompleteBody(RequestRejected):
    """The connection ended before the body announced by Content-Length arrived."""

    status_code = 400
    reason = "incomplete_body"


class ConfigurationError(CensusReceiverError, ValueError):
    """The receiver or an adapter was set up wrongly; the message names the setting."""


class DedupUnavailable(CensusReceiverError):
    """The dedup store could not be reached; the delivery is answered 503 (or run, if fail-open)."""


class NonRetryableError(CensusReceiverError):
    """Raise from a handler when retrying the delivery cannot help.

    The delivery is logged as failed for good, remembered as done by the dedup store,
    and answered 200, since Census retries every non-2xx answer, 4xx included.
    """


def shown_value(value: object) -> str:
    """A rejected setting's value for an error message: numbers as they are, anything
    else by its type only, since a string there may be a secret pasted in the wrong place.
    """
    return repr(value) if type(value) in (int, float, bool) else type(value).__name__


def missing_extra(exc: ModuleNotFoundError, needs: str, extra: str) -> ModuleNotFoundError:
    """The error to raise when an optional dependency is not installed, naming the extra.

    Args:
        exc: the failed import's error.
        needs: what needs it, e.g. ``"census_receiver.flask needs Flask"``.
        extra: the extra that installs it, e.g. ``"flask"``.
    """
    return ModuleNotFoundError(
        f"{needs} ({exc.name} is missing): python3 -m pip install 'census-receiver[{extra}]'",
        name=exc.name,
    )


def check_positive(name: str, value: object, *, unit: str = "", optional: bool = False) -> None:
    """Refuse a setting that is not a positive number (``None`` is fine when ``optional``).

    Args:
        name: the setting, for the message.
        value: its value.
        unit: words after "a positive number", e.g. ``" of seconds"``.
        optional: whether ``None`` is allowed.

    Raises:
        ConfigurationError: naming the setting and the wrong value's type.
    """
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(
            f"{name} must be a positive number{unit}, not {shown_value(value)}"
        )
