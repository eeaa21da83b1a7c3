"""Build SLES/openSUSE-layout host trees for the example hosts: hostbuilder's kernels, modules and
DKMS trees where SUSE keeps them, packages built by rpmbuild and recorded by the real rpm, their
headers then stored in the ndb ``/usr/lib/sysimage/rpm/Packages.db`` (tests/ndbtools.py
ndb_bytes: offline, checked against rpm's own rpmpkg.c by tests/test_ndb.py), and
``/etc/zypp/locks`` in the form ``zypper addlock`` writes (tests/test_zypper.py compares the two).

    host = SuseHost(tmp_path)
    host.kernel(K1, running=True)                 # kernel-default + kernel-default-devel
    host.kernel(K2, headers=False)
    host.kmp("nvfake", "550.1", built_for=K1)     # updates/nvfake.ko, weak-updates/updates/ links
    host.lock("kernel-default-devel")
    host.grub()                                   # SUSE's grub.cfg, grubenv saved_entry
    host.finish()

Layout as SLE 15 SP6 ships it: /boot/vmlinuz-K, /boot/initrd-K (dracut), /boot/symvers-K.gz,
/boot/config-K; kernel-default-devel's /usr/src/linux-V-R-obj/x86_64/default with the
/lib/modules/K/build link; DKMS in updates/; depmod.d's "search updates extra weak-updates";
/etc/sysconfig/bootloader LOADER_TYPE=grub2.
"""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from hostbuilder import FIXED_MTIME, KABI, SYMBOLS, _Kernel, kernel_crc, module_elf
from ndbtools import ndb_bytes
from rhelbuilder import RhelHost
from rpmtools import install, rpmbuild

ROOT_UUID = "3f1c2b8e-6a7d-4c1e-9b2a-5d8e7f6a1b2c"
OS_NAME = "SLES 15-SP6"


@dataclass
class SuseHost(RhelHost):
    os_id: str = "sles"
    version_id: str = "15.6"
    dkms_dest: str = "updates"

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        for d in ("usr/lib", "usr/bin", "usr/sbin", "boot/grub2", "etc/zypp", "etc/sysconfig", "proc/sys/kernel",
                  "sys", "run", "var/lib/dkms", "usr/src"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        for link in ("lib", "bin", "sbin"):
            if not (self.root / link).is_symlink():
                (self.root / link).symlink_to(f"usr/{link}")
        self.write("etc/os-release", 'NAME="SLES"\nVERSION="15-SP6"\nVERSION_ID="15.6"\n'
                   'PRETTY_NAME="SUSE Linux Enterprise Server 15 SP6"\nID="sles"\nID_LIKE="suse"\n'
                   'CPE_NAME="cpe:/o:suse:sles:15:sp6"\n')
        self.write("etc/sysconfig/bootloader", 'LOADER_TYPE="grub2"\nSECURE_BOOT="no"\n')
        self.write("etc/depmod.d/00-system.conf", "search updates extra weak-updates kgraft built-in\n")
        self.write("usr/sbin/dkms", '#!/bin/bash\n# fixture stand-in\necho $"dkms-3.0.12"\n', mode=0o755)
        self.write("usr/lib/module-init-tools/weak-modules2", "#!/bin/bash\n# suse-module-tools' weak-modules2\n",
                   mode=0o755)
        self.write("proc/stat", f"cpu  1 0 1 1 0 0 0 0 0 0\nbtime {FIXED_MTIME + 600}\n")
        self.depmod_rank = {"updates": 0, "extra": 1, "weak-updates": 2, "kernel": 3}
        self.rpm("dkms", "3.0.12", "150600.1.2", arch="noarch")
        self.rpm("suse-module-tools", "15.6.10", "150600.3.6.1")
        self.rpm("grub2", "2.12", "150600.8.6.1")
        self.rpm("dracut", "059+suse.500.g3e7d8ff5", "150600.3.9.1")

    # --- kernels -------------------------------------------------------------------------
    def kernel(self, release: str, *, running: bool = False, headers: bool = True, kabi: str | None = None,
               in_tree: list[str] | None = None, **_) -> "SuseHost":
        """kernel-default's files (image, symvers, config in /boot, modules under /usr/lib/modules)
        and its package; ``headers``: kernel-default-devel; ``kabi``: that kernel's CRCs."""
        # KABI is process-wide: a release declared without kabi= must not keep the CRCs an
        # earlier host gave it (suse-healthy keeps 23.25's for 23.30; suse-trap must not)
        if kabi:
            KABI[release] = kabi
        else:
            KABI.pop(release, None)
        cfg = {"CONFIG_MODULES": "y", "CONFIG_MODULE_SIG": "y", "CONFIG_CRYPTO": "y", "CONFIG_MODVERSIONS": "y",
               "CONFIG_MODULE_SIG_FORCE": "n", "CONFIG_LOCK_DOWN_KERNEL_FORCE_NONE": "y"}
        self.kernels[release] = _Kernel(release, False, True, True, cfg, in_tree if in_tree is not None else ["e1000e"])
        for name in self.kernels[release].in_tree:
            self.write(f"usr/lib/modules/{release}/kernel/drivers/net/{name}.ko",
                       module_elf(name, release, intree=True, key="kernel-build"))
        if running:
            self.set_running(release)
        symvers = gzip.compress("".join(f"0x{kernel_crc(release, s):08x}\t{s}\tvmlinux\tEXPORT_SYMBOL\t\n"
                                        for s in SYMBOLS).encode(), mtime=0)
        self.write(f"boot/vmlinuz-{release}", b"MZ kernel " + release.encode())
        self.write(f"boot/symvers-{release}.gz", symvers)
        self.write(f"boot/config-{release}", "".join(f"{k}={v}\n" for k, v in sorted(cfg.items())))
        self.write(f"boot/System.map-{release}", "ffffffff81000000 T _stext\n")
        version, rel, flavour = self._split(release)
        in_tree = {f"/usr/lib/modules/{release}/kernel/drivers/net/{name}.ko": self.path(
            f"usr/lib/modules/{release}/kernel/drivers/net/{name}.ko").read_bytes() for name in self.kernels[release].in_tree}
        self.rpm(f"kernel-{flavour}", version, f"{rel}.1", provides=("multiversion(kernel)",),
                 files={f"/boot/vmlinuz-{release}": b"MZ kernel " + release.encode(), **in_tree})
        if headers:
            self.headers(release)
        return self

    @staticmethod
    def _split(release: str) -> tuple[str, str, str]:
        """6.4.0-150600.23.25-default -> ('6.4.0', '150600.23.25', 'default')."""
        version, rest = release.split("-", 1)
        rel, flavour = rest.rsplit("-", 1)
        return version, rel, flavour

    def headers(self, release: str, **_) -> None:
        version, rel, flavour = self._split(release)
        obj = f"usr/src/linux-{version}-{rel}-obj/x86_64/{flavour}"
        self.write(f"{obj}/Makefile", "# kernel-default-devel Makefile\n")
        self.write(f"{obj}/include/generated/autoconf.h", "#define CONFIG_MODULES 1\n")
        self.write(f"{obj}/Module.symvers", "".join(
            f"0x{kernel_crc(release, s):08x}\t{s}\tvmlinux\tEXPORT_SYMBOL\t\n" for s in SYMBOLS))
        self.symlink(f"usr/lib/modules/{release}/build", f"/{obj}")
        self.rpm(f"kernel-{flavour}-devel", version, f"{rel}.1", arch="noarch", provides=("multiversion(kernel)",))
        if release in self.kernels:
            self.kernels[release].headers = True

    # --- out-of-tree modules ---------------------------------------------------------------
    def kmp(self, name: str, version: str, *, built_for: str, weak_links: bool = True) -> "SuseHost":
        """NAME-kmp-FLAVOUR: its module in built_for's updates/, linked as weak-updates/updates/NAME.ko
        into every other kernel of the flavour whose symbol versions match (weak-modules2)."""
        data = module_elf(name, built_for, key="dkms-mok")
        rel = f"lib/modules/{built_for}/updates/{name}.ko"
        self.write(f"usr/{rel}", data)
        if weak_links:
            for k in self.kernels:
                if k != built_for and KABI.get(k, k) == KABI.get(built_for, built_for):
                    self.symlink(f"usr/lib/modules/{k}/weak-updates/updates/{name}.ko", f"/usr/{rel}")
        kversion, krel, flavour = self._split(built_for)
        self.rpm(f"{name}-kmp-{flavour}", f"{version}_k{kversion}_{krel}", "150600.3.1",
                 provides=(f"{name}-kmp = {version}", "multiversion(kernel)"), files={f"/{rel}": data})
        return self

    def lock(self, name: str) -> "SuseHost":
        """A record as `zypper addlock NAME` writes it (libzypp's PoolQuery serialize)."""
        path = self.path("etc/zypp/locks")
        old = path.read_text() if path.exists() else ""
        self.write("etc/zypp/locks", old + f"\ntype: package\nmatch_type: glob\ncase_sensitive: on\n"
                   f"solvable_name: {name}\n\n")
        return self

    def reboot_needed(self) -> "SuseHost":
        self.write("run/reboot-needed", "")
        return self

    def initramfs(self, release: str, modules: list[str] = (), **kw) -> "SuseHost":
        super().initramfs(release, modules, **kw)
        os.replace(self.path(f"boot/initramfs-{release}.img"), self.path(f"boot/initrd-{release}"))
        return self

    def grub(self, *, default: str | None = None, **_) -> "SuseHost":
        """grub.cfg as SUSE's 10_linux lays it out (the newest kernel on top, every kernel in the
        Advanced submenu), grubenv's saved_entry (update-bootloader / grub2-set-default)."""
        order = sorted(self.kernels, key=self._split, reverse=True)

        def entry(k: str, title: str, ident: str, indent: str = "") -> list[str]:
            return [f"{indent}menuentry '{title}' --class sles --class gnu-linux --class gnu --class os "
                    f"$menuentry_id_option '{ident}' {{",
                    f"{indent}\tlinux\t/boot/vmlinuz-{k} root=UUID={ROOT_UUID} splash=silent quiet",
                    f"{indent}\tinitrd\t/boot/initrd-{k}", f"{indent}}}"]
        lines = ["if [ -s $prefix/grubenv ]; then", "  load_env", "fi", 'if [ "${next_entry}" ] ; then',
                 '   set default="${next_entry}"', "   set next_entry=", "   save_env next_entry", "else",
                 '   set default="${saved_entry}"', "fi"]
        lines += entry(order[0], OS_NAME, f"gnulinux-simple-{ROOT_UUID}")
        lines += [f"submenu 'Advanced options for {OS_NAME}' $menuentry_id_option 'gnulinux-advanced-{ROOT_UUID}' {{"]
        for k in order:
            lines += entry(k, f"{OS_NAME}, with Linux {k}", f"gnulinux-{k}-advanced-{ROOT_UUID}", "\t")
        lines += ["}", ""]
        self.write("boot/grub2/grub.cfg", "\n".join(lines))
        saved = default or OS_NAME
        env = f"# GRUB Environment Block\nsaved_entry={saved}\n"
        self.write("boot/grub2/grubenv", env + "#" * (1024 - len(env.encode())))
        self.write("etc/default/grub", "GRUB_DEFAULT=saved\nGRUB_TIMEOUT=8\n")
        return self

    # --- finishing -----------------------------------------------------------------------
    def finish(self, *, depmod: bool = True, mtime: int = FIXED_MTIME) -> Path:
        if depmod:
            self.depmod_all()
        db = self.path("var/lib/rpm")
        shutil.rmtree(db, ignore_errors=True)
        db.mkdir(parents=True)
        for when in sorted({at for _, at in self.specs}):
            install(self.root, *(rpmbuild(s) for s, at in self.specs if at == when), justdb=True, faketime=when)
        import sqlite3
        con = sqlite3.connect(f"file:{db / 'rpmdb.sqlite'}?mode=ro", uri=True)
        blobs = {h: bytes(b) for h, b in con.execute("SELECT hnum, blob FROM Packages")}
        con.close()
        shutil.rmtree(self.path("var/lib/rpm"))
        self.write("usr/lib/sysimage/rpm/Packages.db", ndb_bytes(blobs))
        for path in [self.root, *self.root.rglob("*")]:
            os.utime(path, (mtime, mtime), follow_symlinks=False)
        self._finished = True
        return self.root


