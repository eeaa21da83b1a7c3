"""SLES and openSUSE: zypper's words, dracut.  The ndb rpmdb reader comes with the SUSE backend;
until then packages are not read on these hosts (manager None)."""

from __future__ import annotations

from .base import Distro


class Suse(Distro):
    family = "suse"
    package_databases = ("/usr/lib/sysimage/rpm/Packages.db", "/var/lib/rpm/Packages.db")
    dkms_dest = "/updates"

    def install_headers(self, kernel: str) -> str:
        flavour = kernel.rsplit("-", 1)[-1] if "-" in kernel else "default"
        return f"zypper install kernel-{flavour}-devel"

    def install_build_tools(self) -> str:
        return "zypper install gcc make"

    def update_initramfs(self, kernel: str) -> str:
        return f"dracut -f --kver {kernel}"


SUSE = Suse()
