"""A suite-wide watch: no log record carries a secret or a computed signature.

``log_secrecy`` is a session-scoped autouse fixture (``tests/conftest.py`` imports
it). For the whole session it:

- lowers the ``census_receiver`` logger to DEBUG, so every record of ours, at
  every level, is created; other libraries' records are seen at the levels
  they are configured for;
- watches, through a handler on the root logger, every record that reaches it,
  from any thread (servers run in threads), with its message, arguments,
  extras, exception text and stack text;
- records every signature computed in the session: each digest the receiver
  computes to check a request (``SecretSet.digest``, in base64 and hex) and
  each ``X-Signature`` the test helpers make (``census_receiver.testing``);
- records every secret handed to our code (each ``SecretSet`` built, which every
  receiver makes, and ``compute_signature`` as ``census_receiver`` and
  ``census_receiver.testing`` export it) that is distinctive enough to search
  for (at least 10 characters, 5 of them different, valid UTF-8), except those
  Hypothesis generates: it draws some from string literals of our own code, log
  messages included, which would then "leak" by construction.

At the end of the session it fails if any record contained one of them. A
record is checked as it is emitted, and only findings are kept, so a long
fuzz run does not hold its log in memory.
"""

from __future__ import annotations

import base64
import logging
import re
import traceback
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest

import census_receiver
import census_receiver.signature as signature_module
import census_receiver.testing as testing_module
from census_receiver.signature import SecretSet, compute_signature

# A 44-character base64 value ending in one "=" (an HMAC-SHA256 in base64), or 64 hex digits.
_TOKEN = re.compile(r"[A-Za-z0-9+/]{43}=|(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")
_STANDARD = frozenset(vars(logging.makeLogRecord({})))
_MAX_SECRETS = 5_000


class SecrecyWatch(logging.Handler):
    """Checks each record against the signatures and secrets seen so far."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.signatures: set[str] = set()
        self.secrets: set[str] = set()
        self.records = 0
        self.leaks: list[str] = []

    def add_digest(self, digest: bytes) -> None:
        self.signatures.add(base64.b64encode(digest).decode("ascii"))
        self.signatures.add(digest.hex())

    def add_secret(self, secret: object) -> None:
        if hypothesis.currently_in_test_context():
            return
        if isinstance(secret, bytes | bytearray | memoryview):
            try:
                secret = bytes(secret).decode("utf-8")
            except UnicodeDecodeError:
                return
        if (
            isinstance(secret, str)
            and len(secret) >= 10
            and len(set(secret)) >= 5
            and len(self.secrets) < _MAX_SECRETS
        ):
            self.secrets.add(secret)

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        text = _record_text(record)
        found = [
            t for t in _TOKEN.findall(text) if t.lower() in self.signatures or t in self.signatures
        ]
        found += [s for s in self.secrets if s in text]
        if found:
            self.leaks.append(
                f"{record.name} {record.levelname}: {found[0][:12]}... in {text[:200]!r}"
            )


def _record_text(record: logging.LogRecord) -> str:
    parts = [str(record.msg)]
    try:
        parts.append(record.getMessage())
    except Exception:  # a malformed record is its author's problem, not a leak
        parts.append(repr(record.args))
    if record.exc_info and record.exc_info[1] is not None:
        parts += traceback.format_exception(record.exc_info[1])
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    parts += [f"{k}={v!r}" for k, v in vars(record).items() if k not in _STANDARD]
    return "\n".join(parts)


@pytest.fixture(scope="session", autouse=True)
def log_secrecy() -> Iterator[SecrecyWatch]:
    """Watch every log record of the session; fail at the end if one leaked a secret."""
    watch = SecrecyWatch()
    real_digest = SecretSet.digest
    real_init = SecretSet.__init__
    real_compute = compute_signature

    def digest(self: SecretSet, body: Any, position: int = 0) -> bytes:
        value = real_digest(self, body, position)
        watch.add_digest(value)
        return value

    def init(self: SecretSet, secrets: Any) -> None:
        for secret in secrets if isinstance(secrets, list | tuple) else ():
            watch.add_secret(secret)
        real_init(self, secrets)

    def compute(body: Any, secret: Any) -> str:
        watch.add_secret(secret)
        value = real_compute(body, secret)
        watch.add_digest(base64.b64decode(value))
        return value

    ours = logging.getLogger("census_receiver")
    root = logging.getLogger()
    level = ours.level
    ours.setLevel(logging.DEBUG)
    root.addHandler(watch)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(SecretSet, "digest", digest)
            patch.setattr(SecretSet, "__init__", init)
            for module in (census_receiver, signature_module, testing_module):
                patch.setattr(module, "compute_signature", compute)
            yield watch
    finally:
        root.removeHandler(watch)
        ours.setLevel(level)
    assert watch.leaks == [], f"{len(watch.leaks)} log records leaked: {watch.leaks[:5]}"
