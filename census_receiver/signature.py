"""Census ``X-Signature`` computation and verification.

No I/O, no JSON, no web framework. Census signs each delivery with
``base64(HMAC-SHA256(key=secret, msg=raw body))``, standard alphabet with ``=``
padding. Verification here is over the exact bytes received.

Strategy: HMAC is ``H(k ^ opad || H(k ^ ipad || body))``. The two keyed SHA-256
states after absorbing ``k ^ ipad`` and ``k ^ opad`` depend only on the secret, so
they are built once per secret and copied per request (hashlib's ``copy`` is a C
memcpy), instead of re-deriving the padded key on every call.

Census sends exactly the canonical encoding of the digest, so ``SecretSet.check``
first compares the header value with each secret's digest encoded that way
(``hmac.compare_digest``): an exact match is well-formed by construction.
Anything else is decoded strictly (``decode_signature``), which tolerates
surrounding whitespace, says what is wrong with a malformed value, and is
compared digest to digest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from binascii import b2a_base64
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from .errors import ConfigurationError, InvalidSignature, MissingSignature

if TYPE_CHECKING:
    from ._types import Body, Headers, Secret

__all__ = [
    "SIGNATURE_HEADER",
    "SecretSet",
    "compute_signature",
    "decode_signature",
    "signature_from_headers",
]

#: The header Census puts the signature in (header lookups ignore case).
SIGNATURE_HEADER = "x-signature"
_SIGNATURE_HEADER_BYTES = b"x-signature"
_NAME_SIZE = len(SIGNATURE_HEADER)
_BLOCK_SIZE = 64  # SHA-256 block size, in bytes
_DIGEST_SIZE = 32
_ENCODED_SIZE = 44  # len(base64 of 32 bytes), padding included
_WHITESPACE = " \t\n\r\x0b\x0c"  # what bytes.strip() removes
_WHITESPACE_BYTES = _WHITESPACE.encode("ascii")
_LAST_DATA_CHAR = 42
# Base64 characters whose two low bits are zero: those that may precede the "=".
_CANONICAL_LAST = frozenset(b"AEIMQUYcgkosw048")
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _secret_bytes(secret: Secret) -> bytes:
    if isinstance(secret, str):
        return secret.encode("utf-8")
    if isinstance(secret, bytes | bytearray | memoryview):
        return bytes(secret)
    raise ConfigurationError(f"a secret must be str or bytes, not {type(secret).__name__}")


def compute_signature(body: Body, secret: Secret) -> str:
    """Compute the ``X-Signature`` value Census sends for ``body``.

    Args:
        body: the exact request body.
        secret: the webhook's secret; a ``str`` is used as its UTF-8 bytes.

    Returns:
        The standard base64 (44 characters, ``=`` padded) of HMAC-SHA256.

    Raises:
        ConfigurationError: if the secret is empty or not ``str``/``bytes``.
    """
    key = _secret_bytes(secret)
    if not key:
        raise ConfigurationError("secret must not be empty")
    digest = hmac.new(key, body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def decode_signature(value: str | bytes | None) -> bytes:
    """Decode an ``X-Signature`` header value into the 32-byte digest it claims.

    Surrounding ASCII whitespace is tolerated; anything else that is not exactly
    44 characters of canonical, standard, padded base64 is refused (hex,
    URL-safe, unpadded, non-ASCII, wrong length, non-zero unused bits).

    Args:
        value: the header value, as ``str`` or ``bytes``, or ``None`` if absent.

    Returns:
        The 32 digest bytes.

    Raises:
        MissingSignature: if the value is absent or blank.
        InvalidSignature: if it is not a well-formed signature.
    """
    if value is None:
        raise MissingSignature("the X-Signature header is missing")
    try:
        # Only ASCII whitespace: str.strip() would also drop U+00A0, U+2028 and
        # other non-ASCII spaces a server may pass through from the raw bytes.
        raw = (
            value.strip(_WHITESPACE).encode("ascii")
            if isinstance(value, str)
            else value.strip(_WHITESPACE_BYTES)
        )
    except UnicodeEncodeError:
        raise InvalidSignature("the X-Signature header is not base64") from None
    if not raw:
        raise MissingSignature("the X-Signature header is empty")
    if len(raw) != _ENCODED_SIZE:
        raise InvalidSignature(
            "the X-Signature header is not a base64 HMAC-SHA256 digest (wrong length)"
        )
    try:
        digest = binascii.a2b_base64(raw, strict_mode=True)
    except ValueError:
        # binascii.Error is a ValueError: bad alphabet, bad padding, non-ASCII bytes.
        raise InvalidSignature("the X-Signature header is not standard base64") from None
    if len(digest) != _DIGEST_SIZE:
        raise InvalidSignature(
            "the X-Signature header is not a base64 HMAC-SHA256 digest (wrong length)"
        )
    if raw[_LAST_DATA_CHAR] not in _CANONICAL_LAST:
        # The 43rd character also carries 2 unused bits, which a decoder ignores:
        # refuse the 3 other spellings of each digest, so one value is accepted.
        raise InvalidSignature("the X-Signature header is not canonical base64")
    return digest


def signature_from_headers(headers: Headers) -> str | bytes | None:
    """Find the one ``X-Signature`` value among ``headers``, ignoring name case.

    Args:
        headers: a mapping (one with ``getlist``, such as Starlette's or Werkzeug's,
            is asked for every value) or an iterable of name/value pairs.

    Returns:
        The value, or ``None`` when there is no such header.

    Raises:
        InvalidSignature: if the header appears more than once.
    """
    found: list[str | bytes] = []
    # ASGI's scope["headers"] is a list of pairs: scan it without the ABC checks.
    getlist = None if type(headers) is list else getattr(headers, "getlist", None)
    if getlist is not None:
        found = list(getlist(SIGNATURE_HEADER))
    elif type(headers) is not list and isinstance(headers, Mapping):
        found = [v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER]
    else:
        pairs: Iterable[tuple[str | bytes, str | bytes]] = headers
        for name, value in pairs:
            # Lower-case only names of the right length: a request carries several
            # headers and lower-casing each one was most of the scan's time.
            if len(name) == _NAME_SIZE and name.lower() in (
                _SIGNATURE_HEADER_BYTES,
                SIGNATURE_HEADER,
            ):
                found.append(value)
    if len(found) > 1:
        raise InvalidSignature("the X-Signature header appears more than once")
    return found[0] if found else None


class SecretSet:
    """One or more secrets, each with its keyed hash states built once.

    Args:
        secrets: the secrets, in order of preference (rotation: newest first).

    Raises:
        ConfigurationError: if there is no secret, or one is empty or of the wrong type.
    """

    __slots__ = ("_positions", "_states", "fingerprints")

    def __init__(self, secrets: Sequence[Secret]) -> None:
        if not secrets:
            raise ConfigurationError("at least one secret is required")
        states = []
        prints = []
        for position, secret in enumerate(secrets):
            key = _secret_bytes(secret)
            if not key:
                raise ConfigurationError(f"secret #{position} must not be empty")
            if len(key) > _BLOCK_SIZE:
                key = hashlib.sha256(key).digest()
            key = key.ljust(_BLOCK_SIZE, b"\0")
            inner = hashlib.sha256(key.translate(_IPAD))
            outer = hashlib.sha256(key.translate(_OPAD))
            states.append((inner, outer))
            # A short one-way label so logs can say which secret matched without
            # revealing it: 32 bits of a domain-separated hash.
            prints.append(hashlib.sha256(b"census-receiver/fingerprint\0" + key).hexdigest()[:8])
        self._states = tuple(states)
        self._positions = range(len(states))
        #: One short, non-reversible label per secret, for logs.
        self.fingerprints: tuple[str, ...] = tuple(prints)

    def __len__(self) -> int:
        return len(self._states)

    def __repr__(self) -> str:
        return f"<SecretSet of {len(self._states)} secret(s)>"

    def digest(self, body: Body, position: int = 0) -> bytes:
        """Return HMAC-SHA256 of ``body`` under the secret at ``position``."""
        inner, outer = self._states[position]
        ih = inner.copy()
        ih.update(body)
        oh = outer.copy()
        oh.update(ih.digest())
        return oh.digest()

    def check(self, body: Body, signature: str | bytes | None) -> int:
        """Return the position of the first secret that signed ``body``, per ``signature``.

        Args:
            body: the exact request body.
            signature: the ``X-Signature`` value (``None`` if absent).

        Returns:
            The position of the secret (0 for the first).

        Raises:
            MissingSignature: if the value is absent or blank.
            InvalidSignature: if it is malformed, or no secret signed ``body``.
        """
        digests = []
        if signature is not None:  # the usual case: exactly what Census sends
            sent = signature.encode() if isinstance(signature, str) else signature
            for position in self._positions:
                digest = self.digest(body, position)
                if hmac.compare_digest(b2a_base64(digest, newline=False), sent):
                    return position
                digests.append(digest)
        # Anything else is decoded strictly, then compared with the digests made above.
        claimed = decode_signature(signature)
        for position, digest in enumerate(digests):
            if hmac.compare_digest(digest, claimed):
                return position
        raise InvalidSignature("the X-Signature does not match the body for any configured secret")

    def match(self, body: Body, claimed: bytes) -> int | None:
        """Return the position of the first secret whose digest of ``body`` is ``claimed``.

        Each comparison is constant-time; stopping at the first match reveals only
        which secret matched, which a sender that knows it learns nothing from.
        """
        for position in self._positions:
            if hmac.compare_digest(self.digest(body, position), claimed):
                return position
        return None
