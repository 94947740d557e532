"""The receiver's settings: defaults, and the checks that turn a bad option into a clear error.

No I/O but reading ``CENSUS_WEBHOOK_SECRET``. Every check raises
``ConfigurationError`` naming the setting and what to write instead, at
construction rather than at the first request, and never echoes a value that
may be a secret.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

from .dedup import DedupStore
from .errors import ConfigurationError, check_positive, shown_value

if TYPE_CHECKING:
    from ._types import Secret

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_PATH",
    "DEFAULT_SLOW_HANDLING",
    "SECRET_ENV_VAR",
    "check_body_limit",
    "check_deadline",
    "check_path",
    "check_positive",
    "check_stores",
    "secrets_from",
    "workspace_ids",
]

#: The environment variable read when no ``secret`` is given.
SECRET_ENV_VAR = "CENSUS_WEBHOOK_SECRET"
#: Census payloads are well under 1 KiB; 1 MiB leaves room and bounds memory.
DEFAULT_MAX_BODY_SIZE = 1_048_576
#: With a store, answer 503 after this many seconds: Census gives up on an
#: attempt after 10 s and would retry anyway.
DEFAULT_DEADLINE = 8.0
#: Where the adapters answer Census unless told otherwise.
DEFAULT_PATH = "/webhooks/census"
#: Log a warning when handling a delivery takes longer than this.
DEFAULT_SLOW_HANDLING = 5.0


def check_path(path: str) -> str:
    """Check an adapter's webhook path.

    Args:
        path: the path the adapter answers, e.g. ``"/webhooks/census"``.

    Returns:
        ``path`` unchanged.

    Raises:
        ConfigurationError: if it does not start with ``/`` (the message leaves the
            value out: some endpoints carry a token in their path).
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigurationError("path must start with '/', e.g. '/webhooks/census'")
    return path


def secrets_from(secret: Secret | Sequence[Secret] | None) -> list[Secret]:
    """The secrets given, or the one in ``CENSUS_WEBHOOK_SECRET`` when ``None``.

    Raises:
        ConfigurationError: for no secret, an empty one, or a wrong type.
    """
    if secret is None:
        from_env = os.environ.get(SECRET_ENV_VAR, "")
        if not from_env:
            raise ConfigurationError(
                f"no webhook secret: pass secret=... or set {SECRET_ENV_VAR} "
                "to the secret Census showed when the webhook was created"
            )
        return [from_env]
    if isinstance(secret, str | bytes):
        if not secret:
            raise ConfigurationError("secret must not be empty")
        return [secret]
    if isinstance(secret, Iterable):
        secrets = list(secret)
        if not secrets:
            raise ConfigurationError("secret must not be an empty list")
        return secrets
    raise ConfigurationError(
        f"secret must be str, bytes or a list of them, not {type(secret).__name__}"
    )


def workspace_ids(allowed: object) -> frozenset[int] | None:
    """``allowed_workspaces`` as a set of ids (``None`` stays ``None``).

    Raises:
        ConfigurationError: for a single id, a string, or ids that are not integers.
    """
    if allowed is None:
        return None
    if isinstance(allowed, str | bytes) or not isinstance(allowed, Iterable):
        raise ConfigurationError(
            f"allowed_workspaces must be a collection of workspace ids, not "
            f"{shown_value(allowed)}: write allowed_workspaces={{{shown_value(allowed)}}}"
        )
    ids = frozenset(allowed)
    if not all(type(w) is int for w in ids):
        raise ConfigurationError("allowed_workspaces must hold integer workspace ids")
    return ids


def check_body_limit(max_body_size: object) -> int:
    """Check ``max_body_size``: a positive number of bytes.

    Raises:
        ConfigurationError: naming the wrong value's type.
    """
    if isinstance(max_body_size, bool) or not isinstance(max_body_size, int) or max_body_size < 1:
        raise ConfigurationError(
            "max_body_size must be a positive number of bytes, not " + shown_value(max_body_size)
        )
    return max_body_size


def check_deadline(deadline: float | None) -> float | None:
    """Check ``deadline``: ``None``, or positive and under Census's 10 s.

    Raises:
        ConfigurationError: for a wrong value.
    """
    check_positive("deadline", deadline, optional=True)
    if deadline is not None and deadline >= 10:
        raise ConfigurationError(
            "deadline must be under 10 seconds: Census gives up on a delivery after 10 s"
        )
    return deadline


def check_stores(
    dedup: object,
    dedup_key: object,
    journal: object,
    acknowledge: str,
    deadline: float | Literal["auto"] | None,
) -> float | None:
    """Check how deliveries are stored and answered, and resolve the deadline.

    Returns:
        The deadline to keep: ``"auto"`` is ``DEFAULT_DEADLINE`` with a store or
        journal and ``None`` without.

    Raises:
        ConfigurationError: for a deadline without a store, a store or journal
            of the wrong type or both at once, a ``dedup_key`` that is not
            callable, an unknown ``acknowledge``, or acknowledging on capture
            without a journal.
    """
    stored = dedup is not None or journal is not None
    if deadline == "auto":
        deadline = DEFAULT_DEADLINE if stored else None
    elif check_deadline(deadline) is not None and not stored:
        raise ConfigurationError(
            "deadline= needs dedup= or journal=: without a store nothing holds a "
            "delivery that a 503 would leave running, so Census's retry would run its "
            "handlers twice; leave deadline out"
        )
    if dedup is not None and not isinstance(dedup, DedupStore):
        raise ConfigurationError(
            "dedup must be a store from census_receiver.dedup (InMemoryDedupStore, "
            f"RedisDedupStore, AsyncRedisDedupStore), not {type(dedup).__name__}"
        )
    if dedup_key is not None and not callable(dedup_key):
        raise ConfigurationError("dedup_key must be a function of (event, body)")
    if journal is not None and dedup is not None:
        raise ConfigurationError(
            "give journal= or dedup=, not both: a journal is the receiver's dedup "
            "store too (it answers duplicates itself)"
        )
    if journal is not None:
        # Imported only with a journal: the journal package loads sqlite3.
        from .journal.base import Journal

        if not isinstance(journal, Journal):
            raise ConfigurationError(
                "journal must be a journal from census_receiver.journal (SQLiteJournal, "
                f"PostgresJournal), not {type(journal).__name__}"
            )
    if acknowledge not in ("after_handlers", "on_capture"):
        raise ConfigurationError(
            f"acknowledge must be 'after_handlers' or 'on_capture', not {acknowledge!r}"
        )
    if acknowledge == "on_capture" and journal is None:
        raise ConfigurationError(
            "acknowledge='on_capture' needs a journal to capture deliveries in: "
            "pass journal=SQLiteJournal(path) (or PostgresJournal)"
        )
    return deadline
