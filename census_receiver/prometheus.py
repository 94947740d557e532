"""A Prometheus collector over the receiver's counters, for prometheus_client.

The receiver counts every delivery in ``receiver.stats`` (``ReceiverStats``,
standard library only). ``CensusCollector`` exposes those counters to
prometheus_client at scrape time, so nothing is counted twice and the core
needs no Prometheus import::

    from prometheus_client import start_http_server
    from census_receiver.prometheus import CensusCollector

    CensusCollector(receiver)       # registers on prometheus_client's default registry
    start_http_server(9100)         # or mount prometheus_client.make_asgi_app()

Exposed metrics:

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

Requires the ``prometheus`` extra (``pip install census-receiver[prometheus]``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric

from .errors import ConfigurationError
from .receiver import WebhookReceiver
from .stats import BUCKETS, ReceiverStats

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

__all__ = ["CensusCollector"]

_DELIVERIES_HELP = "Census webhook deliveries, by event name and outcome."
_HANDLING_HELP = "Seconds spent handling a Census webhook delivery, by event name."


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
