"""SLES and openSUSE: the rpm database (ndb ``Packages.db``; sqlite or Berkeley DB where a host
has one of those instead), zypper's package locks as holds, zypper's reboot flag, KMPs and
weak-modules2, dracut: the words of a SUSE administrator.

A package held by a lock carries ``held_by`` = ``/etc/zypp/locks: LOCK`` (the lock as ``zypper
locks`` names it): ``zypper removelock`` takes the lock's own name, not the package's (a glob
lock ``kernel-*-devel`` is not removed by ``zypper removelock kernel-default-devel``).
Sources: docs/formats.md, "The rpm database", "zypper locks", "Reboot required (zypper)".
"""

from __future__ import annotations

import functools
import os
import re

from ..facts.packages import Package, PackageFacts, PackageModule, PackageProblem
from ..facts.system import RebootRequired
from ..formats.ndb import NdbError, ndb_packages
from ..formats.versions import rpm_release_key
from ..formats.zypplocks import ZyppLock, ZyppLocksError, judge, parse_locks
from ..host.context import Context, Unreadable
from ..host.reader import open_regular
from .base import Distro
from .rhel import MAX_RPMDB_BYTES, RHEL, RpmDatabase, _database, duplicates, header_row

NDB_PATHS = ("/usr/lib/sysimage/rpm/Packages.db", "/var/lib/rpm/Packages.db")
LOCKS = "/etc/zypp/locks"
REBOOT_NEEDED = "/run/reboot-needed"
MAX_LOCKS_BYTES = 4 * 1024 * 1024
# zypp.conf multiversion = provides:multiversion(kernel): kernels are installed side by side
INSTALLONLY = frozenset({"multiversion(kernel)"})


class Suse(Distro):
    family = "suse"
    package_manager = "rpm"
    package_databases = NDB_PATHS
    dkms_dest = "/updates"

    def __init__(self, devel: tuple[tuple[str, str], ...] = ()) -> None:
        self.devel = dict(devel)            # release -> kernel-FLAVOUR-devel-V-R of its kernel package

    # --- the package database ---------------------------------------------------------------

    def database(self, ctx: Context) -> RpmDatabase | None:
        """The ndb Packages.db, else the sqlite/bdb rpmdb RHEL's reader finds; None without one."""
        for path in NDB_PATHS:
            if ctx.exists(path):
                return ctx.compute(path, "rpmdb-ndb", lambda p, st, host=path: _read_ndb(p, host))
        return RHEL.database(ctx)

    def read_packages(self, ctx: Context) -> PackageFacts:
        """Installed packages (rpm -qa), the ones a zypper lock keeps (zypper locks --solvables),
        headers rpm refuses and duplicate NAME.ARCH (kernels aside) as findings."""
        try:
            db = self.database(ctx)
        except Unreadable:
            return PackageFacts("rpm", (), ())
        if db is None:
            return PackageFacts(None, (), ())
        try:
            raw = ctx.load(LOCKS, lambda b: b.decode("utf-8", "replace"), limit=MAX_LOCKS_BYTES, purpose="zypp-locks")
        except Unreadable:
            raw = None
        try:
            locks = parse_locks(raw) if raw else ()
        except ZyppLocksError as exc:
            ctx.error(LOCKS, exc)
            locks = ()
        return _package_facts(db, locks)

    def reboot_required(self, ctx: Context) -> RebootRequired:
        """`zypper needs-rebooting`: libzypp creates /run/reboot-needed after installing a package
        that asks for a reboot (the kernel, glibc, systemd...); it names no packages."""
        st = ctx.stat(REBOOT_NEEDED)
        return RebootRequired(st is not None, st.st_mtime if st else None, ())

    def release_key(self, release: str):
        """Kernel releases in rpm's order (6.4.0-150600.23.25-default < 6.4.0-150600.23.30-default)."""
        return rpm_release_key(release)

    # --- names -------------------------------------------------------------------------------

    def for_host(self, facts) -> "Suse":
        """K's headers are kernel-FLAVOUR-devel of the same VERSION-RELEASE as the kernel-FLAVOUR
        package that owns /usr/lib/modules/K/kernel/ (the release lacks the rebuild number N of
        kernel-default-6.4.0-150600.23.25.N): found in the rpmdb, never guessed from K."""
        from ..facts.packages import PackageFacts
        packages = facts.get(PackageFacts) if facts is not None else None
        found = {}
        for k, name, vr in (packages.kernel_owners if packages else ()):
            flavour = k.rsplit("-", 1)[-1]
            if name == f"kernel-{flavour}":
                found[k] = f"kernel-{flavour}-devel-{vr}"
        return _bound(tuple(sorted(found.items()))) if found else self

    def headers_package(self, kernel: str) -> str | None:
        """kernel-FLAVOUR-devel-V-R of K's kernel package (for_host); None when the rpmdb does not
        say which package is K's (headers_missing still says what is missing)."""
        return self.devel.get(kernel)

    def headers_package_name(self, kernel: str) -> str:
        """kernel-FLAVOUR-devel: the flavour is the release's last part (-default, -azure, -rt)."""
        flavour = kernel.rsplit("-", 1)[-1] if "-" in kernel else "default"
        return f"kernel-{flavour}-devel"

    def install_headers(self, kernel: str) -> str:
        return f"zypper install {self.headers_package_name(kernel)}"

    def install_build_tools(self) -> str:
        return "zypper install gcc make"

    def kernel_modules_package(self, kernel: str, installed: frozenset[str] = frozenset()) -> str:
        """SLE ships the supported modules in kernel-<flavour> and the rest in
        kernel-<flavour>-extra; openSUSE's kernel-<flavour> has them all (Tumbleweed moves some
        to kernel-<flavour>-optional)."""
        flavour = kernel.rsplit("-", 1)[-1] if "-" in kernel else "default"
        extra = f"kernel-{flavour}-extra"
        return extra if extra not in installed and f"kernel-{flavour}" in installed else f"kernel-{flavour}"

    def install_kernel_modules(self, kernel: str, installed: frozenset[str] = frozenset()) -> str:
        package = self.kernel_modules_package(kernel, installed)
        if package.endswith("-extra"):
            return f"zypper install {package}"
        return f"zypper install --force {package} (SLE: and {package}-extra; openSUSE: {package}-optional)"

    def update_initramfs(self, kernel: str) -> str:
        return f"dracut -f --kver {kernel}"

    def add_weak_modules(self, kernel: str) -> str:
        return f"/usr/lib/module-init-tools/weak-modules2 --add-kernel {kernel}"

    def install_kmod_for(self, kernel: str, package: str, fallback: str = "") -> str:
        name = re.sub(r"-[^-]+-[^-]+$", "", package) if "-kmp-" in package else package   # NEVRA -> name
        keep = f", or keep booting {fallback}: {self.set_default_kernel(fallback)}" if fallback else ""
        return f"zypper install {name} (a KMP built for {kernel}'s kABI){keep}"

    def release_hold(self, package: str, source: str) -> str:
        path, sep, lock = source.partition(": ")
        return f"zypper removelock '{lock}'" if sep and path == LOCKS else f"zypper removelock {package}"

    def set_default_kernel(self, kernel: str) -> str:
        """GRUB 2 as SUSE's 10_linux names entries (perl-bootloader's `pbl --default` runs the same
        grub2-set-default); with systemd-boot or grub2-bls it is sdbootutil's entry id instead."""
        return f"grub2-set-default \"gnulinux-{kernel}-advanced-$(findmnt -no UUID /)\""

SUSE = Suse()


@functools.lru_cache(maxsize=16)
def _bound(devel: tuple[tuple[str, str], ...]) -> Suse:
    return Suse(devel)


def _read_ndb(path, host: str) -> RpmDatabase:
    """Packages.db read whole through pread on one descriptor (no lock taken: rpm's readers
    take a shared flock on the file; a reader that never writes needs none)."""
    with open_regular(path) as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        if size > MAX_RPMDB_BYTES:
            raise ValueError(f"{path}: {size} bytes, larger than {MAX_RPMDB_BYTES}")
        try:
            rows = [header_row(hnum, blob) for hnum, blob in ndb_packages(lambda off, n: os.pread(fd, n, off), size)]
        except NdbError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return _database(host, "ndb", rows)


@functools.lru_cache(maxsize=4)
def _package_facts(db: RpmDatabase, locks: tuple[ZyppLock, ...]) -> PackageFacts:
    """The facts of one database state and one locks file: made once, reused while both hold."""
    packages = []
    for p in db.packages:
        evr = f"{p.epoch}:{p.version}-{p.release}" if p.epoch else f"{p.version}-{p.release}"
        lock = next((lk for lk in locks if judge(lk, p.name, evr, p.arch)), None)
        packages.append(Package(p.name, p.evr, p.arch, "installed", lock is not None, p.installtime, p.provides,
                                p.nevra, f"{LOCKS}: {lock.label}" if lock else ""))
    findings = [PackageProblem(f"header #{hnum}", "corrupt-header") for hnum, _ in db.bad]
    findings += duplicates(db.packages, INSTALLONLY)
    modules = tuple(PackageModule(p.nevra, path) for p in db.packages for path in p.module_files)
    owners = tuple((k, p.name, f"{p.version}-{p.release}") for p in db.packages for k in p.kernel_releases)
    return PackageFacts("rpm", tuple(packages), tuple(findings), db.path, modules, owners)
