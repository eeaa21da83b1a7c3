"""Metrics of the exporter itself: build info, per-collector success/duration/errors, file cache."""

from __future__ import annotations

import platform
from typing import Any

from ... import __version__
from ...scrape import Scrape
from .families import Families


def section(out: Families, scrape: Scrape, hits: int, misses: int, store: Any = None) -> None:
    out.gauge("dkms_exporter_build_info", "A metric with a constant '1' value labeled by the exporter's "
              "version and the Python it runs on.", ["version", "python_version"]) \
        .add_metric([__version__, platform.python_version()], 1)
    success = out.gauge("dkms_scrape_collector_success", "Whether a collector succeeded: 1 when it ran "
                        "and could read everything it needed.", ["collector"])
    duration = out.gauge("dkms_scrape_collector_duration_seconds", "How long a collector took.", ["collector"])
    errors = out.gauge("dkms_scrape_collector_errors", "Files a collector could not read or parse in this "
                       "scrape (see the exporter's log for which).", ["collector"])
    for name, run in scrape.facts.runs.items():
        success.add_metric([name], 1 if run.success else 0)
        duration.add_metric([name], run.duration)
        errors.add_metric([name], len(run.errors) + (1 if run.crashed else 0))
    out.counter("dkms_exporter_file_cache_hits", "Files whose parse was reused because their identity "
                "(device, inode, size, mtime, ctime) did not change.").add_metric([], hits)
    out.counter("dkms_exporter_file_cache_misses", "Files read and parsed because they were new or "
                "changed.").add_metric([], misses)
    if store is not None:
        _persistent(out, store)


def _persistent(out: Families, store: Any) -> None:
    """The persistent cache (--cache.dir; an exporter.host.diskcache.DiskCache, which output/ may
    not import), present when it is configured."""
    out.gauge("dkms_exporter_cache_usable", "1 when the --cache.dir directory is safe to use (owned by "
              "this user, writable by no one else); 0: the cache is off (see the log).").add_metric(
        [], 1 if store.usable else 0)
    out.counter("dkms_exporter_cache_hits", "Parse results read back from the persistent cache instead of "
                "parsing the file.").add_metric([], store.hits)
    out.counter("dkms_exporter_cache_misses", "Persistent cache lookups that found nothing usable for the "
                "file's identity.").add_metric([], store.misses)
    out.counter("dkms_exporter_cache_stores", "Parse results written to the persistent cache.").add_metric(
        [], store.stores)
    out.counter("dkms_exporter_cache_evictions", "Entries removed to keep the persistent cache within "
                "--cache.dir.max-bytes.").add_metric([], store.evicted)
    rejected = out.counter("dkms_exporter_cache_rejected", "Persistent cache files ignored (and rewritten "
                           "by the next store) because they were unsafe, damaged, of another schema or "
                           "not written for this file.", ["reason"])
    for reason, count in sorted(store.rejected.items()):
        rejected.add_metric([reason], count)
