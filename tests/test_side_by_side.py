"""Images and module files parsed side by side on a cold scrape (collectors.initramfs
LISTING_WORKERS, collectors.module PARSE_WORKERS): the answer, the facts, the read errors and
the cache's own counters are those of the one-at-a-time order, whatever the machine's cores,
and a warm scrape starts no thread."""

from __future__ import annotations

import concurrent.futures
from dataclasses import replace
from pathlib import Path

import pytest
from example_hosts import many_problems, suse_healthy

import exporter.collectors.initramfs as initramfs
import exporter.collectors.module as module
from exporter.config import Config
from exporter.host.rootfs import HostFS
from exporter.scrape.scraper import Scraper


class _Counting(concurrent.futures.ThreadPoolExecutor):
    started = 0

    def __init__(self, *args, **kw):
        type(self).started += 1
        super().__init__(*args, **kw)


def _run(root: Path, monkeypatch, workers: int) -> tuple:
    monkeypatch.setattr(initramfs, "LISTING_WORKERS", workers)
    monkeypatch.setattr(module, "PARSE_WORKERS", workers)
    monkeypatch.setattr(initramfs, "ThreadPoolExecutor", _Counting)
    monkeypatch.setattr(module, "ThreadPoolExecutor", _Counting)
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1})   # two cores, as CI has
    _Counting.started = 0
    scraper = Scraper(HostFS(root), Config())
    cold = scraper.scrape()
    pools = _Counting.started
    warm = scraper.scrape()
    images = {k: replace(i, listing=i.listing and replace(i.listing, seconds=0.0))   # a timing, not a fact
              for k, i in cold.facts.runs["initramfs"].facts.images.items()}
    facts = (images, cold.facts.runs["module"].facts,
             [(e.path, e.message) for n in ("initramfs", "module") for e in cold.facts.runs[n].errors])
    return cold.readiness, facts, (scraper.cache.hits, scraper.cache.misses), pools, _Counting.started - pools, warm


@pytest.mark.parametrize("build", [many_problems, suse_healthy])
def test_side_by_side_gives_the_one_at_a_time_answer(tmp_path, monkeypatch, build):
    root = tmp_path / "h"
    build(root)
    one = _run(root, monkeypatch, 1)
    two = _run(root, monkeypatch, 2)
    assert one[3] == 0 and two[3] == 2, "the cold scrape lists images and parses modules in threads"
    assert two[4] == 0, "a warm scrape (everything cached) starts no thread"
    assert two[:3] == one[:3]
    assert two[5].readiness == one[5].readiness
