"""Run the collectors: host files -> facts, each collector timed and its errors kept apart.

A collector is a function Context -> facts.  One that raises reports success 0 and the
others still run; one that records read errors also reports success 0 (its facts are
served, but readiness built on them is "unknown").
"""

from __future__ import annotations

import logging
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


def gather(fs: HostFS, cache: FileCache, config: Config, enabled: frozenset[str]) -> HostFacts:
    fs.begin_scrape()
    cache.begin_scrape()
    runs: dict[str, CollectorRun] = {}
    for name, fn in COLLECTORS.items():
        if name not in enabled:
            continue
        ctx = Context(fs, cache, config, collector=name,
                      previous={n: r.facts for n, r in runs.items() if r.facts is not None})
        run = CollectorRun(name)
        start = time.perf_counter()
        try:
            run.facts = fn(ctx)
        except Exception as exc:  # noqa: BLE001 - a collector bug must not take the scrape down
            run.crashed = f"{type(exc).__name__}: {exc}"
            log.exception("collector %s failed", name)
        run.duration = time.perf_counter() - start
        run.errors = ctx.errors
        runs[name] = run
    cache.sweep()
    return HostFacts(runs, enabled)
