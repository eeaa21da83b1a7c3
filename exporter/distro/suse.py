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


SUSE = Suse()
