"""Images and module files parsed side by side on a cold scrape (collectors.initramfs
LISTING_WORKERS, collectors.module PARSE_WORKERS): the answer, the facts, the read errors and
the cache's own counters are those of the one-at-a-time order, whatever the machine's cores,
and a warm scrape starts no thread."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from example_hosts import many_problems, suse_healthy

import exporter.collectors.initramfs as initramfs
import exporter.collectors.module as module
import exporter.host.parallel as parallel
from exporter.config import Config
from exporter.host.rootfs import HostFS
from exporter.scrape.scraper import Scraper


class _Counting:
    """exporter.host.parallel.map_in_threads, counting the calls that start threads."""
    started = 0
    real = staticmethod(__import__("exporter.host.parallel", fromlist=["x"]).map_in_threads)

    @classmethod
    def map(cls, fn, items, workers):
        cls.started += workers >= 2 and len(items) >= 2
        return cls.real(fn, items, workers)


def _run(root: Path, monkeypatch, workers: int) -> tuple:
    monkeypatch.setattr(initramfs, "LISTING_WORKERS", workers)
    monkeypatch.setattr(module, "PARSE_WORKERS", workers)
    monkeypatch.setattr(parallel, "map_in_threads", _Counting.map)
    monkeypatch.setattr(parallel, "cores", lambda: 2)   # two cores, as CI has
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


def test_map_in_threads_keeps_order_and_raises_the_first_error():
    from exporter.host.parallel import map_in_threads

    assert map_in_threads(lambda x: x * x, list(range(7)), 2) == [x * x for x in range(7)]

    def failing(x):
        if x in (3, 5):
            raise ValueError(x)
        return x

    with pytest.raises(ValueError, match="3"):
        map_in_threads(failing, list(range(7)), 2)


def test_a_hung_parse_does_not_hold_up_the_exit(tmp_path):
    """The threads are daemons: a process whose parse is stuck (a dead NFS mount) still exits
    once its main thread is done, as it does when the scrape gives up on a collector."""
    import subprocess
    import sys
    code = ("import threading, sys\n"
            "from exporter.host.parallel import map_in_threads\n"
            "stuck = threading.Event()\n"
            "threading.Thread(target=map_in_threads, args=(lambda x: stuck.wait(), [1, 2], 2), daemon=True).start()\n"
            "print('done')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr
