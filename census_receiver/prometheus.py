"""Prometheus collectors over the receiver's counters and its journal's sync runs.

The receiver counts every delivery in ``receiver.stats`` (``ReceiverStats``,
standard library only). ``CensusCollector`` exposes those counters to
prometheus_client at scrape time, so nothing is counted twice and the core
needs no Prometheus import. ``RunsCollector`` reads the latest sync runs from
a journal at each scrape (see ``census_receiver.runs``)::

    from prometheus_client import start_http_server
    from census_receiver.prometheus import CensusCollector, RunsCollector

    CensusCollector(receiver)       # registers on prometheus_client's default registry
    RunsCollector(receiver)         # its journal's latest 1,000 runs, read at each scrape
    start_http_server(9100)         # or mount prometheus_client.make_asgi_app()

``CensusCollector`` exposes:

- ``census_receiver_deliveries_total{event, outcome}``: a counter per event name
  and outcome (``handled``, ``ignored``, ``duplicate``, ``in_progress``,
  ``dropped``, ``handler_error``, ``deadline``, ``dedup_unavailable`` and each
  rejection reason such as ``invalid_signature``). Deliveries refused before
  their payload was read have ``event="-"``.
- ``census_receiver_handling_seconds{event}``: a histogram of the time spent in
  the receiver per delivery, with buckets from 5 ms to Census's 10 s.

Event names come only from verified deliveries, so senders without the secret
cannot grow the number of label values. In a server with several worker
processes each process counts its own deliveries; a scrape reads the process
that answers it (see docs/retries.md).

``RunsCollector`` exposes, over the latest ``window`` runs of every sync
together (the journal is shared, so any one process may expose them):

- ``census_receiver_run_duration_seconds{sync_id}`` and
  ``census_receiver_run_queued_seconds{sync_id}``: the runs' durations (started
  to finished) and queue times (triggered to started), with buckets from 1 s to
  a day. These are *gauge* histograms (OpenMetrics' ``gaugehistogram``): they
  describe the window as it is now, so a bucket goes down when a run leaves
  it. Take quantiles of the buckets as they are
  (``histogram_quantile(0.95, census_receiver_run_duration_seconds_bucket)``),
  not of their ``rate()``.
- ``census_receiver_runs{sync_id, outcome}``: how many of those runs
  ``succeeded``, ``failed`` or are still ``open`` (triggered or started).
- ``census_receiver_open_alerts{sync_id, alert_type}``: alert instances raised
  during those runs and not resolved since, by ``alert_instance_id``.
- ``census_receiver_journal_up``: 1 when the journal was read at this scrape,
  0 when its database failed (the other families are then empty; the failure
  is logged).

Times are the journal's receive times, as in a run record. Sync ids and alert
types come only from verified deliveries, and the window bounds their number.

Requires the ``prometheus`` extra (``pip install census-receiver[prometheus]``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from .errors import ConfigurationError
from .journal.base import Journal, JournalUnavailable
from .receiver import WebhookReceiver
from .stats import BUCKETS, ReceiverStats

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from .runs import RunRecord

__all__ = ["RUN_BUCKETS", "CensusCollector", "RunsCollector"]

logger = logging.getLogger("census_receiver")

_DELIVERIES_HELP = "Census webhook deliveries, by event name and outcome."
_HANDLING_HELP = "Seconds spent handling a Census webhook delivery, by event name."
_DURATION_HELP = "Seconds from sync.started to the end of the latest sync runs, by sync."
_QUEUED_HELP = "Seconds from sync.triggered to sync.started of the latest sync runs, by sync."
_RUNS_HELP = "The latest sync runs, by sync and outcome (succeeded, failed, open)."
_ALERTS_HELP = "Census alerts raised during the latest sync runs and not resolved since."
_UP_HELP = "1 if the journal was read at this scrape, 0 if its database failed."

#: Upper bounds (seconds) of the run duration and queue time buckets: 1 s to a day.
RUN_BUCKETS: tuple[float, ...] = (
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
)  # fmt: skip
#: The ``outcome`` label of ``runs``, by run status.
_OUTCOMES = {"succeeded": "succeeded", "failed": "failed", "triggered": "open", "started": "open"}


class CensusCollector:
    """Exposes a receiver's ``stats`` as Prometheus metrics, read at each scrape.

    Args:
        source: the ``WebhookReceiver`` (or its ``ReceiverStats``) to expose.
        registry: where to register; prometheus_client's default registry unless
            given, ``None`` to register yourself.
        namespace: the metric name prefix.

    Raises:
        ConfigurationError: if ``source`` is neither a receiver nor its stats.
        ValueError: from prometheus_client, if the registry already has these
            metric names (a second collector on the same registry).
    """

    def __init__(
        self,
        source: WebhookReceiver | ReceiverStats,
        *,
        registry: CollectorRegistry | None = REGISTRY,
        namespace: str = "census_receiver",
    ) -> None:
        if isinstance(source, WebhookReceiver):
            self.stats = source.stats
        elif isinstance(source, ReceiverStats):
            self.stats = source
        else:
            raise ConfigurationError(
                f"CensusCollector needs a WebhookReceiver or ReceiverStats, not "
                f"{type(source).__name__}"
            )
        self.namespace = namespace
        if registry is not None:
            registry.register(self)

    def __repr__(self) -> str:
        return f"<CensusCollector namespace={self.namespace!r}>"

    def _families(self) -> tuple[CounterMetricFamily, HistogramMetricFamily]:
        deliveries = CounterMetricFamily(
            f"{self.namespace}_deliveries", _DELIVERIES_HELP, labels=("event", "outcome")
        )
        handling = HistogramMetricFamily(
            f"{self.namespace}_handling_seconds", _HANDLING_HELP, labels=("event",)
        )
        return deliveries, handling

    def describe(self) -> Iterator[Metric]:
        """The metric families, without samples (lets registration skip a collect)."""
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        """The current counts and timings, as Prometheus metric families."""
        deliveries, handling = self._families()
        for (event, outcome), count in sorted(self.stats.counts().items()):
            deliveries.add_metric((event, outcome), count)
        for event, timing in sorted(self.stats.timings().items()):
            cumulative = timing.cumulative()
            buckets = [
                (str(bound), float(n)) for bound, n in zip(BUCKETS, cumulative, strict=False)
            ]
            buckets.append(("+Inf", float(cumulative[-1])))
            handling.add_metric((event,), buckets, sum_value=timing.total)
        yield deliveries
        yield handling


class RunsCollector:
    """Exposes the latest sync runs of a journal as Prometheus metrics, read at each scrape.

    Each scrape reads the latest ``window`` runs (every sync together, newest
    first) in one query; see the module docstring for the metrics.

    Args:
        source: the ``Journal``, or a ``WebhookReceiver`` built with one.
        window: how many of the latest runs each scrape reads.
        registry: where to register; prometheus_client's default registry unless
            given, ``None`` to register yourself.
        namespace: the metric name prefix.

    Raises:
        ConfigurationError: if ``source`` is neither a journal nor a receiver
            with one, or ``window`` is not a whole number of 1 or more.
        ValueError: from prometheus_client, if the registry already has these
            metric names (a second collector on the same registry).
    """

    def __init__(
        self,
        source: Journal | WebhookReceiver,
        *,
        window: int = 1000,
        registry: CollectorRegistry | None = REGISTRY,
        namespace: str = "census_receiver",
    ) -> None:
        journal = source.journal if isinstance(source, WebhookReceiver) else source
        if not isinstance(journal, Journal):
            what = (
                "a WebhookReceiver without a journal (build it with journal=...)"
                if isinstance(source, WebhookReceiver)
                else type(source).__name__
            )
            raise ConfigurationError(
                f"RunsCollector needs a Journal or a WebhookReceiver with one, not {what}"
            )
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ConfigurationError(f"window must be a whole number of 1 or more, not {window!r}")
        self.journal = journal
        self.window = window
        self.namespace = namespace
        if registry is not None:
            registry.register(self)

    def __repr__(self) -> str:
        return f"<RunsCollector {self.journal!r} window={self.window} namespace={self.namespace!r}>"

    def _families(
        self,
    ) -> tuple[
        GaugeHistogramMetricFamily,
        GaugeHistogramMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
    ]:
        ns = self.namespace
        return (
            GaugeHistogramMetricFamily(
                f"{ns}_run_duration_seconds", _DURATION_HELP, labels=("sync_id",)
            ),
            GaugeHistogramMetricFamily(
                f"{ns}_run_queued_seconds", _QUEUED_HELP, labels=("sync_id",)
            ),
            GaugeMetricFamily(f"{ns}_runs", _RUNS_HELP, labels=("sync_id", "outcome")),
            GaugeMetricFamily(f"{ns}_open_alerts", _ALERTS_HELP, labels=("sync_id", "alert_type")),
            GaugeMetricFamily(f"{ns}_journal_up", _UP_HELP),
        )

    def describe(self) -> Iterator[Metric]:
        """The metric families, without samples (registration reads no journal)."""
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        """The latest runs' timings, outcomes and open alerts, as Prometheus metric families."""
        duration, queued, outcomes, alerts, up = self._families()
        try:
            runs = self.journal.runs(limit=self.window)
        except JournalUnavailable as exc:
            # A failed scrape would lose the other collectors' metrics too: say so instead.
            logger.warning("census runs metrics: the journal cannot be read: %s", exc)
            up.add_metric((), 0.0)
            yield from (duration, queued, outcomes, alerts, up)
            return
        up.add_metric((), 1.0)
        by_sync: dict[int, list[RunRecord]] = {}
        for run in runs:
            by_sync.setdefault(run.sync_id, []).append(run)
        for sync_id, sync_runs in sorted(by_sync.items()):
            label = str(sync_id)
            _observe(duration, label, [r.duration_seconds for r in sync_runs])
            _observe(queued, label, [r.queued_seconds for r in sync_runs])
            counted = Counter(_OUTCOMES.get(r.status, "open") for r in sync_runs)
            for outcome in ("succeeded", "failed", "open"):
                outcomes.add_metric((label, outcome), float(counted[outcome]))
        for (sync_id, alert_type), count in sorted(_open_alerts(runs).items()):
            alerts.add_metric((str(sync_id), alert_type), float(count))
        yield from (duration, queued, outcomes, alerts, up)


def _observe(
    family: GaugeHistogramMetricFamily, label: str, values: Sequence[float | None]
) -> None:
    """Add one sync's histogram of ``values`` (``None``s left out) to ``family``."""
    known = [v for v in values if v is not None]
    buckets = [(str(bound), float(sum(v <= bound for v in known))) for bound in RUN_BUCKETS]
    buckets.append(("+Inf", float(len(known))))
    family.add_metric((label,), buckets, gsum_value=sum(known))


def _open_alerts(runs: Sequence[RunRecord]) -> Counter[tuple[int, str]]:
    """Alert instances raised and not resolved, counted by sync and alert type.

    An instance is matched by its ``alert_instance_id`` across runs: Census
    resolves an alert during a later run of the sync. One with no id cannot be
    matched, and is left out.
    """
    raised: dict[int, tuple[int, str]] = {}
    resolved: set[int] = set()
    for run in runs:
        for alert in run.alerts:
            if alert.alert_instance_id is None:
                continue
            if alert.kind == "resolved":
                resolved.add(alert.alert_instance_id)
            elif alert.kind == "raised":
                raised.setdefault(alert.alert_instance_id, (run.sync_id, alert.alert_type or "-"))
    return Counter(where for alert_id, where in raised.items() if alert_id not in resolved)
