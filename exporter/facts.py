"""Run the collectors: host files -> facts, each collector timed and its errors kept apart.

A collector is a function Context -> facts.  One that raises reports success 0 and the
others still run; one that records read errors also reports success 0 (its facts are
served, but readiness built on them is "unknown").

Each collector runs in its own thread, as soon as the collectors it reads facts from
(DEPENDS) have finished, and the scrape waits for them until its deadline.  One that is
still running then is reported as failed ("timed out"), and the scrape is served without
it.  Python threads cannot be killed, so the late thread is left to finish on its own:
whatever it parsed lands in the file cache (the next run of it is warm), its facts are
dropped, and that collector is not started again while it is still running; scrapes in
the meantime report it as failed ("still running") at once.  So a collector stuck on a
hung read (a dead NFS /boot) costs one thread, never a pile of them, and never "ready".
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .bootloader import BootFacts, collect_bootloader
from .config import Config
from .context import Context, ReadError
from .dkmstree import DkmsFacts, collect_dkms
from .dpkg import DpkgFacts, collect_dpkg
from .filecache import FileCache
from .hostfs import HostFS
from .initramfs_images import InitramfsFacts, collect_initramfs
from .kernels import KernelFacts, collect_kernels
from .loaded import LoadedFacts, collect_loaded
from .modules import ModuleFacts, collect_modules
from .secureboot import TrustFacts, collect_secureboot
from .system import SystemFacts, collect_system

log = logging.getLogger("dkms_exporter")

COLLECTORS: dict[str, Callable[[Context], Any]] = {
    "kernel": collect_kernels,
    "bootloader": collect_bootloader,
    "dkms": collect_dkms,
    "dpkg": collect_dpkg,
    "system": collect_system,
    "loaded": collect_loaded,
    "secureboot": collect_secureboot,
    "module": collect_modules,      # after kernel and loaded: reads the files they found
    "initramfs": collect_initramfs,
}

# readiness is only as good as these; if one failed or is disabled, verdicts are "unknown"
READINESS_DEPENDS_ON = ("kernel", "dkms", "loaded", "secureboot", "module", "initramfs")

# which collectors' facts a collector reads (ctx.previous): it starts once they have finished
DEPENDS: dict[str, tuple[str, ...]] = {
    "module": ("kernel", "loaded"),
    "initramfs": ("kernel",),
}

DEFAULT_TIMEOUT = 30.0  # seconds; --scrape.timeout


@dataclass
class CollectorRun:
    name: str
    facts: Any = None
    duration: float = 0.0
    errors: list[ReadError] = field(default_factory=list)
    crashed: str | None = None

    @property
    def success(self) -> bool:
        return self.crashed is None and not self.errors


@dataclass
class HostFacts:
    runs: dict[str, CollectorRun]
    enabled: frozenset[str]

    def _get(self, name: str) -> Any:
        run = self.runs.get(name)
        return run.facts if run else None

    @property
    def kernels(self) -> KernelFacts | None:
        return self._get("kernel")

    @property
    def boot(self) -> BootFacts | None:
        return self._get("bootloader")

    @property
    def dkms(self) -> DkmsFacts | None:
        return self._get("dkms")

    @property
    def dpkg(self) -> DpkgFacts | None:
        return self._get("dpkg")

    @property
    def system(self) -> SystemFacts | None:
        return self._get("system")

    @property
    def loaded(self) -> LoadedFacts | None:
        return self._get("loaded")

    @property
    def trust(self) -> TrustFacts | None:
        return self._get("secureboot")

    @property
    def modules(self) -> ModuleFacts | None:
        return self._get("module")

    @property
    def initramfs(self) -> InitramfsFacts | None:
        return self._get("initramfs")

    def failed(self, names: tuple[str, ...]) -> list[str]:
        """Which of these collectors did not give trustworthy facts (failed or disabled)."""
        return [n for n in names if n not in self.runs or not self.runs[n].success]


class InFlight:
    """Collector threads that outlived their scrape's deadline, by collector name.

    Owned by the Scraper (one per process), so a collector whose previous run is still
    going is not started again: at most one thread per collector, ever."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._late: dict[str, tuple[threading.Thread, float]] = {}

    def still_running(self, name: str) -> float | None:
        """Seconds since the late run of ``name`` started, or None when there is none."""
        with self._lock:
            late = self._late.get(name)
            if late is None:
                return None
            thread, started = late
            if not thread.is_alive():
                del self._late[name]
                return None
            return time.monotonic() - started

    def abandon(self, name: str, thread: threading.Thread, started: float) -> None:
        with self._lock:
            self._late[name] = (thread, started)

    def names(self) -> list[str]:
        with self._lock:
            return [n for n, (t, _) in self._late.items() if t.is_alive()]


class _Job:
    """One collector's run in its own daemon thread; it notifies ``finished`` when it returns."""

    def __init__(self, name: str, fn: Callable[[Context], Any], ctx: Context,
                 finished: threading.Condition) -> None:
        self.name = name
        self.run = CollectorRun(name)
        self.done = False
        self.abandoned = False      # its scrape timed out waiting for it (set under ``finished``)
        self.started = time.monotonic()
        self._fn = fn
        self._ctx = ctx
        self._finished = finished
        self.thread = threading.Thread(target=self._main, name=f"collector-{name}", daemon=True)

    def _main(self) -> None:
        start = time.perf_counter()
        try:
            self.run.facts = self._fn(self._ctx)
        except Exception as exc:  # noqa: BLE001 - a collector bug must not take the scrape down
            self.run.crashed = f"{type(exc).__name__}: {exc}"
            log.exception("collector %s failed", self.name)
        self.run.duration = time.perf_counter() - start
        self.run.errors = self._ctx.errors
        with self._finished:
            self.done = True
            self._finished.notify_all()
            late = self.abandoned
        if late:
            log.warning("collector %s finished %.1f s after it started, too late for its scrape; "
                        "it runs again in the next one", self.name, self.run.duration)


def gather(fs: HostFS, cache: FileCache, config: Config, enabled: frozenset[str], *,
           timeout: float | None = DEFAULT_TIMEOUT, inflight: InFlight | None = None) -> HostFacts:
    """Run the enabled collectors, each once its DEPENDS have finished, until the deadline.

    ``timeout`` (seconds, None: no deadline) bounds the whole scrape; ``inflight`` remembers
    collectors that outlived an earlier scrape, so that they are not started twice."""
    inflight = inflight if inflight is not None else InFlight()
    fs.begin_scrape()
    cache.begin_scrape()
    deadline = None if timeout is None else time.monotonic() + timeout
    wanted = [n for n in COLLECTORS if n in enabled]
    pending = list(wanted)
    runs: dict[str, CollectorRun] = {}
    jobs: dict[str, _Job] = {}
    finished = threading.Condition()

    def startable(name: str) -> bool:
        return all(d not in pending and (d not in jobs or jobs[d].done) for d in DEPENDS.get(name, ()))

    with finished:
        while True:
            for name in [n for n in pending if startable(n)]:
                pending.remove(name)
                age = inflight.still_running(name)
                if age is not None:
                    runs[name] = CollectorRun(name, crashed=f"still running since a scrape {age:.0f} s ago "
                                                            "timed out; not started again until it returns")
                    log.warning("collector %s: its run from %.0f s ago is still going; not started", name, age)
                    continue
                previous = {d: jobs[d].run.facts for d in DEPENDS.get(name, ())
                            if d in jobs and jobs[d].run.facts is not None}
                ctx = Context(fs, cache, config, collector=name, previous=previous)
                jobs[name] = _Job(name, COLLECTORS[name], ctx, finished)
                jobs[name].thread.start()
            running = [j for j in jobs.values() if not j.done]
            if not running:
                break  # everything ran (pending is empty: DEPENDS has no cycles)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            finished.wait(remaining)
        for job in jobs.values():
            if job.done:
                runs[job.name] = job.run
            else:
                runs[job.name] = CollectorRun(job.name, duration=time.monotonic() - job.started,
                                              crashed=f"timed out after {timeout:g} s (left running; not "
                                                      "started again until it returns)")
                job.abandoned = True
                inflight.abandon(job.name, job.thread, job.started)
                log.error("collector %s timed out after %g s; its thread is left to finish", job.name, timeout)
    for name in pending:
        waiting = ", ".join(d for d in DEPENDS.get(name, ()) if d in jobs and not jobs[d].done)
        runs[name] = CollectorRun(name, crashed=f"not started: the scrape timed out waiting for {waiting}")
    cache.sweep()
    return HostFacts({n: runs[n] for n in wanted}, enabled)
