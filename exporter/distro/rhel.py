"""RHEL, Rocky, Alma, CentOS Stream, Fedora: dnf's words, dracut.  The rpmdb reader comes with the
RPM-family backend; until then packages are not read on these hosts (manager None)."""

from __future__ import annotations

from .base import Distro


class Rhel(Distro):
    family = "rhel"
    package_databases = ("/var/lib/rpm/rpmdb.sqlite", "/var/lib/rpm/Packages", "/usr/lib/sysimage/rpm/rpmdb.sqlite")
    dkms_dest = "/extra"

    def install_headers(self, kernel: str) -> str:
        return f"dnf install kernel-devel-{kernel}"

    def install_build_tools(self) -> str:
        return "dnf install gcc make"

    def update_initramfs(self, kernel: str) -> str:
        return f"dracut -f --kver {kernel}"

    def sign_module(self) -> str:
        return ("sign it: /usr/src/kernels/<kernel>/scripts/sign-file sha256 /var/lib/dkms/mok.key "
                "/var/lib/dkms/mok.pub <file>")


RHEL = Rhel()
