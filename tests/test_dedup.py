"""Dedup stores and the receiver's claim / complete / release protocol (in memory).

The Redis store has its own tests against a real redis-server in integration/test_dedup_redis.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from census_receiver import ConfigurationError, Event
from census_receiver.dedup import ClaimState, InMemoryDedupStore, default_key
from census_receiver.testing import make_body

from .support import Clock

# -- InMemoryDedupStore ---------------------------------------------------------------------


def test_claim_then_complete_then_duplicate() -> None:
    store = InMemoryDedupStore()
    claim = store.claim("k")
    assert claim.state is ClaimState.CLAIMED and claim.token
    assert store.claim("k").state is ClaimState.IN_PROGRESS
    store.complete(claim)
    assert store.claim("k").state is ClaimState.DONE


def test_release_lets_the_next_claim_win() -> None:
    store = InMemoryDedupStore()
    claim = store.claim("k")
    store.release(claim)
    assert store.claim("k").state is ClaimState.CLAIMED


def test_claim_expires_after_lease() -> None:
    clock = Clock(now=1000.0)
    store = InMemoryDedupStore(ttl=100, lease=10, clock=clock)
    stale = store.claim("k")
    clock.now += 10.5
    fresh = store.claim("k")
    assert fresh.state is ClaimState.CLAIMED
    # The crashed holder coming back cannot undo the new claim.
    store.complete(stale)
    store.release(stale)
    assert store.claim("k").state is ClaimState.IN_PROGRESS
    store.complete(fresh)
    assert store.claim("k").state is ClaimState.DONE


def test_done_expires_after_ttl_and_memory_is_reclaimed() -> None:
    clock = Clock(now=1000.0)
    store = InMemoryDedupStore(ttl=100, lease=10, clock=clock)
    for i in range(50):
        store.complete(store.claim(f"k{i}"))
    assert len(store) == 50
    clock.now += 99
    assert store.claim("k0").state is ClaimState.DONE
    clock.now += 2
    assert len(store) == 0
    assert store.claim("k0").state is ClaimState.CLAIMED  # forgotten: a new delivery


@pytest.mark.parametrize(("ttl", "lease"), [(0, 1), (10, 0), (10, -1), (5, 10)])
def test_bad_durations_are_refused(ttl: float, lease: float) -> None:
    with pytest.raises(ConfigurationError):
        InMemoryDedupStore(ttl=ttl, lease=lease)


def test_concurrent_claims_have_one_winner() -> None:
    store = InMemoryDedupStore()
    with ThreadPoolExecutor(8) as pool:
        states = list(pool.map(lambda _: store.claim("k").state, range(200)))
    assert states.count(ClaimState.CLAIMED) == 1


# -- default_key -------------------------------------------------------------------------------


def event_and_body(name: str, **fields: Any) -> tuple[Event, bytes]:
    from census_receiver import parse_event

    body = make_body(name, **fields)
    return parse_event(body), body


def test_default_key_uses_identity_fields() -> None:
    assert default_key(*event_and_body("sync.failed")) == "sync.failed:3167:3167956:324402082"
    # Same ids, another field changed: same delivery identity.
    assert default_key(*event_and_body("sync.failed", note="x")) == default_key(
        *event_and_body("sync.failed")
    )


def test_default_key_separates_events_runs_and_alert_instances() -> None:
    keys = {
        default_key(*event_and_body("sync.failed")),
        default_key(*event_and_body("sync.completed")),
        default_key(*event_and_body("sync.failed", sync_run_id=1)),
        default_key(*event_and_body("sync.alert.raised")),
        default_key(*event_and_body("sync.alert.raised", alert_instance_id=2)),
        default_key(*event_and_body("sync.alert.resolved")),
    }
    assert len(keys) == 6


def test_default_key_falls_back_to_body_digest() -> None:
    a = default_key(*event_and_body("custom.thing", workspace_id=None, x=1))
    b = default_key(*event_and_body("custom.thing", workspace_id=None, x=2))
    assert a.startswith("body:") and b.startswith("body:") and a != b


@pytest.mark.parametrize("option", ["ttl", "lease"])
def test_non_number_durations_are_refused_without_echoing_them(option: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{option} must be a positive number") as info:
        InMemoryDedupStore(**{option: "whsec_pasted_here"})  # type: ignore[arg-type]
    assert "whsec_pasted_here" not in str(info.value)
    assert "str" in str(info.value)
