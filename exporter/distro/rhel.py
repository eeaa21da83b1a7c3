"""RHEL, Rocky, Alma, CentOS Stream, Fedora: the rpm database, dnf's holds and reboot rule,
kernel-devel-K headers, dracut, akmods, weak-modules, grubby: the words of an RHEL administrator.

The rpmdb is found where rpm keeps it (``/var/lib/rpm``; Fedora >= 36 and RHEL 10 keep it in
``/usr/lib/sysimage/rpm`` and link the old path there) and read by its magic: sqlite
``rpmdb.sqlite`` (RHEL 9/10, Fedora) or Berkeley DB ``Packages`` (RHEL 8), never taking rpm's
lock.  Sources: docs/formats.md, "The rpm database", "dnf holds", "Reboot required (dnf)".
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass

from ..facts.packages import Package, PackageFacts, PackageModule, PackageProblem
from ..facts.system import RebootRequired
from ..formats.rpmdb import (InstalledPackage, RpmdbError, bdb_packages, identify, installed_package)
from ..formats.rpmheader import RpmHeaderError
from ..formats.versions import rpm_evr_compare, rpm_release_key
from ..host.context import Context, Unreadable
from ..host.reader import open_regular, query_sqlite
from . import dnf
from .base import Distro

log = logging.getLogger("dkms_exporter")

DB_DIRS = ("/var/lib/rpm", "/usr/lib/sysimage/rpm")
DB_FILES = ("rpmdb.sqlite", "Packages")          # sqlite first: rpm 4.16+ on a converted host
MAX_RPMDB_BYTES = 4 * 1024 * 1024 * 1024


@dataclass(frozen=True, eq=False)          # compared and hashed by identity: one parse, one object
class RpmDatabase:
    path: str                                    # host path of the file read
    backend: str                                 # sqlite | bdb-hash
    packages: tuple[InstalledPackage, ...]
    bad: tuple[tuple[int, str], ...]             # (header number, rpm's complaint) of refused headers


class Rhel(Distro):
    family = "rhel"
    package_manager = "rpm"
    package_databases = tuple(f"{d}/{f}" for d in DB_DIRS for f in DB_FILES)
    dkms_dest = "/extra"

    # --- the package database ---------------------------------------------------------------

    def database(self, ctx: Context) -> RpmDatabase | None:
        """The rpmdb, parsed (cached by the identity of the file and its -wal); None without one.
        Unreadable: recorded in ctx, raised."""
        for directory in DB_DIRS:
            for name in DB_FILES:
                path = f"{directory}/{name}"
                if not ctx.exists(path):
                    continue
                if name == "rpmdb.sqlite":
                    return ctx.compute(path, "rpmdb-sqlite", lambda p, st, host=path: _read_sqlite(p, host),
                                       companions=(f"{path}-wal",))
                return ctx.compute(path, "rpmdb-bdb", lambda p, st, host=path: _read_bdb(p, host))
        return None

    def read_packages(self, ctx: Context) -> PackageFacts:
        """Installed packages (rpm -qa), the ones dnf holds back, and what `dnf check` would list
        that the database proves (duplicates; headers rpm itself refuses)."""
        try:
            db = self.database(ctx)
        except Unreadable:
            return PackageFacts("rpm", (), ())
        if db is None:
            return PackageFacts(None, (), ())
        conf = dnf.dnf_config(ctx)
        return _package_facts(db, dnf.hold_rules(ctx, conf), dnf.installonly(conf))

    def reboot_required(self, ctx: Context) -> RebootRequired:
        """`dnf needs-restarting -r`: a package providing one of NEED_REBOOT (or named in
        needs-restarting.d) installed after boot; boot = max(mtime of /proc/1, btime)."""
        try:
            db = self.database(ctx)
        except Unreadable:
            return RebootRequired(False, None, (), known=False)
        if db is None:
            return RebootRequired(False, None, ())
        names = dnf.reboot_names(ctx)
        boot = boot_time(ctx)
        after = sorted((p for p in db.packages if p.installtime is not None and p.installtime > boot
                        and names.intersection(p.provides)), key=lambda p: (p.installtime, p.name))
        return RebootRequired(bool(after), float(after[0].installtime) if after else None,
                              tuple(dict.fromkeys(p.name for p in after)))

    def blscfg_variant(self, os_release: dict[str, str]) -> str:
        """RHEL 8's grub2 (and its rebuilds') sorts by the entries' version key first."""
        rhel_like = {os_release.get("ID", "")} | set(os_release.get("ID_LIKE", "").split())
        if rhel_like & {"rhel", "centos", "rocky", "almalinux", "ol"} and \
                os_release.get("VERSION_ID", "").split(".")[0] == "8":
            return "rhel8"
        return "current"

    def release_key(self, release: str):
        """Kernel releases ordered as rpm orders the kernel packages' VERSION-RELEASE."""
        return rpm_release_key(release)

    # --- names -------------------------------------------------------------------------------

    def headers_package(self, kernel: str) -> str | None:
        return headers_package(kernel)

    def install_headers(self, kernel: str) -> str:
        return f"dnf install {headers_package(kernel)}"

    def install_build_tools(self) -> str:
        return "dnf install gcc make"

    def update_initramfs(self, kernel: str) -> str:
        return f"dracut -f --kver {kernel}"

    def sign_module(self) -> str:
        return ("sign it: /usr/src/kernels/<kernel>/scripts/sign-file sha256 /var/lib/dkms/mok.key "
                "/var/lib/dkms/mok.pub <file>")

    def rebuild_akmod(self, kernel: str, name: str) -> str:
        return f"akmods --force --kernels {kernel} --kmod {name}"

    def add_weak_modules(self, kernel: str) -> str:
        return f"weak-modules --add-kernel {kernel}"

    def install_kmod_for(self, kernel: str, package: str, fallback: str = "") -> str:
        name = re.sub(r"-(\d+:)?[^-]+-[^-]+$", "", package) if package.startswith("kmod-") else package
        keep = f", or keep booting {fallback}: {self.set_default_kernel(fallback)}" if fallback else ""
        return f"dnf upgrade {name} (a build for {kernel}'s kABI){keep}"

    def kernel_modules_package(self, kernel: str, installed: frozenset[str] = frozenset()) -> str:
        """RHEL 9 and Fedora split a kernel's modules into kernel-modules-core-K,
        kernel-modules-K and kernel-modules-extra-K (RHEL 8: kernel-core, kernel-modules,
        kernel-modules-extra); -extra is the one a minimal install leaves out."""
        if f"kernel-modules-{kernel}" in installed:
            return f"kernel-modules-extra-{kernel}"
        return f"kernel-modules-{kernel}"

    def install_kernel_modules(self, kernel: str, installed: frozenset[str] = frozenset()) -> str:
        package = self.kernel_modules_package(kernel, installed)
        if package not in installed:
            return f"dnf install {package}"
        shipped = [p for p in (f"kernel-modules-core-{kernel}", f"kernel-core-{kernel}", f"kernel-modules-{kernel}",
                               package) if p in installed]
        return f"dnf reinstall {' '.join(dict.fromkeys(shipped))}"

    def release_hold(self, package: str, source: str) -> str:
        if source.endswith(("versionlock.list", "versionlock.toml")):
            return f"dnf versionlock delete {package}"
        return f"remove {package} from exclude= in {source}"

    def headers_package_name(self, kernel: str) -> str:
        return re.sub(r"-[^-]+-[^-]+$", "", headers_package(kernel))

    def set_default_kernel(self, kernel: str) -> str:
        return f"grubby --set-default /boot/vmlinuz-{kernel}"

    def enrol_akmods_key(self) -> str:
        return ("enrol akmods' signing key: mokutil --import /etc/pki/akmods/certs/public_key.der, then confirm in "
                "MokManager at the next boot")


RHEL = Rhel()


# ---------------------------------------------------------------------------------------------
# Reading the database files


def header_row(hnum: int, blob) -> "InstalledPackage | tuple[int, str]":
    """One rpmdb entry as _database takes it: the package, or (hnum, why) for an entry rpm
    skips (a header that does not parse, or a backend's own error for that slot)."""
    if isinstance(blob, Exception):
        return (hnum, str(blob))
    try:
        return installed_package(hnum, bytes(blob))
    except RpmHeaderError as exc:
        return (hnum, str(exc))


def _read_sqlite(path, host: str) -> RpmDatabase:
    rows = query_sqlite(path, "SELECT hnum, blob FROM Packages", MAX_RPMDB_BYTES, lambda row: header_row(*row))
    return _database(host, "sqlite", rows)


def _read_bdb(path, host: str) -> RpmDatabase:
    with open_regular(path) as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        if size > MAX_RPMDB_BYTES:
            raise ValueError(f"{path}: {size} bytes, larger than {MAX_RPMDB_BYTES}")
        head = os.pread(fd, 512, 0)
        kind = identify(head)
        if kind != "bdb-hash":
            raise ValueError(f"{path}: not a Berkeley DB hash database ({kind or 'unknown magic'})")
        try:
            rows = [header_row(hnum, blob) for hnum, blob in bdb_packages(lambda off, n: os.pread(fd, n, off), size)]
        except RpmdbError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return _database(host, "bdb-hash", rows)


def _database(path: str, backend: str, rows: list) -> RpmDatabase:
    good = tuple(sorted((r for r in rows if isinstance(r, InstalledPackage)), key=lambda p: p.hnum))
    bad = tuple(r for r in rows if not isinstance(r, InstalledPackage))
    for hnum, why in bad:
        log.warning("rpmdb %s: header #%s skipped, as rpm skips it: %s", path, hnum, why)
    return RpmDatabase(path, backend, good, bad)


@functools.lru_cache(maxsize=4)
def _package_facts(db: RpmDatabase, rules: dnf.HoldRules, installonly: frozenset[str]) -> PackageFacts:
    """The facts of one database state and one set of rules: made once, reused while both hold."""
    holds = dnf.evaluate(rules, db.packages)
    packages = tuple(Package(p.name, p.evr, p.arch, "installed", p.name in holds, p.installtime, p.provides,
                             p.nevra, holds[p.name].source if p.name in holds else "") for p in db.packages)
    findings = [PackageProblem(f"header #{hnum}", "corrupt-header") for hnum, _ in db.bad]
    findings += duplicates(db.packages, installonly)
    modules = tuple(PackageModule(p.nevra, path) for p in db.packages for path in p.module_files)
    return PackageFacts("rpm", packages, tuple(findings), db.path, modules)


# ---------------------------------------------------------------------------------------------
# What dnf check and needs-restarting would say


def duplicates(packages: tuple[InstalledPackage, ...], installonly: frozenset[str]) -> list[PackageProblem]:
    """`dnf check --duplicates`: NAME.ARCH installed twice, install-only packages (those providing
    an installonlypkgs name: kernels) aside; the older one named first, each later one reported
    (dnf/cli/commands/check.py)."""
    groups: dict[tuple[str, str], list[InstalledPackage]] = {}
    for p in packages:
        if p.arch and not installonly.intersection(p.provides) and p.name not in installonly:
            groups.setdefault((p.name, p.arch), []).append(p)
    out = []
    for (name, _), group in sorted(groups.items()):
        if len(group) > 1:
            group.sort(key=functools.cmp_to_key(lambda a, b: rpm_evr_compare(a.evr, b.evr)))
            out += [PackageProblem(_dnf_name(p), "duplicate") for p in group[1:]]
    return out


def _dnf_name(p: InstalledPackage) -> str:
    """hawkey's str(package): NAME-[EPOCH:]VERSION-RELEASE.ARCH, epoch left out when 0."""
    evr = f"{p.epoch}:{p.version}-{p.release}" if p.epoch else f"{p.version}-{p.release}"
    return f"{p.name}-{evr}.{p.arch}"


def boot_time(ctx: Context) -> float:
    """needs_restarting.py ProcessStart.get_boot_time without D-Bus: max(mtime of /proc/1, the
    kernel's btime); dnf falls back to 1 and 0 when neither can be read, and so does this."""
    try:
        proc1 = os.stat(ctx.fs.proc("1")).st_mtime
    except OSError:
        proc1 = 1.0
    btime = 0.0
    try:
        text = ctx.load_local(ctx.fs.proc("stat"), lambda b: b.decode("ascii", "replace"), limit=4 * 1024 * 1024)
    except Unreadable:
        text = None
    for line in (text or "").splitlines():
        if line.startswith("btime "):
            try:
                btime = float(line.split()[1])
            except (IndexError, ValueError):
                pass
    return max(proc1, btime)


# ---------------------------------------------------------------------------------------------
# Kernel package names

_VARIANT = re.compile(r"^(?P<base>.+?)\+(?P<variant>[a-z0-9-]+)$")


def headers_package(kernel: str) -> str:
    """The package whose files /lib/modules/K/build points at, named as dnf takes it:
    kernel-devel-K, kernel-debug-devel-K for K+debug (kernel.spec's variants: +debug, +rt,
    +rt-debug, +64k, +16k...), kernel-rt-devel-K for RHEL 8's .rt releases."""
    m = _VARIANT.match(kernel)
    if m:
        rt = "rt-" if re.search(r"\.rt[0-9]", m["base"]) and not m["variant"].startswith("rt") else ""
        return f"kernel-{rt}{m['variant']}-devel-{m['base']}"
    if re.search(r"\.rt[0-9]", kernel):
        return f"kernel-rt-devel-{kernel}"
    return f"kernel-devel-{kernel}"
