"""Facts and verdicts -> Prometheus metric families, fresh every scrape.

client_python's custom-collector pattern: nothing is kept between scrapes except the file
cache, so a module that disappears from the host disappears from /metrics too.  One module per
section (the collector or verdict it shows); every name is documented in docs/metrics.md (a
test keeps the two in step).
"""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ...scrape import Scrape, Scraper
from . import akmods, dkms, exporter, initramfs, kernel, module, os, packages, readiness, secureboot, system
from .families import Families, clean
from .registry import collector_registry

__all__ = ["DkmsCollector", "clean", "families"]

# in exposition order; exporter's own section first (it takes the cache counters)
SECTIONS = (kernel, readiness, dkms, akmods, module, secureboot, initramfs, packages, system, os)


def families(scrape: Scrape, cache_hits: int = 0, cache_misses: int = 0, store: Any = None
             ) -> list[Metric]:
    """``store``: the scraper's persistent cache (exporter.host.diskcache.DiskCache), or None."""
    out = Families()
    exporter.section(out, scrape, cache_hits, cache_misses, store)
    for section in SECTIONS:
        section.section(out, scrape)
    return list(out)


def registry_for(scraper: Scraper) -> tuple[CollectorRegistry, "DkmsCollector"]:
    """A registry with our collector: no names up front, since they depend on the host, so
    ``name[]`` filtering needs a registry that sees such collectors (registry.collector_registry,
    also on Debian 12's client_python 0.16).  Here, not in web/, so that
    `metrics` and `textfile` do not import the HTTP server, TLS and basic auth."""
    registry = collector_registry()
    collector = DkmsCollector(scraper)
    registry.register(collector)
    return registry, collector


class DkmsCollector(Collector):
    """A client_python custom collector: every collect() is one fresh scrape."""

    def __init__(self, scraper: Scraper) -> None:
        self.scraper = scraper
        self.last: Scrape | None = None

    def collect(self) -> Iterator[Metric]:
        scrape = self.scraper.scrape()
        self.last = scrape
        yield from families(scrape, self.scraper.cache.hits, self.scraper.cache.misses, self.scraper.cache.store)

    def describe(self) -> list[Metric]:
        return []  # names depend on the host; don't scrape at registration
