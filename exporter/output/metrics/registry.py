"""The registry our collector goes in, on every client_python Debian 12 or pip installs.

Our collector describes no names up front (its families depend on the host), so ``name[]``
(``CollectorRegistry.restricted_registry``) must also look at collectors without names.
"""

from __future__ import annotations

from typing import Any, Iterable

from prometheus_client.core import Metric
from prometheus_client.registry import CollectorRegistry


def collector_registry() -> CollectorRegistry:
    """A registry whose ``restricted_registry`` (``name[]``) also sees collectors that describe no
    names up front, as ours cannot (the families depend on the host).

    client_python >= 0.25 does that itself (``support_collectors_without_names``). Older ones
    (Debian 12's python3-prometheus-client is 0.16) restrict only to collectors that described
    their names, so ``name[]`` would answer nothing: there :class:`FilteringRegistry` applies the
    same sample-name filter to every collector."""
    try:
        return CollectorRegistry(auto_describe=False, support_collectors_without_names=True)
    except TypeError:
        return FilteringRegistry(auto_describe=False)


class FilteringRegistry(CollectorRegistry):
    """client_python < 0.25: ``restricted_registry`` filters the samples of every collector."""

    def restricted_registry(self, names: Any) -> "RestrictedCollect":  # type: ignore[override]
        return RestrictedCollect(self, frozenset(names))


class RestrictedCollect:
    """What client_python >= 0.25's RestrictedRegistry yields for collectors without names: each
    family with only the samples whose name was asked for; families left empty are dropped."""

    def __init__(self, registry: CollectorRegistry, names: frozenset[str]) -> None:
        self._registry = registry
        self._names = names

    def collect(self) -> Iterable[Metric]:
        for metric in self._registry.collect():
            kept = [s for s in metric.samples if s.name in self._names]
            if kept:
                family = Metric(metric.name, metric.documentation, metric.type, metric.unit)
                family.samples = kept
                yield family
