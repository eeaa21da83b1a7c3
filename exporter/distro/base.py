"""What a distribution backend provides, and the answers for a host whose family is unknown."""

from __future__ import annotations

from ..facts.packages import PackageFacts
from ..host.context import Context


class Distro:
    """A family's backend.  Subclasses override what their family does differently."""

    family = "unknown"
    package_manager: str | None = None          # dpkg | rpm | pacman
    package_databases: tuple[str, ...] = ()     # host paths whose presence identifies the family
    dkms_dest: str | None = None                # dkms's override_dest_module_location there

    def read_packages(self, ctx: Context) -> PackageFacts:
        """Installed, held and half-configured packages; no database known: manager None."""
        return PackageFacts(None, (), ())

    def headers_package(self, kernel: str) -> str | None:
        """The package that ships ``kernel``'s headers, when the family names it after the kernel."""
        return None

    # --- the words of the fix commands ------------------------------------------------------

    def install_headers(self, kernel: str) -> str:
        return f"install the headers of {kernel} (the package that provides /lib/modules/{kernel}/build)"

    def install_build_tools(self) -> str:
        return "install a C compiler and make"

    def update_initramfs(self, kernel: str) -> str:
        return (f"rebuild the initramfs of {kernel} (update-initramfs -u -k {kernel}, dracut -f --kver {kernel} "
                "or mkinitcpio -P)")

    def create_initramfs(self, kernel: str) -> str:
        return self.update_initramfs(kernel)

    def sign_module(self) -> str:
        return ("sign it: <kernel build dir>/scripts/sign-file sha256 /var/lib/dkms/mok.key /var/lib/dkms/mok.pub "
                "<file>")

    def enrol_dkms_key(self) -> str:
        return ("enrol DKMS's signing key: mokutil --import /var/lib/dkms/mok.pub, then confirm in MokManager at "
                "the next boot")


UNKNOWN = Distro()
