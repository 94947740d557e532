"""compute_signature, decode_signature, signature_from_headers and SecretSet."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from census_receiver import InvalidSignature, MissingSignature, compute_signature
from census_receiver.errors import ConfigurationError
from census_receiver.signature import SecretSet, decode_signature, signature_from_headers

BODY = (
    b'{"workspace_id": 3167, "sync_id": 3167956, "sync_run_id": 324402082, "event": "sync.failed"}'
)
# Known answers made outside this code, with OpenSSL:
#   printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET" -binary | base64
KNOWN = "UQ0w3LiluLK0dHp9GJoK/ARnTBYtKyU0pZHCxiCEXTw="  # secret whsec_census_test
KNOWN_EMPTY_BODY = "FxJ8BjMAuVExuZUKe5rVzFoXN8XsGcQwHAGP08msBVs="  # same secret, empty body
KNOWN_UNICODE_SECRET = "7fCb6g6Wjq/475cbhCj4AOLuaUkxHdYMWUQpRK9KxZs="  # secret sécret-ünïcode
KNOWN_LONG_SECRET = "CnYMvIH6eRmnTFPar054RHyO5TcIhq98CYN98S25BQc="  # secret "k" * 100


def census_recipe(data: bytes, secret: bytes) -> str:
    """Census's documented validation code, verbatim."""
    digest = hmac.new(secret, data, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def test_compute_signature_matches_openssl_vector() -> None:
    assert compute_signature(BODY, "whsec_census_test") == KNOWN


def test_compute_signature_accepts_bytes_secret() -> None:
    assert compute_signature(BODY, b"whsec_census_test") == KNOWN


def test_compute_signature_of_empty_body() -> None:
    assert compute_signature(b"", "whsec_census_test") == KNOWN_EMPTY_BODY


def test_compute_signature_uses_utf8_of_str_secret() -> None:
    assert compute_signature(BODY, "sécret-ünïcode") == KNOWN_UNICODE_SECRET


def test_compute_signature_hashes_secret_longer_than_block() -> None:
    assert compute_signature(BODY, "k" * 100) == KNOWN_LONG_SECRET


def test_compute_signature_refuses_empty_secret() -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        compute_signature(BODY, "")


def test_compute_signature_refuses_non_secret_type() -> None:
    with pytest.raises(ConfigurationError, match="str or bytes"):
        compute_signature(BODY, 42)  # type: ignore[arg-type]


@given(body=st.binary(max_size=2048), secret=st.binary(min_size=1, max_size=200))
def test_compute_signature_equals_census_recipe(body: bytes, secret: bytes) -> None:
    assert compute_signature(body, secret) == census_recipe(body, secret)


@given(body=st.binary(max_size=2048), secret=st.binary(min_size=1, max_size=200))
def test_secret_set_digest_equals_hmac(body: bytes, secret: bytes) -> None:
    assert SecretSet([secret]).digest(body) == hmac.new(secret, body, hashlib.sha256).digest()


def test_secret_set_digest_accepts_memoryview_and_bytearray() -> None:
    secrets = SecretSet(["whsec_census_test"])
    expected = base64.b64decode(KNOWN)
    assert secrets.digest(memoryview(BODY)) == expected
    assert secrets.digest(bytearray(BODY)) == expected


def test_decode_signature_returns_digest() -> None:
    assert decode_signature(KNOWN) == base64.b64decode(KNOWN)
    assert decode_signature(KNOWN.encode()) == base64.b64decode(KNOWN)


def test_decode_signature_tolerates_surrounding_whitespace() -> None:
    assert decode_signature(f"  {KNOWN}\t") == base64.b64decode(KNOWN)


@pytest.mark.parametrize("value", [None, "", "   ", b""])
def test_decode_signature_treats_absent_or_blank_as_missing(value: str | bytes | None) -> None:
    with pytest.raises(MissingSignature):
        decode_signature(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(KNOWN.rstrip("="), id="unpadded"),
        pytest.param(KNOWN + "=", id="extra-padding"),
        pytest.param(KNOWN.replace("/", "_"), id="urlsafe"),
        pytest.param(base64.b64decode(KNOWN).hex(), id="hex"),
        pytest.param("sha256=" + KNOWN, id="prefixed"),
        pytest.param(KNOWN[:-2] + "é=", id="non-ascii"),
        pytest.param(KNOWN[:20] + " " + KNOWN[21:], id="inner-space"),
        pytest.param("A" * 44, id="wrong-decoded-length"),
        pytest.param(KNOWN.encode()[:-1] + b"\xff", id="non-ascii-bytes"),
    ],
)
def test_decode_signature_rejects_malformed(value: str | bytes) -> None:
    with pytest.raises(InvalidSignature):
        decode_signature(value)


def test_signature_from_headers_ignores_name_case() -> None:
    assert signature_from_headers({"X-SIGNATURE": "a"}) == "a"
    assert signature_from_headers([("x-Signature", "b")]) == "b"
    assert signature_from_headers([(b"x-signature", b"c")]) == b"c"


def test_signature_from_headers_returns_none_when_absent() -> None:
    assert signature_from_headers({"content-type": "application/json"}) is None
    assert signature_from_headers([]) is None


def test_signature_from_headers_rejects_repeated_header_in_pairs() -> None:
    with pytest.raises(InvalidSignature, match="more than once"):
        signature_from_headers([(b"x-signature", b"a"), (b"x-signature", b"b")])


def test_signature_from_headers_rejects_case_variants_in_dict() -> None:
    with pytest.raises(InvalidSignature, match="more than once"):
        signature_from_headers({"X-Signature": "a", "x-signature": "b"})


def test_signature_from_headers_uses_getlist_of_multi_mappings() -> None:
    from werkzeug.datastructures import Headers

    headers = Headers([("X-Signature", "a"), ("X-Signature", "b")])
    with pytest.raises(InvalidSignature):
        signature_from_headers(headers)
    assert signature_from_headers(Headers([("x-signature", "a")])) == "a"


def test_secret_set_matches_position_of_first_matching_secret() -> None:
    secrets = SecretSet(["old", "whsec_census_test"])
    assert secrets.match(BODY, base64.b64decode(KNOWN)) == 1
    assert secrets.match(BODY + b" ", base64.b64decode(KNOWN)) is None


def test_secret_set_refuses_no_secret_and_empty_secret() -> None:
    with pytest.raises(ConfigurationError, match="at least one"):
        SecretSet([])
    with pytest.raises(ConfigurationError, match="#1 must not be empty"):
        SecretSet(["ok", b""])


def test_secret_set_repr_and_fingerprints_hide_secrets() -> None:
    secrets = SecretSet(["whsec_census_test"])
    assert "whsec" not in repr(secrets)
    (fingerprint,) = secrets.fingerprints
    assert len(fingerprint) == 8
    assert fingerprint not in KNOWN


@given(
    body=st.binary(max_size=512),
    secret=st.binary(min_size=1, max_size=64),
    flip=st.integers(min_value=0),
)
def test_any_changed_body_byte_fails_verification(body: bytes, secret: bytes, flip: int) -> None:
    secrets = SecretSet([secret])
    claimed = decode_signature(compute_signature(body, secret))
    assert secrets.match(body, claimed) == 0
    if body:
        i = flip % len(body)
        changed = body[:i] + bytes([body[i] ^ 1]) + body[i + 1 :]
        assert secrets.match(changed, claimed) is None
    assert secrets.match(body + b"\0", claimed) is None


@given(
    body=st.binary(max_size=512), secret=st.binary(min_size=1, max_size=64), bit=st.integers(0, 255)
)
def test_any_changed_signature_bit_fails_verification(body: bytes, secret: bytes, bit: int) -> None:
    digest = bytearray(decode_signature(compute_signature(body, secret)))
    digest[bit // 8] ^= 1 << (bit % 8)
    assert SecretSet([secret]).match(body, bytes(digest)) is None


@given(
    body=st.binary(max_size=512),
    secret=st.binary(min_size=1, max_size=64),
    other=st.binary(min_size=1, max_size=64),
)
def test_any_other_secret_fails_verification(body: bytes, secret: bytes, other: bytes) -> None:
    claimed = decode_signature(compute_signature(body, secret))
    matched = SecretSet([other]).match(body, claimed)
    # Two keys give the same HMAC only when HMAC pads them to the same block.
    if other.ljust(64, b"\0") != secret.ljust(64, b"\0"):
        assert matched is None


@pytest.mark.parametrize("sent", [KNOWN, KNOWN.encode(), f" {KNOWN}\t", f" {KNOWN}\t".encode()])
def test_secret_set_check_accepts_the_signature_as_sent(sent: str | bytes) -> None:
    # Exactly as Census sends it, or with surrounding whitespace; as str or bytes.
    assert SecretSet(["whsec_census_test"]).check(BODY, sent) == 0


def test_secret_set_check_names_the_secret_that_signed() -> None:
    rotating = SecretSet(["whsec_new_one_0000", "whsec_census_test"])
    assert rotating.check(BODY, KNOWN) == 1
    assert rotating.check(bytearray(BODY), KNOWN.encode()) == 1
    assert rotating.check(BODY, f"  {KNOWN}\r\n") == 1  # decoded, then matched: the same one


@pytest.mark.parametrize(
    ("sent", "error", "message"),
    [
        (None, MissingSignature, "missing"),
        ("  ", MissingSignature, "empty"),
        (KNOWN.rstrip("="), InvalidSignature, "wrong length"),
        (KNOWN.replace("/", "_"), InvalidSignature, "not standard base64"),
        (KNOWN[:42] + "x=", InvalidSignature, "not canonical"),  # same bits but the last two
        (KNOWN_EMPTY_BODY, InvalidSignature, "does not match the body"),
        ("é" * 44, InvalidSignature, "not base64"),
    ],
)
def test_secret_set_check_says_what_is_wrong(
    sent: str | None, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        SecretSet(["whsec_census_test"]).check(BODY, sent)
