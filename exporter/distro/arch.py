"""Arch Linux: pacman's words, mkinitcpio.  The pacman database reader comes with the Arch backend;
until then packages are not read on these hosts (manager None)."""

from __future__ import annotations

from .base import Distro


class Arch(Distro):
    family = "arch"
    package_databases = ("/var/lib/pacman/local/ALPM_DB_VERSION",)
    dkms_dest = "/updates/dkms"

    def install_headers(self, kernel: str) -> str:
        return "pacman -S linux-headers (the -headers package of the kernel's pkgbase)"

    def install_build_tools(self) -> str:
        return "pacman -S base-devel"

    def update_initramfs(self, kernel: str) -> str:
        return "mkinitcpio -P"


ARCH = Arch()
