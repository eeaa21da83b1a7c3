"""One scrape: gather facts, assess readiness.  Shared by serve, metrics, textfile and check.

Scrapes are single-flight: while one runs, callers that arrive wait for the next one, which
starts when it ends and is shared by all of them.  So N concurrent scrapers cost at most two
scrapes' time and two scrapes' work, every caller gets facts gathered after it asked, and two
scrapes never decompress the same image at the same time.  Each scrape is bounded by the
timeout (see exporter/scrape/scheduler.py for what happens to a collector that overruns it).

The verdict is derived once per state of the facts: a scrape whose facts equal the previous
scrape's, and which read no file anew (no file-cache miss, so every parse result is the very
object the previous verdict was derived from), reuses that verdict.  The second condition is a
guard for parse results with fields outside equality (a module's signed bytes and digest): a
re-read file always gets a new verdict, whatever it compares equal to.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Hashable

from ..collectors import collectors
from ..config import Config
from ..facts import HostFacts
from ..host.cache import FileCache
from ..host.diskcache import DiskCache
from ..host.rootfs import HostFS
from ..verdict.readiness import Readiness, assess
from .scheduler import DEFAULT_TIMEOUT, InFlight, gather


@dataclass(frozen=True)
class Scrape:
    facts: HostFacts
    readiness: Readiness


class Scraper:
    def __init__(self, fs: HostFS, config: Config, enabled: frozenset[str] | None = None,
                 timeout: float | None = DEFAULT_TIMEOUT, store: DiskCache | None = None) -> None:
        self.fs = fs
        self.config = config
        self.enabled = frozenset(c.name for c in collectors()) if enabled is None else enabled
        self.timeout = timeout
        self.cache = FileCache(store)   # store: the persistent cache (--cache.dir), None when off
        self.inflight = InFlight()
        self._cond = threading.Condition()
        self._running = False
        self._started = 0            # scrapes started so far
        self._finished = 0           # number of the newest finished scrape
        self._last: Scrape | None = None
        self._verdict: tuple[tuple[Hashable, ...], Readiness] | None = None   # (facts key, readiness)

    def scrape(self) -> Scrape:
        """A scrape that started after this call: run one, or share the one the next caller runs."""
        with self._cond:
            wanted = self._started + 1
            while True:
                if self._finished >= wanted and self._last is not None:
                    return self._last
                if not self._running:
                    self._running = True
                    self._started += 1
                    number = self._started
                    break
                self._cond.wait()
        result = None
        stores = self.cache.store.stores if self.cache.store else 0
        misses = self.cache.misses
        try:
            facts = gather(self.fs, self.cache, self.config, self.enabled, timeout=self.timeout,
                           inflight=self.inflight)
            result = Scrape(facts, self._assess(facts, reread=self.cache.misses != misses))
            if self.cache.store is not None and self.cache.store.stores != stores:
                self.cache.store.enforce_bound()   # it grew: keep it within --cache.dir.max-bytes
            return result
        finally:
            with self._cond:
                self._running = False
                if result is not None:
                    self._finished, self._last = number, result
                self._cond.notify_all()

    def _assess(self, facts: HostFacts, reread: bool) -> Readiness:
        """The previous verdict when nothing it was derived from changed, else a new one."""
        key = _facts_key(facts)
        memo = self._verdict
        if memo is not None and not reread and memo[0] == key:
            return memo[1]
        readiness = assess(facts, self.config)
        self._verdict = (key, readiness)
        return readiness


def _facts_key(facts: HostFacts) -> tuple[Hashable, ...]:
    """Everything assess() reads from a scrape: each collector's facts and whether it succeeded
    (not its duration, which differs every scrape)."""
    runs = tuple((name, run.facts, run.crashed, tuple(run.errors)) for name, run in sorted(facts.runs.items()))
    return (runs, facts.enabled, facts.readiness_collectors)
