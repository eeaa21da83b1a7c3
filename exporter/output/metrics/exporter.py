"""Metrics of the exporter itself: build info, per-collector success/duration/errors, file cache."""

from __future__ import annotations

import platform

from ... import __version__
from ...scrape import Scrape
from .families import Families


def section(out: Families, scrape: Scrape, hits: int, misses: int) -> None:
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
                "(device, inode, size, mtime) did not change.").add_metric([], hits)
    out.counter("dkms_exporter_file_cache_misses", "Files read and parsed because they were new or "
                "changed.").add_metric([], misses)
