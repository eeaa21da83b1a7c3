"""--collector.system's room on /boot, against df (coreutils) on the same filesystem."""

from __future__ import annotations

import subprocess

from example_hosts import healthy
from testkit import require_tool

from exporter.config import Config
from exporter.host.rootfs import HostFS
from exporter.scrape.scraper import Scraper


def test_boot_free_and_size_are_what_df_reports(tmp_path):
    root = tmp_path / "h"
    healthy(root)
    facts = Scraper(HostFS(root), Config(), enabled=frozenset({"system", "os"})).scrape().facts.runs["system"].facts
    out = subprocess.run([require_tool("df"), "-B1", "--output=avail,size", str(root / "boot")],
                         capture_output=True, text=True, check=True).stdout.split()
    avail, size = int(out[2]), int(out[3])
    assert facts.boot_size_bytes == size
    assert abs(facts.boot_free_bytes - avail) < 64 * 1024 * 1024   # other writers share the filesystem
