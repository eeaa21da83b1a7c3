"""Arch Linux: pacman's local database, IgnorePkg/IgnoreGroup holds, pacman's version order,
mkinitcpio, and the reboot rule of a rolling release (the running kernel's module directory is
gone after ``pacman -Syu``).  Sources: docs/formats.md, "pacman's local database", "pacman's
version order", "pacman.conf holds"."""

from __future__ import annotations

import functools
import glob as _glob
import logging
import re

from ..facts.packages import Package, PackageFacts, PackageProblem
from ..facts.system import RebootRequired
from ..formats.pacman import (HoldRule, LocalPackage, PacmanConfError, parse_desc,
                              parse_pacman_conf, should_ignore, split_entry_name)
from ..formats.versions import alpm_release_key
from ..host.context import Context, Unreadable
from .base import Distro
from .pkgbase import MODULES_ROOT

log = logging.getLogger("dkms_exporter")

LOCAL_DB = "/var/lib/pacman/local"
PACMAN_CONF = "/etc/pacman.conf"
MAX_DESC_BYTES = 1024 * 1024
MAX_PACKAGES = 100_000
MAX_CONF_BYTES = 1024 * 1024


class Arch(Distro):
    family = "arch"
    package_manager = "pacman"
    package_databases = (f"{LOCAL_DB}/ALPM_DB_VERSION",)
    dkms_dest = "/updates/dkms"

    def __init__(self, pkgbases: tuple[tuple[str, str], ...] = ()) -> None:
        self.pkgbases = dict(pkgbases)      # release -> its /lib/modules/K/pkgbase

    def for_host(self, facts) -> "Arch":
        """The headers package of K is <pkgbase>-headers, pkgbase as K's own files name it (the
        release only hints at it: linux-lts' 6.6.36-1-lts, but a custom kernel's anything)."""
        from ..facts.kernel import KernelFacts
        kernels = facts.get(KernelFacts) if facts is not None else None
        pairs = tuple(sorted((k.release, k.pkgbase) for k in kernels.kernels if k.pkgbase)) if kernels else ()
        return _bound(pairs) if pairs else self

    def read_packages(self, ctx: Context) -> PackageFacts:
        """Every entry of the local database (pacman -Q), held when pacman -Su would ignore it;
        entries pacman refuses (no desc, bad name, name mismatch) are findings."""
        try:
            entries = ctx.listdir(LOCAL_DB)
        except Unreadable:
            return PackageFacts("pacman", (), ())
        if entries is None:
            return PackageFacts(None, (), ())
        packages, findings = read_local_db(ctx, entries)
        try:
            rules = hold_rules(ctx)
        except PacmanConfError as exc:
            ctx.error(PACMAN_CONF, exc)
            rules = ()
        return PackageFacts("pacman", _with_holds(packages, rules), tuple(findings), LOCAL_DB)

    def reboot_required(self, ctx: Context) -> RebootRequired:
        """Arch has no reboot-required file: after ``pacman -Syu`` replaced the running kernel its
        modules are gone (``/lib/modules/<running>/kernel``: what the kernel package owns; a held
        headers package's ``build/`` or DKMS leftovers may keep the directory itself), and no
        module can be loaded until the reboot."""
        try:
            raw = ctx.load_local(ctx.fs.proc("sys/kernel/osrelease"), bytes, limit=4096, purpose="raw")
        except Unreadable:
            return RebootRequired(False, None, (), known=False)
        running = (raw or b"").decode("utf-8", "replace").strip()
        if not running or "/" in running:
            return RebootRequired(False, None, (), known=False)
        try:
            gone = not ctx.is_dir(f"{MODULES_ROOT}/{running}/kernel")
        except Unreadable:
            return RebootRequired(False, None, (), known=False)
        return RebootRequired(gone, None, ())

    def release_key(self, release: str):
        """Kernel releases in pacman's order (vercmp)."""
        return alpm_release_key(release)

    # --- names -------------------------------------------------------------------------------

    def headers_package(self, kernel: str) -> str | None:
        return self.headers_package_name(kernel)

    def headers_package_name(self, kernel: str) -> str:
        pkgbase = self.pkgbases.get(kernel)
        return f"{pkgbase}-headers" if pkgbase else headers_package_name(kernel)

    def install_headers(self, kernel: str) -> str:
        return f"pacman -S {self.headers_package_name(kernel)}"

    def install_build_tools(self) -> str:
        return "pacman -S base-devel"

    def update_initramfs(self, kernel: str) -> str:
        return "mkinitcpio -P"

    def kernel_modules_package(self, kernel: str, installed: frozenset[str] = frozenset()) -> str:
        """Arch ships every in-tree module in the kernel's own package (its pkgbase)."""
        return self.pkgbases.get(kernel) or headers_package_name(kernel).removesuffix("-headers")

    def install_kernel_modules(self, kernel: str, installed: frozenset[str] = frozenset()) -> str:
        return f"pacman -S {self.kernel_modules_package(kernel, installed)}"

    def release_hold(self, package: str, source: str) -> str:
        return f"remove {package} from IgnorePkg/IgnoreGroup in {source}"

    def sign_module(self) -> str:
        return ("sign it: /usr/lib/modules/<kernel>/build/scripts/sign-file sha256 /var/lib/dkms/mok.key "
                "/var/lib/dkms/mok.pub <file>")


ARCH = Arch()


@functools.lru_cache(maxsize=16)
def _bound(pkgbases: tuple[tuple[str, str], ...]) -> Arch:
    return Arch(pkgbases)


# ---------------------------------------------------------------------------------------------
# The local database and the holds


def read_local_db(ctx: Context, entries: list[str]) -> tuple[list[LocalPackage], list[PackageProblem]]:
    """The packages of the local db, as libalpm's local_db_populate takes them: directories named
    NAME-PKGVER-PKGREL with a readable desc; the first of two entries of one name wins."""
    packages: dict[str, LocalPackage] = {}
    findings: list[PackageProblem] = []
    for entry in entries[:MAX_PACKAGES]:
        if entry.startswith(".") or entry == "ALPM_DB_VERSION":
            continue
        split = split_entry_name(entry)
        if split is None:
            findings.append(PackageProblem(entry, "invalid-entry"))
            continue
        try:
            pkg = ctx.load(f"{LOCAL_DB}/{entry}/desc", parse_desc, limit=MAX_DESC_BYTES, purpose="pacman-desc")
        except Unreadable:
            findings.append(PackageProblem(entry, "corrupt-entry"))
            continue
        if pkg is None:
            if ctx.is_dir(f"{LOCAL_DB}/{entry}"):
                findings.append(PackageProblem(entry, "corrupt-entry"))
            continue
        if (pkg.name, pkg.version) != split:
            findings.append(PackageProblem(entry, "inconsistent-entry"))
        if pkg.name in packages:
            findings.append(PackageProblem(entry, "duplicate"))
            continue
        packages[pkg.name] = pkg
    if len(entries) > MAX_PACKAGES:
        ctx.error(LOCAL_DB, f"more than {MAX_PACKAGES} entries; the rest were not read")
    return sorted(packages.values(), key=lambda p: p.name), findings


def hold_rules(ctx: Context) -> tuple[HoldRule, ...]:
    """IgnorePkg/IgnoreGroup of /etc/pacman.conf and its Includes (host paths under the root)."""
    if not ctx.exists(PACMAN_CONF):
        return ()

    def load(path: str) -> bytes | None:
        try:
            return ctx.load(path, bytes, limit=MAX_CONF_BYTES, purpose="raw")
        except Unreadable:
            return None

    def glob(pattern: str) -> list[str]:
        """glob(3) under the root, sorted as glob sorts (only names are read here; every file
        is then read through ctx.load, links resolved inside the root)."""
        if not pattern.startswith("/"):
            return []
        root = str(ctx.fs.root).rstrip("/")
        return sorted(ctx.fs.to_host(p) for p in _glob.glob(root + pattern))
    return parse_pacman_conf(PACMAN_CONF, load, glob)


@functools.lru_cache(maxsize=4)
def _holds_cached(packages: tuple[LocalPackage, ...], rules: tuple[HoldRule, ...]) -> tuple[Package, ...]:
    out = []
    for p in packages:
        rule = should_ignore(rules, p.name, p.groups)
        out.append(Package(p.name, p.version, p.arch, "installed", rule is not None, p.installdate, p.provides,
                           "", rule.source if rule else ""))
    return tuple(out)


def _with_holds(packages: list[LocalPackage], rules: tuple[HoldRule, ...]) -> tuple[Package, ...]:
    return _holds_cached(tuple(packages), rules)


# ---------------------------------------------------------------------------------------------
# Kernels: the headers package (pkgbase: exporter/distro/pkgbase.py)

# uname -r of Arch's kernels: 6.9.7-arch1-1 (linux), 6.6.36-1-lts (linux-lts), 6.9.7-zen1-1-zen
_FLAVOUR = re.compile(r"^[0-9][^-]*-(?:[a-z]+[0-9]+-)?[0-9]+-(?P<flavour>[a-z][a-z0-9-]*)$")


def headers_package_name(kernel: str) -> str:
    """The headers package of a kernel release: <pkgbase>-headers, pkgbase inferred from the
    release as Arch's kernel packages name it (linux, linux-lts, linux-zen, linux-hardened...)."""
    m = _FLAVOUR.match(kernel)
    return f"linux-{m['flavour']}-headers" if m else "linux-headers"
