"""CensusCollector and RunsCollector, scraped from a real prometheus_client registry.

The runs are those of a real SQLite journal in tmp_path, filled by a receiver
handling Census's events, with a clock the test moves.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from census_receiver import ConfigurationError, Event, NonRetryableError, WebhookReceiver
from census_receiver.dedup import InMemoryDedupStore
from census_receiver.journal import JournalUnavailable, SQLiteJournal
from census_receiver.prometheus import RUN_BUCKETS, CensusCollector, RunsCollector
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


# -- RunsCollector: the journal's sync runs ---------------------------------------------------


class Census:
    """A receiver with a SQLite journal whose clock the test moves: Census sends, time passes."""

    def __init__(self, path: Path) -> None:
        self.now = 1_777_636_800.0  # 2026-05-01 12:00:00 UTC
        self.journal = SQLiteJournal(path, synchronous="off", clock=lambda: self.now)
        self.receiver = WebhookReceiver(SECRET, journal=self.journal)

    def sends(self, event: str, run: int, **fields: Any) -> None:
        delivery = make_delivery(event, secret=SECRET, sync_run_id=run, **fields)
        assert self.receiver.handle(delivery.body, delivery.headers).ok

    def run(self, run: int, *, queued: float, took: float, ok: bool = True, **fields: Any) -> None:
        """A whole run: triggered, started after ``queued`` s, finished ``took`` s later."""
        self.sends("sync.triggered", run, **fields)
        self.now += queued
        self.sends("sync.started", run, **fields)
        self.now += took
        self.sends("sync.completed", run, status="ok" if ok else "emergency", **fields)
        self.sends("sync.success" if ok else "sync.failed", run, **fields)


@pytest.fixture
def census(tmp_path: Path) -> Iterator[Census]:
    made = Census(tmp_path / "journal.db")
    yield made
    made.receiver.close()
    made.journal.close()


def samples_named(registry: CollectorRegistry, name: str) -> dict[tuple[str, ...], float]:
    """The samples of one name, keyed by their label values in label-name order."""
    return {
        tuple(value for _, value in labels): value
        for (sample, labels), value in scrape(registry).items()
        if sample == name
    }


def test_run_durations_are_a_histogram_by_sync(census: Census) -> None:
    census.run(1, queued=3, took=125)
    census.run(2, queued=40, took=4000)
    census.run(3, queued=0.5, took=20, sync_id=42)
    census.sends("sync.triggered", 4)  # open: no duration yet
    registry = CollectorRegistry()
    RunsCollector(census.journal, registry=registry)
    buckets = samples_named(registry, "census_receiver_run_duration_seconds_bucket")
    assert [le for le, sync in buckets if sync == "3167956"] == [str(b) for b in RUN_BUCKETS] + [
        "+Inf"
    ]
    assert buckets[("60.0", "3167956")] == 0.0
    assert buckets[("300.0", "3167956")] == 1.0  # 125 s
    assert buckets[("3600.0", "3167956")] == 1.0
    assert buckets[("7200.0", "3167956")] == 2.0  # 4000 s
    assert buckets[("+Inf", "3167956")] == 2.0
    assert buckets[("15.0", "42")] == 0.0
    assert buckets[("30.0", "42")] == 1.0
    counts = samples_named(registry, "census_receiver_run_duration_seconds_gcount")
    sums = samples_named(registry, "census_receiver_run_duration_seconds_gsum")
    assert counts == {("3167956",): 2.0, ("42",): 1.0}
    assert sums == {("3167956",): 4125.0, ("42",): 20.0}


def test_queue_times_are_a_histogram_by_sync(census: Census) -> None:
    census.run(1, queued=3, took=125)
    census.run(2, queued=40, took=4000)
    census.sends("sync.started", 3)  # never triggered: no queue time
    registry = CollectorRegistry()
    RunsCollector(census.journal, registry=registry)
    buckets = samples_named(registry, "census_receiver_run_queued_seconds_bucket")
    assert (buckets[("1.0", "3167956")], buckets[("5.0", "3167956")]) == (0.0, 1.0)
    assert (buckets[("30.0", "3167956")], buckets[("60.0", "3167956")]) == (1.0, 2.0)
    assert samples_named(registry, "census_receiver_run_queued_seconds_gsum") == {
        ("3167956",): 43.0
    }


def test_the_run_histograms_are_gauge_histograms_in_the_exposition(census: Census) -> None:
    census.run(1, queued=3, took=125)
    registry = CollectorRegistry()
    RunsCollector(census.journal, registry=registry)
    text = generate_latest(registry).decode()
    assert "# TYPE census_receiver_run_duration_seconds histogram\n" in text
    assert 'census_receiver_run_duration_seconds_bucket{le="300.0",sync_id="3167956"} 1.0\n' in text
    assert "# TYPE census_receiver_run_duration_seconds_gcount gauge\n" in text
    assert 'census_receiver_run_duration_seconds_gsum{sync_id="3167956"} 125.0\n' in text
    openmetrics = generate_openmetrics(registry).decode()  # type: ignore[no-untyped-call]
    assert "# TYPE census_receiver_run_queued_seconds gaugehistogram\n" in openmetrics


def test_runs_are_counted_by_sync_and_outcome_open_ones_included(census: Census) -> None:
    census.run(1, queued=1, took=60)
    census.run(2, queued=1, took=60, ok=False)
    census.sends("sync.failed", 3)  # only its end arrived: failed all the same
    census.sends("sync.triggered", 4)
    census.sends("sync.started", 5, sync_id=42)
    registry = CollectorRegistry()
    RunsCollector(census.journal, registry=registry)
    text = generate_latest(registry).decode()
    assert "# TYPE census_receiver_runs gauge\n" in text
    assert samples_named(registry, "census_receiver_runs") == {
        ("failed", "3167956"): 2.0,
        ("open", "3167956"): 1.0,
        ("succeeded", "3167956"): 1.0,
        ("failed", "42"): 0.0,
        ("open", "42"): 1.0,
        ("succeeded", "42"): 0.0,
    }


def test_open_alerts_are_those_raised_and_not_resolved_since(census: Census) -> None:
    # Alert 1 is raised in a failed run and resolved in the next one, which succeeded.
    census.run(1, queued=1, took=60, ok=False)
    census.sends("sync.alert.raised", 1, alert_instance_id=1)
    census.run(2, queued=1, took=60)
    census.sends("sync.alert.resolved", 2, alert_instance_id=1)
    # Alert 2 is raised and stays open; alert 3's resolution arrived before its raise.
    census.sends("sync.alert.raised", 3, alert_instance_id=2, sync_id=42)
    census.sends("sync.alert.resolved", 3, alert_instance_id=3, sync_id=42)
    census.sends("sync.alert.raised", 3, alert_instance_id=3, sync_id=42)
    census.sends("sync.failed", 3, sync_id=42)
    # Alert 4 is of another type; one without an id cannot be matched, and is left out.
    census.sends("sync.alert.raised", 3, alert_instance_id=4, alert_type="Other", sync_id=42)
    census.sends("sync.alert.raised", 3, alert_instance_id=None, sync_id=42)
    registry = CollectorRegistry()
    RunsCollector(census.journal, registry=registry)
    assert samples_named(registry, "census_receiver_open_alerts") == {
        ("FailureAlertConfiguration", "42"): 1.0,
        ("Other", "42"): 1.0,
    }
    text = generate_latest(registry).decode()
    assert (
        'census_receiver_open_alerts{alert_type="FailureAlertConfiguration",sync_id="42"} 1.0\n'
    ) in text


def test_the_window_bounds_the_runs_each_scrape_reads(census: Census) -> None:
    for run in (1, 2, 3):
        census.run(run, queued=1, took=60, ok=run != 1)
        census.now += 60
    registry = CollectorRegistry()
    RunsCollector(census.journal, window=2, registry=registry)
    runs = samples_named(registry, "census_receiver_runs")
    assert (runs[("succeeded", "3167956")], runs[("failed", "3167956")]) == (2.0, 0.0)
    assert samples_named(registry, "census_receiver_run_duration_seconds_gcount") == {
        ("3167956",): 2.0
    }


def test_each_scrape_reads_the_journal_afresh(census: Census) -> None:
    registry = CollectorRegistry()
    RunsCollector(census.receiver, registry=registry, namespace="hooks")
    assert samples_named(registry, "hooks_runs") == {}
    assert samples_named(registry, "hooks_journal_up") == {(): 1.0}
    census.sends("sync.triggered", 1)
    assert samples_named(registry, "hooks_runs")[("open", "3167956")] == 1.0
    census.now += 30
    census.sends("sync.started", 1)
    census.now += 90
    census.sends("sync.success", 1)
    runs = samples_named(registry, "hooks_runs")
    assert (runs[("open", "3167956")], runs[("succeeded", "3167956")]) == (0.0, 1.0)


def test_a_journal_that_fails_is_reported_not_raised(
    census: Census, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    census.run(1, queued=1, took=60)
    registry = CollectorRegistry()
    RunsCollector(census.journal, registry=registry)
    CensusCollector(census.receiver, registry=registry)

    def unavailable(*args: object, **kwargs: object) -> list[object]:
        raise JournalUnavailable("the journal's database failed (OperationalError: locked)")

    monkeypatch.setattr(census.journal, "runs", unavailable)
    samples = scrape(registry)
    assert samples[("census_receiver_journal_up", ())] == 0.0
    assert not any(name.startswith("census_receiver_run") for name, _ in samples)
    # The receiver's own counters are still exposed.
    assert any(name == "census_receiver_deliveries_total" for name, _ in samples)
    assert "the journal cannot be read: the journal's database failed" in caplog.text


def test_registering_reads_nothing_from_the_journal(
    census: Census, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_read(*args: object, **kwargs: object) -> list[object]:
        raise AssertionError("read at registration")

    monkeypatch.setattr(census.journal, "runs", must_not_read)
    registry = CollectorRegistry()
    collector = RunsCollector(census.journal, registry=registry)
    assert repr(collector) == (
        f"<RunsCollector {census.journal!r} window=1000 namespace='census_receiver'>"
    )
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        RunsCollector(census.journal, registry=registry)


@pytest.mark.parametrize(
    ("source", "window", "said"),
    [
        ("receiver without a journal", 1000, "a WebhookReceiver without a journal"),
        ("something else", 1000, "needs a Journal or a WebhookReceiver with one, not str"),
        ("journal", 0, "window must be a whole number of 1 or more, not 0"),
        ("journal", 2.5, "not 2.5"),
        ("journal", True, "not True"),
    ],
)
def test_runs_collector_refuses_what_it_cannot_read(
    census: Census, source: str, window: object, said: str
) -> None:
    given: object = {
        "receiver without a journal": WebhookReceiver(SECRET),
        "journal": census.journal,
    }.get(source, source)
    with pytest.raises(ConfigurationError, match=re.escape(said)):
        RunsCollector(given, window=window, registry=None)  # type: ignore[arg-type]
