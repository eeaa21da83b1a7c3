"""Debian and Ubuntu: dpkg's database, apt's words, initramfs-tools (or dracut)."""

from __future__ import annotations

import os

from ..facts.packages import Package, PackageFacts, PackageProblem
from ..formats.jsoncodec import Codec
from ..formats.dpkg import audit, native_architecture, parse_arch_file, parse_status
from ..host.context import Context, Unreadable
from ..host.reader import read_bounded
from .base import Distro

STATUS_FILE = "/var/lib/dpkg/status"
INFO_DIR = "/var/lib/dpkg/info"
ARCH_FILE = "/var/lib/dpkg/arch"
MAX_STATUS_BYTES = 256 * 1024 * 1024
# the derived package facts as the persistent cache (--cache.dir) keeps them
CODEC = Codec("dpkg-facts", (PackageFacts, Package, PackageProblem))


class Debian(Distro):
    family = "debian"
    package_manager = "dpkg"
    package_databases = (STATUS_FILE,)
    dkms_dest = "/updates/dkms"

    def read_packages(self, ctx: Context) -> PackageFacts:
        """/var/lib/dpkg/status, holds (want=hold) and what `dpkg --audit` would list.

        The facts are derived once per identity of the status file, the info directory (its
        entries are what the missing-list/md5sums checks look at) and the arch file: on an
        unchanged host a scrape costs three stat calls, not an audit of every package."""
        recorded = len(ctx.errors)
        try:
            facts = ctx.compute(STATUS_FILE, "dpkg-facts", lambda _p, _st: self._derive(ctx),
                                companions=(INFO_DIR, ARCH_FILE), persist=CODEC)
        except Unreadable:
            return PackageFacts("dpkg", (), ())
        if len(ctx.errors) > recorded:   # derived around a read error: report it again next time
            ctx.cache.forget(ctx.fs.local(STATUS_FILE), "dpkg-facts")
        return facts if facts is not None else PackageFacts(None, (), ())

    def _derive(self, ctx: Context) -> PackageFacts:
        # a parse error propagates to ctx.compute, which records it (and remembers it for this
        # identity); the parsed packages are not kept: only the facts derived from them are
        parsed = parse_status(read_bounded(ctx.fs.local(STATUS_FILE), MAX_STATUS_BYTES))
        try:
            info_names = ctx.cache.compute(ctx.fs.path(INFO_DIR), "listdir",
                                           lambda p, _st: frozenset(os.listdir(p)))
        except OSError as exc:
            ctx.error(INFO_DIR, exc)
            info_names = None
        try:
            arches = ctx.load(ARCH_FILE, parse_arch_file, limit=65536, purpose="dpkg-arch") or frozenset()
        except Unreadable:
            arches = frozenset()
        native = native_architecture(parsed)
        if info_names is not None:
            found = audit(parsed, info_names, arches, native)
        else:   # without the info db, the missing-list/md5sums checks would list every package
            found = [f for f in audit(parsed, frozenset(), arches, native) if not f.problem.startswith("missing-")]
        packages = tuple(Package(p.name, p.version, p.arch, p.state, p.want == "hold") for p in parsed)
        return PackageFacts("dpkg", packages, tuple(PackageProblem(f.package, f.problem) for f in found))

    def headers_package(self, kernel: str) -> str | None:
        return f"linux-headers-{kernel}"

    def install_headers(self, kernel: str) -> str:
        return f"apt-get install linux-headers-{kernel}"

    def install_build_tools(self) -> str:
        return "apt-get install build-essential"

    def update_initramfs(self, kernel: str) -> str:
        return f"update-initramfs -u -k {kernel} (dracut: dracut -f --kver {kernel})"

    def create_initramfs(self, kernel: str) -> str:
        return f"update-initramfs -c -k {kernel} (dracut: dracut -f --kver {kernel})"

    def kernel_modules_package(self, kernel: str, installed: frozenset[str] = frozenset()) -> str:
        """Ubuntu splits a kernel's modules: linux-modules-K (the common ones) and
        linux-modules-extra-K (the rest, often not installed on cloud and server images);
        Debian ships them all in linux-image-K (or linux-image-K-unsigned)."""
        if f"linux-modules-{kernel}" in installed:
            return f"linux-modules-extra-{kernel}"
        if f"linux-image-{kernel}-unsigned" in installed:
            return f"linux-image-{kernel}-unsigned"
        return f"linux-image-{kernel}"

    def install_kernel_modules(self, kernel: str, installed: frozenset[str] = frozenset()) -> str:
        package = self.kernel_modules_package(kernel, installed)
        if package not in installed:
            return f"apt-get install {package}"
        if package.startswith("linux-modules-extra-"):
            return f"apt-get install --reinstall linux-modules-{kernel} {package}"
        return f"apt-get install --reinstall {package}"

    def sign_module(self) -> str:
        return ("sign it: kmodsign sha512 /var/lib/shim-signed/mok/MOK.priv /var/lib/shim-signed/mok/MOK.der "
                "<file> (or /usr/lib/linux-kbuild-*/scripts/sign-file sha256 /var/lib/dkms/mok.key "
                "/var/lib/dkms/mok.pub <file>)")

    def new_dkms_key(self) -> str:
        return ("move DKMS's revoked key aside: mv /var/lib/dkms/mok.key /var/lib/dkms/mok.key.revoked && "
                "mv /var/lib/dkms/mok.pub /var/lib/dkms/mok.pub.revoked (Ubuntu: update-secureboot-policy "
                "--new-key)")

    def enrol_dkms_key(self) -> str:
        return ("enrol DKMS's signing key: mokutil --import /var/lib/dkms/mok.pub (Ubuntu: "
                "/var/lib/shim-signed/mok/MOK.der), then confirm in MokManager at the next boot")


DEBIAN = Debian()
