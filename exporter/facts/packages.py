"""Facts of the packages collector: the package manager's view of the host, whichever it is.

One shape for every family (dpkg, rpm, pacman): installed packages with their version and
state, which ones are held back from upgrades, and the packages the manager's own audit would
list as half-installed or broken.  The distribution backend (exporter.distro) fills it in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

_KIND_PATTERNS = (
    # Arch: <pkgbase>-headers (linux-headers, linux-lts-headers) are the headers, not a meta package
    ("kernel-headers", re.compile(r"^(linux-headers-|kernel(-[a-z0-9]+)?-devel$|kernel-devel|kernel-headers"
                                  r"|linux(-(?!api-headers$)[a-z0-9]+)*-headers$)")),
    ("kernel-image", re.compile(r"^(linux-image-|linux-modules-|kernel$|kernel-core|kernel-modules"
                                r"|kernel-(rt|debug|rt-debug|64k|64k-debug|16k|16k-debug)(-core|-modules[a-z-]*)?$"
                                r"|linux(-lts|-zen|-hardened|-rt|-rt-lts)?$)")),
    ("kernel-meta", re.compile(r"^linux-(generic|virtual|lowlatency|aws|azure|gcp|oracle|kvm|image|headers)"
                               r"(-[a-z0-9.]+)*$")),
    ("dkms", re.compile(r"(^dkms$|-dkms$)")),
    ("kmod", re.compile(r"^(kmod|akmod)-")),
    ("boot", re.compile(r"^(grub|shim|systemd-boot|initramfs-tools|dracut|linux-base|kmod$|kmod-libs|grubby)")),
)


def package_kind(name: str) -> str:
    """What a package is to a kernel upgrade, for alert routing: kernel-image, kernel-headers,
    kernel-meta, dkms, kmod (RPM kernel-module packages: kmod-NAME, akmod-NAME), boot or other."""
    for kind, pattern in _KIND_PATTERNS:
        if pattern.search(name):
            return kind
    return "other"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    arch: str
    state: str          # "installed", or the manager's word for a package that is not (fully)
    held: bool          # kept back from upgrades (apt-mark hold, dnf versionlock, IgnorePkg, ...)
    installtime: int | None = None       # rpm: INSTALLTIME (what `dnf needs-restarting -r` compares)
    provides: tuple[str, ...] = ()       # rpm: PROVIDENAME
    nevra: str = ""                      # rpm: NAME-[EPOCH:]VERSION-RELEASE.ARCH (kernel-devel-K is one)
    held_by: str = ""                    # the file whose rule holds it (versionlock.list, dnf.conf, ...)

    @property
    def label(self) -> str:
        """How the manager names this one package among others of its name (rpm: its NEVRA)."""
        return self.nevra or self.name

    @property
    def kind(self) -> str:
        return package_kind(self.name)


@dataclass(frozen=True)
class PackageProblem:
    package: str        # as the manager prints it (dpkg: name, or name:arch where ambiguous)
    problem: str        # stable label value, one per heading of the manager's audit


@dataclass(frozen=True)
class PackageModule:
    """A kernel module file a package installed out of tree (rpm kmod packages)."""

    package: str        # the package's label (NEVRA)
    path: str           # /lib/modules/K/extra/...


@dataclass(frozen=True)
class PackageFacts:
    manager: str | None                  # dpkg | rpm | pacman; None: no package database found
    packages: tuple[Package, ...]
    findings: tuple[PackageProblem, ...]
    database: str = ""                   # host path of the database read
    module_files: tuple[PackageModule, ...] = ()
    kernel_owners: tuple[tuple[str, str, str], ...] = ()   # rpm: (K, name, VERSION-RELEASE) of the packages
                                                           # owning /lib/modules/K/kernel/ files

    @property
    def present(self) -> bool:
        return self.manager is not None

    @property
    def held(self) -> list[Package]:
        return [p for p in self.packages if p.held]

    def installed(self, name: str) -> bool:
        """A package of that name (or, for rpm, that NEVRA: kernel-devel-K, or NAME-VERSION-RELEASE
        as `rpm -q` takes it) is installed."""
        return name in self._installed

    @cached_property
    def _installed(self) -> frozenset[str]:
        """Names, NEVRAs and NAME-VERSION-RELEASEs of the installed packages, derived once per
        facts object (these live as long as the package database's identity): a warm scrape asks
        per kernel and header package, and walking ~1,000 packages each time was per-scrape work
        for nothing."""
        return frozenset(n for p in self.packages if p.state == "installed"
                         for n in (p.name, p.nevra, f"{p.name}-{p.version.split(':', 1)[-1]}"))
