"""The example hosts: the README's reboot trap, a healthy host, and one with every problem.

    python tests/example_hosts.py examples/hosts     # (re)write the committed example trees

Tests build the same hosts into temporary directories (with fixed mtimes) for golden files.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostbuilder import FIXED_MTIME, Host, module_elf  # noqa: E402

OLD, NEW = "6.1.0-27-amd64", "6.1.0-28-amd64"
API_MISMATCH_LOG = """\
make -C /lib/modules/6.1.0-28-amd64/build M=/var/lib/dkms/nvfake/535.1/build modules
  CC [M]  /var/lib/dkms/nvfake/535.1/build/nvfake_main.o
/var/lib/dkms/nvfake/535.1/build/nvfake_main.c: In function 'nvfake_probe':
/var/lib/dkms/nvfake/535.1/build/nvfake_main.c:212:9: error: implicit declaration of function 'pci_enable_pcie_error_reporting' [-Werror=implicit-function-declaration]
  212 |         pci_enable_pcie_error_reporting(pdev);
      |         ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
cc1: some warnings being treated as errors
make[2]: *** [scripts/Makefile.build:250: /var/lib/dkms/nvfake/535.1/build/nvfake_main.o] Error 1
make[1]: *** [Makefile:2026: /var/lib/dkms/nvfake/535.1/build] Error 2
make: *** [Makefile:234: __sub-make] Error 2
"""


def reboot_trap(root: Path) -> Host:
    """unattended-upgrades installed 6.1.0-28 while linux-headers-amd64 is held: no headers,
    so DKMS built nothing for the kernel GRUB boots next."""
    h = Host(root)
    h.kernel(OLD, running=True)
    h.kernel(NEW, headers=False)
    for name, version, dest in (("acpi-call", "1.2.2", ["acpi_call"]), ("v4l2loopback", "0.12.7", ["v4l2loopback"])):
        h.dkms(name, version, dest=dest)
        h.dkms_build(name, version, OLD, dest=dest)
    h.package("acpi-call-dkms", "1.2.2-2.1", arch="all")
    h.package("v4l2loopback-dkms", "0.12.7-2", arch="all")
    h.package("linux-headers-amd64", "6.1.106-3", want="hold")
    h.package("linux-image-amd64", "6.1.112-1")
    for k in (OLD, NEW):
        h.initramfs(k, ["e1000e"])
    h.grub()
    h.reboot_required(f"linux-image-{NEW}")
    h.finish()
    return h


def healthy(root: Path) -> Host:
    h = Host(root)
    h.kernel(OLD, running=True)
    h.kernel(NEW)
    for name, version, dest in (("acpi-call", "1.2.2", ["acpi_call"]), ("v4l2loopback", "0.12.7", ["v4l2loopback"])):
        h.dkms(name, version, dest=dest)
        for k in (OLD, NEW):
            h.dkms_build(name, version, k, dest=dest)
    h.package("acpi-call-dkms", "1.2.2-2.1", arch="all")
    h.package("v4l2loopback-dkms", "0.12.7-2", arch="all")
    h.secure_boot(True)            # the DKMS key is enrolled, every module is signed with it
    h.loaded(("acpi_call", "OE"), ("v4l2loopback", "OE"), ("e1000e", ""))
    for k in (OLD, NEW):
        h.initramfs(k, ["e1000e"], early_cpio=True)
    h.grub()
    h.finish()
    return h


def many_problems(root: Path) -> Host:
    """Every problem the foundation can see, on one host with four kernels."""
    k1, k2, k3, k4 = "6.1.0-25-amd64", OLD, NEW, "6.1.0-100-amd64"
    h = Host(root)
    h.kernel(k1)
    h.kernel(k2, running=True)
    h.kernel(k3)
    h.kernel(k4, headers=False, config={"CONFIG_ACPI": "n"})
    # acpi-call: BUILD_EXCLUSIVE_CONFIG (k4 has no ACPI) would keep it off k4, but dkms reads it only
    # from 3.0.11 (dkms.in check_version_and_config); this host has 3.0.10, so k4 needs it too
    h.dkms("acpi-call", "1.2.2", dest=["acpi_call"], extra_conf='BUILD_EXCLUSIVE_CONFIG="CONFIG_ACPI"\n')
    for k in (k1, k2, k3):
        h.dkms_build("acpi-call", "1.2.2", k, dest=["acpi_call"])
    # nvfake builds two modules; its build for k3 failed on a kernel API change
    h.dkms("nvfake", "535.1", dest=["nvfake", "nvfake-drm"])
    for k in (k1, k2):
        h.dkms_build("nvfake", "535.1", k, dest=["nvfake", "nvfake-drm"])
    h.dkms_failed_build("nvfake", "535.1", k3, API_MISMATCH_LOG)
    # v4l2loopback: built for k3 but never installed; installed for k2 but the file was deleted
    h.dkms("v4l2loopback", "0.12.7", dest=["v4l2loopback"])
    h.dkms_build("v4l2loopback", "0.12.7", k2, dest=["v4l2loopback"])
    h.dkms_build("v4l2loopback", "0.12.7", k3, dest=["v4l2loopback"], installed=False)
    # zfake: installed for k3, but depmod was not rerun (removed from modules.dep below)
    h.dkms("zfake", "2.1.11", dest=["zfake", "spl"])
    for k in (k2, k3):
        h.dkms_build("zfake", "2.1.11", k, dest=["zfake", "spl"])
    # an old version whose source is gone, and one whose autoinstall is off
    h.dkms("oldmod", "0.9", dest=["oldmod"], source="dangling")
    h.dkms("manualmod", "1.0", dest=["manualmod"], autoinstall=False)
    # its package is installed, but dkms's prerm hook dropped it when its last kernel was removed
    h.write("usr/src/lostmod-3.2/dkms.conf", 'PACKAGE_NAME="lostmod"\nPACKAGE_VERSION="3.2"\n'
            'BUILT_MODULE_NAME[0]="lostmod"\nDEST_MODULE_LOCATION[0]="/extra"\nAUTOINSTALL="yes"\n')
    # Secure Boot is on; only the DKMS key is enrolled
    h.secure_boot(True)
    # built for k3 before k3's image was installed, against k2's headers: wrong CRCs
    h.dkms("stalebuild", "1.0", dest=["stalebuild"])
    h.dkms_build("stalebuild", "1.0", k2, dest=["stalebuild"])
    h.dkms_build("stalebuild", "1.0", k3, dest=["stalebuild"], built_against=k2)
    # DKMS could not sign it (no sign-file): Secure Boot will refuse it
    h.dkms("unsignedmod", "1.0", dest=["unsignedmod"])
    h.dkms_build("unsignedmod", "1.0", k3, dest=["unsignedmod"], key=None)
    # a vendor driver outside DKMS, loaded now, signed with a key nobody enrolled
    for k in (k2, k3):
        h.write(f"usr/lib/modules/{k}/extra/vendorfake.ko", module_elf("vendorfake", k, key="foreign"))
    h.loaded(("vendorfake", "OE"), ("acpi_call", "OE"), ("zfake", "POE"), ("spl", "OE"), ("e1000e", ""),
             ("igb", ""), ("snd_dummy", ""))
    # in-tree modules loaded now that k3 lacks (a flavour without them): igb is loaded at every
    # boot (modules-load.d), snd_dummy only by hand
    for k in (k1, k2, k4):
        for name in ("igb", "snd-dummy"):
            h.write(f"usr/lib/modules/{k}/kernel/drivers/misc/{name}.ko",
                    module_elf(name, k, intree=True, key="kernel-build"))
    h.write("etc/modules-load.d/net.conf", "# the uplink\nigb\n")
    h.write("etc/modprobe.d/local.conf", "# keep the webcam loopback off\nblacklist v4l2loopback\n")
    # root on zfake: the running kernel's initramfs carries zfake, spl and acpi_call; k3's image was
    # generated without spl, and before acpi_call's last rebuild (stale); k4 has no image at all
    h.initramfs(k1, ["e1000e"])
    h.initramfs(k2, ["e1000e", "zfake", "spl", "acpi_call"])
    h.initramfs(k3, ["e1000e", "zfake", "acpi_call"], compression="gzip")
    h.package("linux-image-6.1.0-100-amd64", "6.1.150-1", want="hold")
    h.package("broken-postinst", "1.0", state="half-configured")
    h.package("nvfake-dkms", "535.1-1", state="unpacked")
    h.grub(default="saved", saved_entry=f"gnulinux-advanced-3f1c2b8e-6a7d-4c1e-9b2a-5d8e7f6a1b2c>"
                                        f"gnulinux-{k3}-advanced-3f1c2b8e-6a7d-4c1e-9b2a-5d8e7f6a1b2c")
    h.reboot_required(f"linux-image-{k3}", f"linux-image-{k4}")
    h.path(f"usr/lib/modules/6.1.0-9-amd64/updates/dkms").mkdir(parents=True, exist_ok=True)
    h.write("usr/lib/modules/6.1.0-9-amd64/updates/dkms/acpi_call.ko", b"leftover")
    h.finish()
    # after depmod: the v4l2loopback file for k2 vanished, zfake for k3 is unknown to depmod
    h.path(f"usr/lib/modules/{k2}/updates/dkms/v4l2loopback.ko").unlink()
    dep = h.path(f"usr/lib/modules/{k3}/modules.dep")
    dep.write_text("".join(l + "\n" for l in dep.read_text().splitlines() if "zfake" not in l))
    h.finish(depmod=False)
    os.utime(h.path(f"usr/lib/modules/{k3}/updates/dkms/acpi_call.ko"), (FIXED_MTIME + 600, FIXED_MTIME + 600))
    return h


EXAMPLES = {"reboot-trap": reboot_trap, "healthy": healthy, "many-problems": many_problems}


def write_all(target: Path) -> None:
    for name, build in EXAMPLES.items():
        dest = target / name
        shutil.rmtree(dest, ignore_errors=True)
        build(dest)



# --- RPM family (tests/rhelbuilder.py: a real rpmdb made by rpm from rpmbuild's packages) -------

EL_OLD, EL_NEW = "5.14.0-427.13.1.el9_4.x86_64", "5.14.0-503.11.1.el9_5.x86_64"
FC_OLD, FC_NEW = "6.8.5-301.fc40.x86_64", "6.9.4-200.fc40.x86_64"
LATER = 1_700_000_000 + 3600          # installed after the boot (/proc/stat btime, /proc/1)
NVFAKE_API_LOG = """\
2023/11/14 23:13:20 akmods: Building RPM using the command '/usr/sbin/akmodsbuild --target x86_64 --kernels {k} /usr/src/akmods/nvfake-kmod.latest'
2023/11/14 23:13:41 akmodsbuild: /tmp/akmodsbuild.XXXXXX/BUILD/nvfake-kmod-550.1/_kmod_build_{k}/nvfake_main.c: In function 'nvfake_probe':
2023/11/14 23:13:41 akmodsbuild: /tmp/akmodsbuild.XXXXXX/BUILD/nvfake-kmod-550.1/_kmod_build_{k}/nvfake_main.c:212:9: error: implicit declaration of function 'pci_enable_pcie_error_reporting' [-Werror=implicit-function-declaration]
2023/11/14 23:13:41 akmodsbuild: cc1: some warnings being treated as errors
2023/11/14 23:13:41 akmodsbuild: error: Bad exit status from /var/tmp/rpm-tmp.Q8sT2b (%build)
2023/11/14 23:13:41 akmods: Building rpms failed; see /var/cache/akmods/nvfake/550.1-1-for-{k}.failed.log for details
"""


def rhel9_trap(root: Path):
    """RHEL 9.4 -> 9.5: dnf upgrade installed 503.11.1 and grubby made it the default; its
    kernel-devel is kept back by a versionlock, so DKMS built nothing for it, and the ELRepo-style
    kmod built for 427's kABI does not fit 503's (weak-modules left it out)."""
    from rhelbuilder import RhelHost
    h = RhelHost(root, os_id="rhel", version_id="9.4")
    h.kernel(EL_OLD, running=True)
    h.kernel(EL_NEW, headers=False, installed_at=LATER)
    h.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
    h.dkms_build("acpi-call", "1.2.2", EL_OLD, dest=["acpi_call"])
    h.rpm("dkms", "3.0.13", "1.el9", arch="noarch")
    h.kmod("nvfake", "550.1", "1.el9_4", built_for=EL_OLD)
    h.loaded(("acpi_call", "OE"), ("nvfake", "POE"), ("e1000e", ""))
    for k in (EL_OLD, EL_NEW):
        h.initramfs(k, ["e1000e"])
    h.grub(default=f"{MACHINE_ID}-{EL_NEW}")
    h.versionlock("kernel-devel-0:5.14.0-427.13.1.el9_4.*")
    h.finish()
    return h


def rhel9_healthy(root: Path):
    """RHEL 9.4 -> 9.4.z: the new kernel keeps the kABI (the kmod is linked into its weak-updates/),
    kernel-devel came with it and DKMS built for it."""
    from rhelbuilder import RhelHost
    new = "5.14.0-427.16.1.el9_4.x86_64"
    h = RhelHost(root, os_id="rhel", version_id="9.4")
    h.kernel(EL_OLD, running=True)
    h.kernel(new, kabi=EL_OLD)
    h.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
    for k in (EL_OLD, new):
        h.dkms_build("acpi-call", "1.2.2", k, dest=["acpi_call"])
    h.kmod("nvfake", "550.1", "1.el9_4", built_for=EL_OLD)
    h.loaded(("acpi_call", "OE"), ("nvfake", "POE"), ("e1000e", ""))
    for k in (EL_OLD, new):
        h.initramfs(k, ["e1000e"])
    h.grub(default=f"{MACHINE_ID}-{new}")
    h.finish()
    return h


def fedora_trap(root: Path):
    """Fedora 40: dnf upgrade brought 6.9; akmods' build of the akmod for it failed on a kernel API
    change, so after the reboot there is no driver."""
    from rhelbuilder import RhelHost
    h = RhelHost(root, os_id="fedora", version_id="40")
    h.kernel(FC_OLD, running=True)
    h.kernel(FC_NEW, installed_at=LATER)
    h.rpm("akmods", "0.5.8", "8.fc40", arch="noarch")
    h.akmod("nvfake", "550.1", "1.fc40", built=(FC_OLD,), failed={FC_NEW: NVFAKE_API_LOG.format(k=FC_NEW)})
    h.loaded(("nvfake", "POE"), ("e1000e", ""))
    for k in (FC_OLD, FC_NEW):
        h.initramfs(k, ["e1000e"])
    h.grub(default=f"{MACHINE_ID}-{FC_NEW}")
    h.finish()
    return h


def fedora_healthy(root: Path):
    from rhelbuilder import RhelHost
    h = RhelHost(root, os_id="fedora", version_id="40")
    h.kernel(FC_OLD, running=True)
    h.kernel(FC_NEW)
    h.rpm("akmods", "0.5.8", "8.fc40", arch="noarch")
    h.akmod("nvfake", "550.1", "1.fc40", built=(FC_OLD, FC_NEW))
    h.loaded(("nvfake", "POE"), ("e1000e", ""))
    for k in (FC_OLD, FC_NEW):
        h.initramfs(k, ["e1000e"])
    h.grub(default=f"{MACHINE_ID}-{FC_NEW}")
    h.finish()
    return h


MACHINE_ID = "4f1f5a5c0c5e4d0f9d3b2a1c8e7f6a5b"
EXAMPLES.update({"rhel9-trap": rhel9_trap, "rhel9-healthy": rhel9_healthy, "fedora-trap": fedora_trap,
                 "fedora-healthy": fedora_healthy})


# --- SUSE (tests/susebuilder.py: rpm's headers in an ndb Packages.db, zypper's locks) -----------

SL_OLD, SL_NEW = "6.4.0-150600.23.25-default", "6.4.0-150600.23.30-default"


def suse_trap(root: Path):
    """SLE 15 SP6: zypper patch installed kernel-default 23.30, but kernel-default-devel is locked
    (zypper addlock), so DKMS built nothing for the kernel GRUB boots next; and the nvfake KMP built
    for 23.25 does not fit 23.30's symbol versions (weak-modules2 left it out)."""
    from susebuilder import SuseHost
    h = SuseHost(root)
    h.kernel(SL_OLD, running=True)
    h.kernel(SL_NEW, headers=False)
    h.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
    h.dkms_build("acpi-call", "1.2.2", SL_OLD, dest=["acpi_call"])
    h.kmp("nvfake", "550.1", built_for=SL_OLD)
    h.loaded(("acpi_call", "OE"), ("nvfake", "POE"), ("e1000e", ""))
    for k in (SL_OLD, SL_NEW):
        h.initramfs(k, ["e1000e"])
    h.lock("kernel-default-devel")
    h.grub()
    h.reboot_needed()
    h.finish()
    return h


def suse_healthy(root: Path):
    """SLE 15 SP6 after a maintenance update that kept the kABI: the KMP is linked into 23.30's
    weak-updates/, kernel-default-devel came along and DKMS built for it."""
    from susebuilder import SuseHost
    h = SuseHost(root)
    h.kernel(SL_OLD, running=True)
    h.kernel(SL_NEW, kabi=SL_OLD)
    h.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
    for k in (SL_OLD, SL_NEW):
        h.dkms_build("acpi-call", "1.2.2", k, dest=["acpi_call"])
    h.kmp("nvfake", "550.1", built_for=SL_OLD)
    h.loaded(("acpi_call", "OE"), ("nvfake", "POE"), ("e1000e", ""))
    for k in (SL_OLD, SL_NEW):
        h.initramfs(k, ["e1000e"])
    h.grub()
    h.finish()
    return h


EXAMPLES.update({"suse-trap": suse_trap, "suse-healthy": suse_healthy})


if __name__ == "__main__":
    write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "examples/hosts"))
