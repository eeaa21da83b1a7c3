"""What a distribution backend provides, and the answers for a host whose family is unknown."""

from __future__ import annotations

from ..facts.packages import PackageFacts
from ..facts.system import RebootRequired
from ..formats.versions import release_key
from ..host.context import Context, Unreadable


class Distro:
    """A family's backend.  Subclasses override what their family does differently."""

    family = "unknown"
    package_manager: str | None = None          # dpkg | rpm | pacman
    package_databases: tuple[str, ...] = ()     # host paths whose presence identifies the family
    dkms_dest: str | None = None                # dkms's override_dest_module_location there

    def read_packages(self, ctx: Context) -> PackageFacts:
        """Installed, held and half-configured packages; no database known: manager None."""
        return PackageFacts(None, (), ())

    def dkms_dest_for(self, os_release: dict[str, str]) -> str | None:
        """dkms's override_dest_module_location (dkms.in): decided by os-release's first ID_LIKE
        word, else ID (distro_version), not by the family: fedora*/rhel*/ovm* -> /extra,
        sles*/suse*/opensuse* -> /updates, debian*/ubuntu*/arch* -> /updates/dkms, others keep
        the dkms.conf's own DEST_MODULE_LOCATION (None)."""
        like = os_release.get("ID_LIKE", "")
        word = os_release.get("ID", "") if os_release.get("ID") == "ubuntu" or not like else like
        for prefixes, dest in ((("fedora", "rhel", "ovm"), "/extra"), (("sles", "suse", "opensuse"), "/updates"),
                               (("debian", "ubuntu", "arch"), "/updates/dkms")):
            if word.startswith(prefixes):
                return dest
        return self.dkms_dest if not os_release else None

    def reboot_required(self, ctx: Context) -> RebootRequired:
        """/run/reboot-required (Debian's update-notifier and the kernel's postinst write it) and
        the packages listed in /run/reboot-required.pkgs."""
        flag = "/run/reboot-required"
        st = ctx.stat(flag) or ctx.stat("/var/run/reboot-required")
        pkgs: tuple[str, ...] = ()
        try:
            raw = ctx.load(f"{flag}.pkgs", bytes, limit=1024 * 1024, purpose="raw")
            if raw:
                pkgs = tuple(dict.fromkeys(line.strip() for line in raw.decode("utf-8", "replace").splitlines()
                                           if line.strip()))
        except Unreadable:
            pass
        return RebootRequired(st is not None, st.st_mtime if st else None, pkgs)

    def release_key(self, release: str):
        """Sort key of kernel releases, newest last, in the order the family's tools use (dpkg's
        here: GRUB's 10_linux sorts with dpkg --compare-versions)."""
        return release_key(release)

    def blscfg_variant(self, os_release: dict[str, str]) -> str:
        """Which blscfg menu order this family's GRUB uses (formats.bls.blscfg_order)."""
        return "current"

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

    def new_dkms_key(self) -> str:
        """DKMS (3.x) makes mok.key/mok.pub at its next build when they are missing."""
        return ("move DKMS's revoked key aside: mv /var/lib/dkms/mok.key /var/lib/dkms/mok.key.revoked && "
                "mv /var/lib/dkms/mok.pub /var/lib/dkms/mok.pub.revoked")

    def new_akmods_key(self) -> str:
        return "make akmods a new signing key: kmodgenca -a --force"

    def rebuild_akmod(self, kernel: str, name: str) -> str:
        return f"akmods --force --kernels {kernel} --kmod {name}"

    def add_weak_modules(self, kernel: str) -> str:
        return f"weak-modules --add-kernel {kernel}"

    def install_kmod_for(self, kernel: str, package: str, fallback: str = "") -> str:
        """A kernel-module package built for another kernel's symbol versions: get one for K (or
        keep booting ``fallback``, the kernel it was built for)."""
        return f"install a build of {package} made for {kernel}"

    def release_hold(self, package: str, source: str) -> str:
        """The command that lets ``package`` be upgraded again ("" when the family has none here)."""
        return ""

    def headers_package_name(self, kernel: str) -> str | None:
        """The name (without version) of the package ``headers_package`` names, for holds."""
        return None

    def kernel_modules_package(self, kernel: str, installed: frozenset[str] = frozenset()) -> str:
        """The package that ships ``kernel``'s in-tree modules, as its fix names it when one
        (a dependency of a needed module, or a module loaded now) is missing for that kernel.
        ``installed``: the names (and, for rpm, NEVRAs) of the installed packages."""
        return f"the package that ships {kernel}'s in-tree modules"

    def install_kernel_modules(self, kernel: str, installed: frozenset[str] = frozenset()) -> str:
        """The command that brings back ``kernel``'s missing in-tree modules."""
        return f"reinstall {self.kernel_modules_package(kernel, installed)}"

    def enrol_akmods_key(self) -> str:
        return "enrol akmods' signing key: mokutil --import /etc/pki/akmods/certs/public_key.der"


UNKNOWN = Distro()
