"""The sequence of a delivery's run: its sync twin is generated from the async original."""

from __future__ import annotations

import pytest

from tests import unasync


def test_the_sync_twin_is_generated_from_the_original() -> None:
    # Edit census_receiver/sequence_async.py, then run: python -m tests.unasync
    assert unasync.main(["--check"]) == 0, "census_receiver/sequence.py is stale"
    assert unasync.TWIN.read_text() == unasync.generate(unasync.ORIGINAL.read_text())


def test_the_twin_has_no_async_left() -> None:
    twin = unasync.TWIN.read_text()
    assert "await " not in twin
    assert "async def" not in twin
    assert "def run_delivery(d: VerifiedDelivery) -> Outcome:" in twin
    assert "steps.call(d, route)" in twin


def test_a_construct_without_a_rule_is_refused() -> None:
    original = '"""Doc."""\n\nasync def f_async():\n    await other()\n'
    with pytest.raises(ValueError, match="no rule for: await other"):
        unasync.generate(original)
