"""Building metric families: gauges and counters with fixed label sets, label values made UTF-8."""

from __future__ import annotations

from typing import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


def b(value: bool) -> str:
    return "true" if value else "false"


def clean(value: str) -> str:
    """Label values must be UTF-8: file names that are not become U+FFFD, never a failed scrape."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class _Gauge(GaugeMetricFamily):
    def add_metric(self, labels, value, timestamp=None):  # type: ignore[override]
        super().add_metric([clean(v) for v in labels], value, timestamp)


class _Counter(CounterMetricFamily):
    def add_metric(self, labels, value, created=None, timestamp=None):  # type: ignore[override]
        super().add_metric([clean(v) for v in labels], value, created, timestamp)


class Families:
    """Builds gauges with a fixed label set, samples kept in insertion order."""

    def __init__(self) -> None:
        self._families: list[Metric] = []

    def gauge(self, name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
        fam = _Gauge(name, doc, labels=list(labels))
        self._families.append(fam)
        return fam

    def counter(self, name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
        fam = _Counter(name, doc, labels=list(labels))
        self._families.append(fam)
        return fam

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._families)
