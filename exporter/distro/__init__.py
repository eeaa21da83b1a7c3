"""The distribution seam: one backend per family (Debian, RHEL, SUSE, Arch), chosen per host from
what is on disk.

A backend knows three things the rest of the exporter must not hard-code: how its package
database reads (installed, held, half-configured packages), the words of its fix commands
(apt-get / dnf / zypper / pacman, update-initramfs / dracut / mkinitcpio), and where DKMS puts
modules there.  The family comes from os-release (ID, then ID_LIKE), else from which package
database exists.  Nothing else in the exporter branches on the distribution.
"""

from __future__ import annotations

import importlib

from ..formats.osrelease import parse_os_release
from ..host.context import Context, Unreadable
from .base import UNKNOWN, Distro

__all__ = ["BACKENDS", "Distro", "classify", "detect", "for_family"]

# family -> (module, backend): a host loads its own family's backend and parsers only (the
# other three families' rpmdb, dnf, zypp and pacman code is ~1.4 MiB and ~12 ms of a process)
BACKENDS = {"debian": ("debian", "DEBIAN"), "rhel": ("rhel", "RHEL"), "suse": ("suse", "SUSE"),
            "arch": ("arch", "ARCH")}
OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")

# os-release IDs (and ID_LIKE words) of each family, matched as prefixes
_IDS = (
    ("rhel", ("fedora", "rhel", "centos", "rocky", "almalinux", "ol", "ovm", "amzn")),
    ("suse", ("sles", "suse", "opensuse", "sled", "sle-micro")),
    ("arch", ("arch", "manjaro", "endeavouros")),
    ("debian", ("debian", "ubuntu", "linuxmint", "pop", "raspbian")),
)


def classify(os_release: dict[str, str]) -> str | None:
    """The family an os-release names: ID first, then each ID_LIKE word; None when unknown."""
    words = [os_release.get("ID", "")] + os_release.get("ID_LIKE", "").split()
    for word in (w.lower() for w in words if w):
        for family, prefixes in _IDS:
            if any(word == p or word.startswith(p + "-") or (len(p) > 3 and word.startswith(p)) for p in prefixes):
                return family
    return None


def for_family(name: str | None) -> Distro:
    """The backend of a family (imported on first use); UNKNOWN for None or any other name."""
    spec = BACKENDS.get(name or "")
    if spec is None:
        return UNKNOWN
    return getattr(importlib.import_module(f"{__name__}.{spec[0]}"), spec[1])


def os_release(ctx: Context) -> dict[str, str]:
    """The host's os-release ({} when there is none); read errors are the caller's collector's."""
    for path in OS_RELEASE:
        try:
            found = ctx.load(path, parse_os_release, limit=65536, purpose="os-release")
        except Unreadable:
            continue
        if found is not None:
            return found
    return {}


def detect(ctx: Context) -> tuple[Distro, dict[str, str], str]:
    """(backend, os-release, evidence) for the host: os-release's family, else the family whose
    package database exists.  Cheap on an unchanged host (cached parse, a few stat calls)."""
    release = os_release(ctx)
    family = classify(release)
    if family is not None:
        return for_family(family), release, "os-release"
    for distro in map(for_family, ("debian", "arch", "rhel", "suse")):   # imported as far as needed
        for path in distro.package_databases:
            if ctx.exists(path):
                return distro, release, path
    return UNKNOWN, release, "none"
