"""The exception tree: inheritance, status codes, reasons."""

from __future__ import annotations

import pytest

import census_receiver
from census_receiver import errors


@pytest.mark.parametrize(
    ("cls", "status", "reason"),
    [
        (errors.MissingSignature, 401, "missing_signature"),
        (errors.InvalidSignature, 401, "invalid_signature"),
        (errors.MalformedPayload, 400, "malformed_payload"),
        (errors.PayloadTooLarge, 413, "payload_too_large"),
        (errors.WorkspaceNotAllowed, 403, "workspace_not_allowed"),
        (errors.MethodNotAllowed, 405, "method_not_allowed"),
    ],
)
def test_rejections_carry_status_and_reason(
    cls: type[errors.RequestRejected], status: int, reason: str
) -> None:
    assert issubclass(cls, errors.RequestRejected)
    assert (cls.status_code, cls.reason) == (status, reason)
    assert cls("x").status_code == status


def test_every_error_is_a_census_receiver_error() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.CensusReceiverError)


def test_value_errors_stay_value_errors() -> None:
    assert issubclass(errors.MalformedPayload, ValueError)
    assert issubclass(errors.ConfigurationError, ValueError)
    assert not issubclass(errors.InvalidSignature, ValueError)


def test_every_error_is_exported_from_the_package() -> None:
    for name in errors.__all__:
        assert getattr(census_receiver, name) is getattr(errors, name)


def test_docstring_draws_the_whole_tree() -> None:
    assert errors.__doc__ is not None
    for name in errors.__all__:
        assert name in errors.__doc__
