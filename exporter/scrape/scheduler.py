"""Run the collectors of one scrape: host files -> facts, each collector timed and its errors kept apart.

A collector is a function Context -> facts.  One that raises reports success 0 and the
others still run; one that records read errors also reports success 0 (its facts are
served, but readiness built on them is "unknown").

Collectors run one at a time, in order, each in a worker thread the scrape watches.  One at
a time because Python threads share one interpreter lock: side by side, the image listing
(many short GIL-releasing zstd calls) waits behind the ELF parsing (3x slower), and a cold
scrape was measured 1.3x slower (docs/performance.md).  Inside a collector, work that runs
outside the lock (decompressing images and module files) may go two at a time: see
collectors.initramfs LISTING_WORKERS and collectors.module PARSE_WORKERS.  A collector that has not returned after
``stall`` seconds (default a tenth of the timeout) stops holding the others up: the next one
starts beside it.  At the scrape's deadline (``--scrape.timeout``) any collector still
running is reported as failed ("timed out") and the scrape is served without it; one that
depends on it (its registration's ``after``) is reported as not started; one that only
``uses`` it runs without its facts.

Python threads cannot be killed, so a late thread is left to finish on its own: whatever it
parsed lands in the file cache (its next run is warm), its facts are dropped, and that
collector is not started again while it is still running: scrapes in the meantime report it
as failed ("still running") at once.  So a collector stuck on a hung read (a dead NFS /boot)
costs one thread, never a pile of them, and never a "ready" (readiness needs its facts).
"""

from __future__ import annotations

import logging
import threading
import time

from .. import process
from ..collectors import Collector, collectors
from ..config import Config
from ..facts import CollectorRun, HostFacts
from ..host.cache import FileCache
from ..host.context import Context
from ..host.rootfs import HostFS

log = logging.getLogger("dkms_exporter")

DEFAULT_TIMEOUT = 30.0  # seconds; --scrape.timeout
STALL_FRACTION = 0.1    # a collector running longer than this share of the timeout no longer blocks the next


class InFlight:
    """The latest run of each collector, across scrapes (one per Scraper).

    A collector whose run from an earlier scrape has not returned is not started again: at
    most one thread per collector, ever."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, _Job] = {}

    def started(self, job: "_Job") -> None:
        with self._lock:
            self._runs[job.name] = job

    def still_running(self, name: str) -> float | None:
        """Seconds since the unfinished run of ``name`` started, or None when there is none."""
        with self._lock:
            job = self._runs.get(name)
        return None if job is None or job.done else time.monotonic() - job.started

    def names(self) -> list[str]:
        """Collectors with a run that has not returned."""
        with self._lock:
            return sorted(n for n, job in self._runs.items() if not job.done)


class _Job:
    """One collector's run: its result, when it started, and whether it returned."""

    def __init__(self, collector: Collector, ctx: Context) -> None:
        self.collector = collector
        self.name = collector.name
        self.ctx = ctx
        self.run = CollectorRun(collector.name)
        self.started = time.monotonic()
        self.done = False
        self.abandoned = False      # its scrape stopped waiting for it


class _Lanes:
    """The collectors of one scrape, run in order, one at a time, by worker threads.

    ``current`` is the collector that holds the lane; when it returns, its worker starts the
    next one.  When it has run for ``stall`` seconds the scrape takes the lane from it and
    starts another worker for the rest; the stalled worker ends when its collector returns
    (or carries on, if the lane is free by then).  All state is guarded by ``cond``, which
    is notified on every change."""

    def __init__(self, fs: HostFS, cache: FileCache, config: Config, wanted: list[Collector],
                 inflight: InFlight) -> None:
        self.fs, self.cache, self.config, self.inflight = fs, cache, config, inflight
        self.registry = {c.name: c for c in wanted}
        self.cond = threading.Condition()
        self.pending = [c.name for c in wanted]
        self.jobs: dict[str, _Job] = {}
        self.skipped: dict[str, CollectorRun] = {}
        self.current: _Job | None = None
        self.closed = False               # the scrape is over: start nothing more

    def finished(self) -> bool:
        return not self.pending and all(job.done for job in self.jobs.values())

    def worker(self) -> None:
        """Start a worker thread that takes the lane if it is free (caller holds ``cond``)."""
        threading.Thread(target=self._work, name="collectors", daemon=True).start()

    def _take(self) -> _Job | None:
        """The first pending collector whose dependencies returned (caller holds ``cond``).
        One it only ``uses`` holds it back while not started; one that stalled does not."""
        for name in list(self.pending):
            deps, uses = self.registry[name].after, self.registry[name].uses
            if any(d in self.pending or (d in self.jobs and not self.jobs[d].done) for d in deps) \
                    or any(d in self.pending for d in uses):
                continue
            self.pending.remove(name)
            missing = [d for d in deps if d not in self.jobs or self.jobs[d].run.facts is None]
            if missing:   # failed, skipped or disabled: it would only raise "no kernel facts"
                self.skipped[name] = CollectorRun(name, crashed=f"not run: {', '.join(missing)} gave no facts")
                continue
            age = self.inflight.still_running(name)
            if age is not None:
                self.skipped[name] = CollectorRun(name, crashed=f"still running since a scrape {age:.0f} s "
                                                                "ago timed out; not started again until it "
                                                                "returns")
                log.warning("not started: its run from an earlier scrape is still going",
                            extra={"collector": name, "running_seconds": round(age)})
                continue
            previous = {d: self.jobs[d].run.facts for d in deps + uses
                        if d in self.jobs and self.jobs[d].done and self.jobs[d].run.facts is not None}
            job = self.jobs[name] = _Job(self.registry[name], Context(self.fs, self.cache, self.config, collector=name,
                                                       previous=previous))
            self.inflight.started(job)
            return job
        return None

    def _work(self) -> None:
        job: _Job | None = None
        while True:
            with self.cond:
                if job is not None:
                    job.done = True
                    if self.current is job:
                        self.current = None
                    if job.abandoned:
                        log.warning("returned too late for its scrape; it runs again in the next one",
                                    extra={"collector": job.name, "duration_seconds": round(job.run.duration, 1)})
                    self.cond.notify_all()
                if self.closed or self.current is not None:
                    return
                job = self.current = self._take()
                if job is None:
                    return  # what is left waits for a stalled collector; its worker carries on
            _run(job)


def _run(job: _Job) -> None:
    start = time.perf_counter()
    misses = job.ctx.cache.misses
    try:
        job.run.facts = job.collector.collect(job.ctx)
    except Exception as exc:  # noqa: BLE001 - a collector bug must not take the scrape down
        job.run.crashed = f"{type(exc).__name__}: {exc}"
        log.exception("collector failed", extra={"collector": job.name})
    job.run.duration = time.perf_counter() - start
    job.run.errors = job.ctx.errors
    if job.ctx.cache.misses != misses:
        process.release_heap()  # it read and parsed files: give their buffers back before the next one


def gather(fs: HostFS, cache: FileCache, config: Config, enabled: frozenset[str], *,
           timeout: float | None = DEFAULT_TIMEOUT, inflight: InFlight | None = None,
           stall: float | None = None) -> HostFacts:
    """Run the enabled collectors in order, one at a time, until the deadline.

    ``timeout`` (seconds, None: no deadline) bounds the whole scrape; a collector running
    longer than ``stall`` (default STALL_FRACTION of the timeout) lets the next one start
    beside it; ``inflight`` remembers collectors that outlived an earlier scrape, so that
    they are not started twice."""
    inflight = inflight if inflight is not None else InFlight()
    fs.begin_scrape()
    cache.begin_scrape()
    deadline = None if timeout is None else time.monotonic() + timeout
    if stall is None and timeout is not None:
        stall = timeout * STALL_FRACTION
    registered = collectors()
    lanes = _Lanes(fs, cache, config, [c for c in registered if c.name in enabled], inflight)
    with lanes.cond:
        lanes.worker()
        while not lanes.finished():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            current = lanes.current
            if stall is not None and current is not None and now - current.started >= stall:
                log.warning("slow: starting the next collectors beside it",
                            extra={"collector": current.name, "running_seconds": round(now - current.started, 1)})
                lanes.current = None
                lanes.worker()
                continue
            waits = [] if deadline is None else [deadline - now]
            if stall is not None:
                # a worker does not wake the scrape when it starts a collector (a GIL hand-off per
                # collector cost ~10 ms a warm scrape): the scrape looks again every ``stall``
                waits.append(current.started + stall - now if current is not None else stall)
            lanes.cond.wait(max(0.0, min(waits)) if waits else None)
        lanes.closed = True
        runs: dict[str, CollectorRun] = dict(lanes.skipped)
        for job in lanes.jobs.values():
            if job.done:
                runs[job.name] = job.run
            else:
                job.abandoned = True
                runs[job.name] = CollectorRun(job.name, duration=time.monotonic() - job.started,
                                              crashed=f"timed out after {timeout:g} s (left running; not "
                                                      "started again until it returns)")
                log.error("timed out; its thread is left to finish",
                          extra={"collector": job.name, "timeout_seconds": timeout})
        for name in lanes.pending:
            waiting = ", ".join(d for d in lanes.registry[name].after if d in lanes.jobs and not lanes.jobs[d].done)
            runs[name] = CollectorRun(name, crashed="not started: the scrape timed out"
                                      + (f" waiting for {waiting}" if waiting else ""))
    cache.sweep()
    return HostFacts({c.name: runs[c.name] for c in registered if c.name in runs}, enabled,
                     tuple(c.name for c in registered if c.readiness))
