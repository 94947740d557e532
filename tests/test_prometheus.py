"""CensusCollector: the receiver's counters, scraped from a real prometheus_client registry."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from census_receiver import ConfigurationError, Event, NonRetryableError, WebhookReceiver
from census_receiver.dedup import InMemoryDedupStore
from census_receiver.prometheus import CensusCollector
from census_receiver.stats import BUCKETS
from census_receiver.testing import make_delivery

from .conftest import SECRET


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the text exposition, keyed by name and sorted labels."""
    text = generate_latest(registry).decode("utf-8")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def receiver() -> WebhookReceiver:
    r = WebhookReceiver(SECRET, dedup=InMemoryDedupStore())

    @r.on("sync.failed")
    def ok(event: Event) -> None:
        pass

    @r.on("sync.completed")
    def broken(event: Event) -> None:
        raise RuntimeError("downstream is down")

    @r.on("sync.alert.raised")
    def hopeless(event: Event) -> None:
        raise NonRetryableError("alert configuration deleted")

    return r


def test_deliveries_are_counted_by_event_and_outcome(receiver: WebhookReceiver) -> None:
    registry = CollectorRegistry()
    CensusCollector(receiver, registry=registry)
    failed = make_delivery("sync.failed", secret=SECRET)
    for _ in range(3):
        receiver.handle(failed.body, failed.headers)
    for name in ("sync.completed", "sync.alert.raised", "sync.started"):
        d = make_delivery(name, secret=SECRET)
        receiver.handle(d.body, d.headers)
    forged = make_delivery("sync.failed", secret=SECRET, bad_signature=True)
    receiver.handle(forged.body, forged.headers)
    samples = scrape(registry)
    deliveries = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "census_receiver_deliveries_total"
    }
    assert deliveries == {
        (("event", "sync.failed"), ("outcome", "handled")): 1.0,
        (("event", "sync.failed"), ("outcome", "duplicate")): 2.0,
        (("event", "sync.completed"), ("outcome", "handler_error")): 1.0,
        (("event", "sync.alert.raised"), ("outcome", "dropped")): 1.0,
        (("event", "sync.started"), ("outcome", "ignored")): 1.0,
        (("event", "-"), ("outcome", "invalid_signature")): 1.0,
    }
    receiver.close()


def test_handling_time_is_a_histogram_with_census_buckets(receiver: WebhookReceiver) -> None:
    registry = CollectorRegistry()
    CensusCollector(receiver, registry=registry)
    for run in range(4):
        d = make_delivery("sync.failed", secret=SECRET, sync_run_id=run)
        receiver.handle(d.body, d.headers)
    samples = scrape(registry)
    label = ("event", "sync.failed")
    buckets = {
        dict(labels)["le"]: value
        for (name, labels), value in samples.items()
        if name == "census_receiver_handling_seconds_bucket" and label in labels
    }
    assert list(buckets) == [str(b) for b in BUCKETS] + ["+Inf"]
    values = list(buckets.values())
    assert values == sorted(values) and values[-1] == 4.0  # cumulative, ending at the count
    assert samples[("census_receiver_handling_seconds_count", (label,))] == 4.0
    total = receiver.stats.timings()["sync.failed"].total
    assert samples[("census_receiver_handling_seconds_sum", (label,))] == pytest.approx(total)
    receiver.close()


def test_slow_deliveries_land_in_the_upper_buckets() -> None:
    receiver = WebhookReceiver(SECRET)
    release = threading.Event()
    receiver.on("*")(lambda event: release.wait(0.03))
    registry = CollectorRegistry()
    CensusCollector(receiver, registry=registry)
    d = make_delivery("sync.started", secret=SECRET)
    receiver.handle(d.body, d.headers)
    samples = scrape(registry)

    def bucket(le: str) -> float:
        return samples[
            ("census_receiver_handling_seconds_bucket", (("event", "sync.started"), ("le", le)))
        ]

    # It waited 30 ms: over the 25 ms bound, within 10 s.
    assert (bucket("0.025"), bucket("10.0"), bucket("+Inf")) == (0.0, 1.0, 1.0)


def test_scrapes_follow_the_counters_and_a_reset() -> None:
    receiver = WebhookReceiver(SECRET)
    registry = CollectorRegistry()
    CensusCollector(receiver.stats, registry=registry, namespace="hooks")
    key = ("hooks_deliveries_total", (("event", "sync.failed"), ("outcome", "ignored")))
    d = make_delivery("sync.failed", secret=SECRET)
    assert key not in scrape(registry)
    receiver.handle(d.body, d.headers)
    assert scrape(registry)[key] == 1.0
    receiver.handle(d.body, d.headers)
    assert scrape(registry)[key] == 2.0
    receiver.stats.reset()
    assert key not in scrape(registry)


def test_registers_on_the_default_registry_unless_told_otherwise() -> None:
    from prometheus_client import REGISTRY

    receiver = WebhookReceiver(SECRET)
    collector = CensusCollector(receiver)
    try:
        d = make_delivery("sync.failed", secret=SECRET)
        receiver.handle(d.body, d.headers)
        assert b'census_receiver_deliveries_total{event="sync.failed",outcome="ignored"} 1.0' in (
            generate_latest(REGISTRY)
        )
    finally:
        REGISTRY.unregister(collector)
    unregistered = CensusCollector(receiver, registry=None)
    assert repr(unregistered) == "<CensusCollector namespace='census_receiver'>"


def test_a_second_collector_on_one_registry_is_refused() -> None:
    registry = CollectorRegistry()
    CensusCollector(WebhookReceiver(SECRET), registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        CensusCollector(WebhookReceiver(SECRET), registry=registry)


def test_anything_else_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="WebhookReceiver or ReceiverStats"):
        CensusCollector(object(), registry=None)  # type: ignore[arg-type]
