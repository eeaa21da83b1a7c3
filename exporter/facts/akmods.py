"""Facts of the akmods collector: the akmod source packages akmods builds kmods from for every
kernel (Fedora, RPM Fusion), and the builds it recorded as failed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AkmodBuild:
    """One build akmods logged: ``/var/cache/akmods/NAME/VERREL-for-K.log`` or ``.failed.log``."""

    kernel: str
    verrel: str
    failed: bool
    log: str             # host path of the log
    mtime: float
    cause: str = ""      # failed builds: headers_missing | compiler_missing | kernel_api_mismatch | other
    detail: str = ""


@dataclass(frozen=True)
class AkmodEntry:
    name: str            # the kmod's name: /usr/src/akmods/NAME-kmod.latest, /lib/modules/K/extra/NAME/
    version: str         # VERSION-RELEASE of the akmod source package
    verrel: str          # akmods' key for logs: that with the .fcNN/.lvnNN dist tags taken out
    source: str          # host path of NAME-kmod.latest
    builds: tuple[AkmodBuild, ...] = ()

    def failure_for(self, kernel: str) -> AkmodBuild | None:
        """The failed build for K of this akmod's version, unless a later one succeeded (akmods
        leaves the .failed.log behind when a rebuild succeeds)."""
        mine = [b for b in self.builds if b.kernel == kernel and b.verrel == self.verrel]
        failed = max((b for b in mine if b.failed), key=lambda b: b.mtime, default=None)
        if failed is None or any(not b.failed and b.mtime >= failed.mtime for b in mine):
            return None
        return failed


@dataclass(frozen=True)
class AkmodsFacts:
    entries: tuple[AkmodEntry, ...]

    def get(self, name: str) -> AkmodEntry | None:
        return next((e for e in self.entries if e.name == name), None)
