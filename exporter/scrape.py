"""One scrape: gather facts, assess readiness.  Shared by serve, metrics, textfile and check.

Scrapes are serialised: a second concurrent scrape waits and then runs against a warm
cache, so two scrapes never decompress the same image at the same time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .config import Config
from .facts import COLLECTORS, HostFacts, gather
from .filecache import FileCache
from .hostfs import HostFS
from .readiness import Readiness, assess


@dataclass(frozen=True)
class Scrape:
    facts: HostFacts
    readiness: Readiness


class Scraper:
    def __init__(self, fs: HostFS, config: Config, enabled: frozenset[str] | None = None) -> None:
        self.fs = fs
        self.config = config
        self.enabled = frozenset(COLLECTORS) if enabled is None else enabled
        self.cache = FileCache()
        self._lock = threading.Lock()

    def scrape(self) -> Scrape:
        with self._lock:
            facts = gather(self.fs, self.cache, self.config, self.enabled)
            return Scrape(facts, assess(facts, self.config))
