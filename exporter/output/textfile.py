"""`textfile`: one scrape written atomically for node_exporter's textfile collector.

Written to a temporary file in the same directory, fsynced, then renamed over the target,
so node_exporter never reads half a file.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class _LastRun(Collector):
    def collect(self):
        g = GaugeMetricFamily("dkms_textfile_last_run_timestamp_seconds",
                              "When `dkms-exporter textfile` last wrote this file.")
        g.add_metric([], time.time())
        yield g


def write_textfile(registry: CollectorRegistry, output: str | Path) -> None:
    registry.register(_LastRun())
    body = generate_latest(registry)
    target = Path(output)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
