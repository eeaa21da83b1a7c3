"""SUSE-layout trees beside the RHEL ones (tests/rhelhost/build.py builds both from the same work
tree): the same real Debian kernels and their modules, laid out as SLE 15 lays a system out.

What is real: the kernels, module trees and symvers; kabidemo compiled by kbuild against kernel
56 and installed as a KMP installs it (``updates/`` of the kernel it was built for); the
``weak-updates/updates/`` links decided by depmod -aeE against each kernel's symvers, as
suse-module-tools' weak-modules2 decides them (``--add-kernel``: same flavour, no unresolved
symbol, no CRC disagreement); initrd-K made by dracut; grubenv by grub-editenv; packages built by
rpmbuild and recorded by rpm (sqlite), whose headers rpm's own ndb code (lib/backend/ndb/rpmpkg.c,
tests/ndbtools.py) then stores in /usr/lib/sysimage/rpm/Packages.db, the sqlite files removed;
/etc/zypp/locks written by `zypper --root T addlock`.  What the real tools said about the tree
before the conversion (`rpm -qa`, `zypper -v locks --solvables`) is kept in ref/.
Hand-written: os-release, /etc/sysconfig/bootloader, grub.cfg (SUSE's grub2-mkconfig is not in
Debian; shaped like its 10_linux), /proc/sys/kernel/osrelease, /run/reboot-needed.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ndbtools
from rpmtools import QUERY_FORMAT, Spec, install, rpmbuild

ROOT_UUID = "3f1c2b8e-6a7d-4c1e-9b2a-5d8e7f6a1b2c"
DEPMOD_CONF = "search updates extra weak-updates kgraft built-in\nmake_map_files no\n"  # 00-system.conf
OS_NAME = "SLES 15-SP6"
BOOT_TIME = 1_700_000_000


@dataclass
class SuseScenario:
    name: str
    kernels: list[str]
    running: str
    next_boot: str
    proves: str
    kmp_for: str                                  # the kernel kabidemo's KMP was built against
    weak_links: bool = True
    locks: list[list[str]] = field(default_factory=list)    # zypper addlock arguments
    reboot_needed: bool = False
    layout: str = "suse"


def suse_scenarios(new: str, old: str, twin: str) -> list[SuseScenario]:
    return [
        SuseScenario("suse_kmp_fits", [twin, new], twin, new,
                     "SLE 15: kabidemo-kmp built for 56 in 56's updates/, linked by weak-modules2 into NEW's "
                     "weak-updates/updates/ (depmod: the CRCs fit); ndb rpmdb; kernel-amd64-devel locked; a "
                     "reboot pending. Ready.", kmp_for=twin, locks=[["kernel-amd64-devel"], ["*-kmp-amd64"]],
                     reboot_needed=True),
        SuseScenario("suse_kmp_unlinked", [twin, new], twin, new,
                     "SLE 15: NEW installed without weak-modules2 --add-kernel: the KMP fits NEW but NEW has no "
                     "link. weak_update_missing.", kmp_for=twin, weak_links=False),
        SuseScenario("suse_kmp_break", [old, twin], twin, old,
                     "SLE 15: the saved entry boots a kernel whose symbol versions differ from 56's: depmod "
                     "refuses the weak link. kabi_mismatch.", kmp_for=twin, locks=[["kernel-amd64 < 6.1.0-56"]]),
    ]


def suse_tree(b, work: Path, s: SuseScenario) -> Path:
    from rhelhost.build import dracut, kernel_files, replace, symlink, weak_modules_add_kernel
    t = b.out / "scenarios" / s.name / "tree"
    ref = b.out / "scenarios" / s.name / "ref"
    ref.mkdir(parents=True, exist_ok=True)
    b.step(f"{s.name}: {s.proves}")
    for d in ("usr/bin", "usr/sbin", "usr/lib", "etc/depmod.d", "etc/sysconfig", "etc/zypp", "boot/grub2",
              "proc/sys/kernel", "var/lib", "usr/src/kernels", "run", "usr/lib/module-init-tools"):
        (t / d).mkdir(parents=True, exist_ok=True)
    for link in ("lib", "bin", "sbin"):
        symlink(t / link, f"usr/{link}")
    replace(t / "etc/os-release", 'NAME="SLES"\nVERSION="15-SP6"\nVERSION_ID="15.6"\nPRETTY_NAME="SUSE Linux '
            'Enterprise Server 15 SP6"\nID="sles"\nID_LIKE="suse"\nANSI_COLOR="0;32"\nCPE_NAME="cpe:/o:suse:sles:15:sp6"\n')
    replace(t / "etc/sysconfig/bootloader", 'LOADER_TYPE="grub2"\nSECURE_BOOT="no"\nTRUSTED_BOOT="no"\n')
    replace(t / "etc/depmod.d/00-system.conf", DEPMOD_CONF)
    replace(t / "proc/sys/kernel/osrelease", s.running + "\n")
    if s.reboot_needed:
        replace(t / "run/reboot-needed", "")
    for k in s.kernels:
        kernel_files(b, work, t, k)
        (t / f"usr/lib/modules/{k}/vmlinuz").unlink()               # SLE 15 keeps the image in /boot
        (t / f"usr/src/kernels/{k}").unlink()                       # kernel-devel: /usr/src/linux-K-obj
        symlink(t / f"usr/lib/modules/{k}/build", f"/usr/src/linux-headers-{k}")
    kmp = t / f"usr/lib/modules/{s.kmp_for}/updates/kabidemo.ko"
    kmp.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(work / f"build/kabidemo-{s.kmp_for}/kabidemo.ko", kmp)
    replace(t / "usr/lib/module-init-tools/weak-modules2",
            "#!/bin/bash\n# suse-module-tools' weak-modules2; the builder did its work\n")
    for k in s.kernels:
        b.run(["depmod", "-b", t, "-C", t / "etc/depmod.d", k])
    if s.weak_links:
        for k in s.kernels:
            if k != s.kmp_for:
                weak_modules_add_kernel(b, t, k, s.kmp_for, source="updates")
    for k in s.kernels:
        dracut(b, t, k, [])
        os.replace(t / f"boot/initramfs-{k}.img", t / f"boot/initrd-{k}")
    grub(b, t, s)
    packages(b, t, s, ref)
    (b.out / "scenarios" / s.name / "scenario.json").write_text(json.dumps(asdict(s), indent=1) + "\n")
    return t


def grub(b, t: Path, s: SuseScenario) -> None:
    """grub.cfg shaped like SUSE's 10_linux output (the newest kernel on top, the others in the
    Advanced submenu), grubenv's saved_entry as update-bootloader sets it (grub-editenv)."""
    from rhelhost.build import replace
    order = sorted(s.kernels, key=lambda k: int(k.split("-")[1]), reverse=True)

    def entry(k: str, title: str, ident: str, indent: str = "") -> list[str]:
        return [f"{indent}menuentry '{title}' --class sles --class gnu-linux --class gnu --class os "
                f"$menuentry_id_option '{ident}' {{", f"{indent}\tload_video", f"{indent}\tinsmod gzio",
                f"{indent}\techo\t'Loading Linux {k} ...'",
                f"{indent}\tlinux\t/boot/vmlinuz-{k} root=UUID={ROOT_UUID} splash=silent mitigations=auto quiet",
                f"{indent}\techo\t'Loading initial ramdisk ...'", f"{indent}\tinitrd\t/boot/initrd-{k}", f"{indent}}}"]
    lines = ["### BEGIN /etc/grub.d/00_header ###", "if [ -s $prefix/grubenv ]; then", "  load_env", "fi",
             'if [ "${next_entry}" ] ; then', '   set default="${next_entry}"', "   set next_entry=",
             "   save_env next_entry", "   set boot_once=true", "else", '   set default="${saved_entry}"', "fi",
             "### END /etc/grub.d/00_header ###", "### BEGIN /etc/grub.d/10_linux ###"]
    lines += entry(order[0], OS_NAME, f"gnulinux-simple-{ROOT_UUID}")
    lines += [f"submenu 'Advanced options for {OS_NAME}' --hotkey=1 $menuentry_id_option "
              f"'gnulinux-advanced-{ROOT_UUID}' {{"]
    for k in order:
        lines += entry(k, f"{OS_NAME}, with Linux {k}", f"gnulinux-{k}-advanced-{ROOT_UUID}", "\t")
    lines += ["}", "### END /etc/grub.d/10_linux ###", ""]
    replace(t / "boot/grub2/grub.cfg", "\n".join(lines))
    replace(t / "etc/default/grub", "GRUB_DEFAULT=saved\nGRUB_TIMEOUT=8\nGRUB_DISTRIBUTOR=\n")
    env = t / "boot/grub2/grubenv"
    env.unlink(missing_ok=True)
    b.run(["grub-editenv", env, "create"])
    saved = OS_NAME if s.next_boot == order[0] else f"Advanced options for {OS_NAME}>{OS_NAME}, with Linux {s.next_boot}"
    b.run(["grub-editenv", env, "set", f"saved_entry={saved}"])


def packages(b, t: Path, s: SuseScenario, ref: Path) -> None:
    """rpm records the tree's packages (sqlite), zypper writes the locks and says what they keep,
    then rpm's ndb code stores the same headers in Packages.db and the sqlite files go."""
    specs = [Spec("glibc", "2.38", "150600.12.1"), Spec("systemd", "254.10", "150600.4.5.1"),
             Spec("dracut", "059+suse.500.g3e7d8ff5", "150600.3.9.1"),
             Spec("suse-module-tools", "15.6.10", "150600.3.6.1",
                  files={"/usr/lib/module-init-tools/weak-modules2": "#!/bin/bash\n"}),
             Spec("zypper", "1.14.73", "150600.10.6.1"), Spec("grub2", "2.12", "150600.8.6.1")]
    for k in s.kernels:
        v, nn, flavour = k.split("-")
        release = f"{nn}.1"
        specs.append(Spec(f"kernel-{flavour}", v, release, provides=("multiversion(kernel)",)))
        specs.append(Spec(f"kernel-{flavour}-devel", v, release, arch="noarch", provides=("multiversion(kernel)",)))
    ko = t / f"usr/lib/modules/{s.kmp_for}/updates/kabidemo.ko"
    v, nn, flavour = s.kmp_for.split("-")
    specs.append(Spec(f"kabidemo-kmp-{flavour}", f"1.0_k{v}_{nn}", "150600.1.1",
                      provides=("kabidemo-kmp = 1.0", "multiversion(kernel)"),
                      files={f"/lib/modules/{s.kmp_for}/updates/kabidemo.ko": ko.read_bytes()}))
    (t / "var/lib/rpm").mkdir(parents=True, exist_ok=True)
    install(t, *(rpmbuild(spec) for spec in specs), justdb=True, faketime=BOOT_TIME - 86400)
    qa = b.run(["rpm", "--root", t, "--dbpath", "/var/lib/rpm", "-qa", "--qf", QUERY_FORMAT])
    (ref / "rpm-qa.txt").write_text(qa.stdout)
    zypper = ["zypper", "--non-interactive", "--root", t]
    for args in s.locks:
        b.run([*zypper, "addlock", *args])
    (ref / "zypper-locks.txt").write_text(b.run([*zypper, "-v", "locks", "--solvables"]).stdout)
    shutil.rmtree(t / "var/cache/zypp", ignore_errors=True)
    shutil.rmtree(t / "var/log", ignore_errors=True)
    (t / "run/zypp.pid").unlink(missing_ok=True)
    blobs = ndbtools.sqlite_blobs(t / "var/lib/rpm/rpmdb.sqlite")
    shutil.rmtree(t / "var/lib/rpm")
    ndbtools.write_ndb(t / "usr/lib/sysimage/rpm/Packages.db", blobs)
    b.run([ndbtools.ndbtool(), t / "usr/lib/sysimage/rpm/Packages.db", "verify"])
