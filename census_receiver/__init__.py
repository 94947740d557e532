"""census_receiver: verified, typed, routed Census sync-lifecycle webhooks.

Importing this package loads no web framework: adapters live in
``census_receiver.starlette``, ``census_receiver.flask`` and
``census_receiver.wsgi``.
"""

from __future__ import annotations

from .answers import Outcome
from .delivery import VerifiedDelivery
from .errors import (
    CensusReceiverError,
    ConfigurationError,
    DedupUnavailable,
    IncompleteBody,
    InvalidSignature,
    MalformedPayload,
    MethodNotAllowed,
    MissingSignature,
    NonRetryableError,
    PayloadTooLarge,
    RequestRejected,
    WorkspaceNotAllowed,
)
from .events import (
    EVENT_TYPES,
    Event,
    SyncAlertRaised,
    SyncAlertResolved,
    SyncCompleted,
    SyncFailed,
    SyncStarted,
    SyncSuccess,
    SyncTriggered,
    parse_event,
)
from .receiver import WebhookReceiver
from .routing import RegistrationWarning
from .signature import SIGNATURE_HEADER, compute_signature
from .stats import ReceiverStats

__version__ = "0.1.0"

__all__ = [
    "EVENT_TYPES",
    "SIGNATURE_HEADER",
    "CensusReceiverError",
    "ConfigurationError",
    "DedupUnavailable",
    "Event",
    "IncompleteBody",
    "InvalidSignature",
    "MalformedPayload",
    "MethodNotAllowed",
    "MissingSignature",
    "NonRetryableError",
    "Outcome",
    "PayloadTooLarge",
    "ReceiverStats",
    "RegistrationWarning",
    "RequestRejected",
    "SyncAlertRaised",
    "SyncAlertResolved",
    "SyncCompleted",
    "SyncFailed",
    "SyncStarted",
    "SyncSuccess",
    "SyncTriggered",
    "VerifiedDelivery",
    "WebhookReceiver",
    "WorkspaceNotAllowed",
    "__version__",
    "compute_signature",
    "parse_event",
]
