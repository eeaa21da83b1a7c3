"""Build RHEL- and Fedora-layout host trees: hostbuilder's kernels, modules and DKMS trees in the
places RHEL keeps them, and a real rpmdb made by the real rpm from packages built by rpmbuild.

    host = RhelHost(tmp_path, os_id="rhel", version_id="9.4")
    host.kernel(K1, running=True)                       # kernel-core + kernel-devel rpms, BLS entry
    host.kernel(K2, devel=False, installed_at=LATER)    # installed after boot: reboot required
    host.kmod("nvfake", "550.1", "1.el9", built_for=K1) # kABI kmod in K1's extra/, weak-updates links
    host.versionlock("kernel-core-0:5.14.0-427.13.1.el9_4.*")
    host.finish()

Layout as RHEL 9 ships it: /lib/modules/K/vmlinuz (kernel-core) copied to /boot/vmlinuz-K,
/boot/initramfs-K.img (dracut), /boot/symvers-K.gz, /usr/src/kernels/K (kernel-devel) with the
/lib/modules/K/build link, BLS entries /boot/loader/entries/<machine-id>-K.conf shaped like
grub2's 20-grub.install writes them, grubenv's saved_entry, DKMS in extra/, depmod.d's
"search updates extra built-in weak-updates".
"""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from hostbuilder import FIXED_MTIME, KABI, SYMBOLS, Host, _Kernel, kernel_crc, module_elf
from rpmtools import FIXED_TIME, Spec, install, rpmbuild

MACHINE_ID = "4f1f5a5c0c5e4d0f9d3b2a1c8e7f6a5b"
ROOT_UUID = "3f1c2b8e-6a7d-4c1e-9b2a-5d8e7f6a1b2c"
DISTROS = {
    "rhel": ('Red Hat Enterprise Linux', "rhel fedora", "Plow"),
    "fedora": ("Fedora Linux", "", ""),
    "rocky": ("Rocky Linux", "rhel centos fedora", "Blue Onyx"),
}


@dataclass
class RhelHost(Host):
    os_id: str = "rhel"
    version_id: str = "9.4"
    specs: list[tuple[Spec, int]] = field(default_factory=list)     # (package, install time)
    dkms_dest: str = "extra"
    depmod_rank: dict = field(default_factory=lambda: {"updates": 0, "extra": 1, "kernel": 2, "weak-updates": 3})

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        for d in ("usr/lib", "usr/bin", "usr/sbin", "boot/loader/entries", "boot/grub2", "etc", "proc/sys/kernel",
                  "sys", "run", "var/lib/dkms", "usr/src/kernels", "etc/dnf/plugins"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        for link in ("lib", "bin", "sbin"):
            if not (self.root / link).is_symlink():
                (self.root / link).symlink_to(f"usr/{link}")
        name, like, codename = DISTROS[self.os_id]
        major = self.version_id.split(".")[0]
        pretty = f"{name} {self.version_id} ({codename})" if codename else f"{name} {self.version_id}"
        self.write("etc/os-release", f'NAME="{name}"\nVERSION="{self.version_id}"\nID="{self.os_id}"\n'
                   + (f'ID_LIKE="{like}"\n' if like else "") + f'VERSION_ID="{self.version_id}"\n'
                   f'PRETTY_NAME="{pretty}"\nPLATFORM_ID="platform:{"f" if self.os_id == "fedora" else "el"}{major}"\n')
        self.write("etc/machine-id", MACHINE_ID + "\n")
        self.write("etc/depmod.d/dist.conf", "search updates extra built-in weak-updates\n")
        self.write("etc/dnf/dnf.conf", "[main]\ngpgcheck=1\ninstallonly_limit=3\nclean_requirements_on_remove=True\n"
                   "best=True\nskip_if_unavailable=False\n")
        self.write("usr/sbin/dkms", '#!/bin/bash\n# fixture stand-in\necho $"dkms-3.0.13"\n', mode=0o755)
        # booted 10 minutes after the packages of FIXED_TIME were installed; installed_at= later is after boot
        self.write("proc/stat", f"cpu  1 0 1 1 0 0 0 0 0 0\nbtime {FIXED_MTIME + 600}\n")
        (self.root / "proc/1").mkdir(parents=True, exist_ok=True)
        self.rpm("dkms", "3.0.13", "1.el9", arch="noarch")
        self.rpm("grub2-tools", "2.06", "77.el9")

    # --- packages ------------------------------------------------------------------------
    def rpm(self, name: str, version: str, release: str, *, at: int = FIXED_TIME, **kw) -> "RhelHost":
        """A package in the rpmdb (built by rpmbuild, recorded with `rpm -i --justdb` at time ``at``)."""
        self.specs.append((Spec(name, version, release, **kw), at))
        return self

    def package(self, name: str, version: str, **kw) -> "RhelHost":   # hostbuilder's dpkg call, mapped
        v, _, r = version.partition("-")
        return self.rpm(name, v, r or "1")

    # --- kernels -------------------------------------------------------------------------
    def kernel(self, release: str, *, running: bool = False, headers: bool = True, image: bool = True,
               modules_dep: bool = True, config: dict[str, str] | None = None, in_tree: list[str] | None = None,
               kabi: str | None = None, installed_at: int = FIXED_TIME, variant: str = "") -> "RhelHost":
        """kernel-core's files (vmlinuz in the module dir, its /boot copy, symvers, config) and
        its package; ``headers``: kernel-devel; ``kabi``: keep that kernel's symbol versions."""
        # KABI is process-wide: a release declared without kabi= must not keep the CRCs an
        # earlier host gave it (suse-healthy keeps 23.25's for 23.30; suse-trap must not)
        if kabi:
            KABI[release] = kabi
        else:
            KABI.pop(release, None)
        cfg = {"CONFIG_MODULES": "y", "CONFIG_MODULE_SIG": "y", "CONFIG_CRYPTO": "y", "CONFIG_ACPI": "y", "CONFIG_MODVERSIONS": "y",
               "CONFIG_MODULE_SIG_HASH": "sha256", "CONFIG_MODULE_SIG_FORCE": "n", "CONFIG_SECURITY_LOCKDOWN_LSM": "y",
               "CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT": "y", "CONFIG_LOCK_DOWN_KERNEL_FORCE_NONE": "y"}
        cfg.update(config or {})
        self.kernels[release] = _Kernel(release, False, image, modules_dep, cfg,
                                        in_tree if in_tree is not None else ["e1000e"])
        for name in self.kernels[release].in_tree:
            self.write(f"usr/lib/modules/{release}/kernel/drivers/misc/{name}.ko",
                       module_elf(name, release, intree=True, key="kernel-build"))
        if running:
            self.set_running(release)
        base = f"usr/lib/modules/{release}"
        symvers = gzip.compress("".join(f"0x{kernel_crc(release, s):08x}\t{s}\tvmlinux\tEXPORT_SYMBOL\t\n"
                                        for s in SYMBOLS).encode(), mtime=0)
        files: dict[str, bytes | str] = {f"/lib/modules/{release}/vmlinuz": b"MZ kernel " + release.encode(),
                                         f"/lib/modules/{release}/symvers.gz": symvers,
                                         f"/lib/modules/{release}/config": _config(self.kernels[release].config)}
        for rel, content in files.items():
            self.write(rel.replace("/lib/", "usr/lib/", 1).lstrip("/"), content)
        if image:
            self.write(f"boot/vmlinuz-{release}", b"MZ kernel " + release.encode())
            self.write(f"boot/symvers-{release}.gz", symvers)
            self.write(f"boot/config-{release}", _config(self.kernels[release].config))
            self.write(f"boot/System.map-{release}", "ffffffff81000000 T _stext\n")
            self.bls(release)
        self.symlink(f"{base}/build", f"/usr/src/kernels/{release}")
        v, r = release.rsplit(".", 1)[0].split("-", 1)
        core = f"kernel{variant}-core"
        self.rpm(core, v, r, provides=(f"kernel{variant} = {v}-{r}", f"kernel-uname-r = {release}",
                                       "installonlypkg(kernel)"), files=files, at=installed_at)
        self.rpm(f"kernel{variant}-modules", v, r, provides=("installonlypkg(kernel-module)",), at=installed_at)
        if headers:
            self.headers(release, at=installed_at, variant=variant)
        return self

    def headers(self, release: str, *, at: int = FIXED_TIME, variant: str = "") -> None:
        src = f"usr/src/kernels/{release}"
        self.write(f"{src}/Makefile", "# kernel-devel Makefile\n")
        self.write(f"{src}/include/generated/autoconf.h", "#define CONFIG_MODULES 1\n")
        self.write(f"{src}/Module.symvers", "".join(
            f"0x{kernel_crc(release, sym):08x}\t{sym}\tvmlinux\tEXPORT_SYMBOL\t\n" for sym in SYMBOLS))
        v, r = release.rsplit(".", 1)[0].split("-", 1)
        self.rpm(f"kernel{variant}-devel", v, r, provides=(f"kernel-devel-uname-r = {release}",), at=at,
                 files={f"/usr/src/kernels/{release}/Makefile": "# kernel-devel Makefile\n"})
        if release in self.kernels:
            self.kernels[release].headers = True

    def bls(self, release: str) -> None:
        """The entry grub2's 20-grub.install writes for kernel-install add."""
        name, _, codename = DISTROS[self.os_id]
        title = f"{name} ({release}) {self.version_id}" + (f" ({codename})" if codename else "")
        self.write(f"boot/loader/entries/{MACHINE_ID}-{release}.conf",
                   f"title {title}\nversion {release}\nlinux /vmlinuz-{release}\n"
                   f"initrd /initramfs-{release}.img $tuned_initrd\n"
                   f"options root=UUID={ROOT_UUID} ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M $tuned_params\n"
                   "grub_users $grub_users\ngrub_arg --unrestricted\ngrub_class rhel\n")

    def grub(self, *, default: str | None = None, blscfg: bool = True, next_entry: str | None = None,
             **_) -> "RhelHost":
        """/boot/grub2/grub.cfg as grub2-mkconfig writes it with BLS (10_linux's blscfg), grubenv
        with saved_entry (what grubby --set-default writes), /etc/default/grub."""
        default = default or f"{MACHINE_ID}-{max(self.kernels)}"
        self.write("boot/grub2/grub.cfg", "\n".join([
            "#", "# DO NOT EDIT THIS FILE", "#", "### BEGIN /etc/grub.d/00_header ###", "set pager=1", "",
            "if [ -f ${config_directory}/grubenv ]; then", "  load_env -f ${config_directory}/grubenv",
            "elif [ -s $prefix/grubenv ]; then", "  load_env", "fi", 'if [ "${next_entry}" ] ; then',
            '   set default="${next_entry}"', "   set next_entry=", "   save_env next_entry", "   set boot_once=true",
            "else", '   set default="${saved_entry}"', "fi", "### END /etc/grub.d/00_header ###", "",
            "### BEGIN /etc/grub.d/10_linux ###", "insmod part_gpt", "insmod xfs",
            "blscfg" if blscfg else "# GRUB_ENABLE_BLSCFG=false", "### END /etc/grub.d/10_linux ###", ""]))
        env = "# GRUB Environment Block\n# WARNING: Do not edit this file by tools other than grub-editenv!!!\n"
        env += f"saved_entry={default}\nmenu_auto_hide=1\nboot_success=0\n"
        if next_entry:
            env += f"next_entry={next_entry}\n"
        self.write("boot/grub2/grubenv", env + "#" * (1024 - len(env.encode())))
        self.write("etc/default/grub", 'GRUB_TIMEOUT=5\nGRUB_DEFAULT=saved\nGRUB_DISABLE_SUBMENU=true\n'
                   f'GRUB_ENABLE_BLSCFG={"true" if blscfg else "false"}\n')
        return self

    def initramfs(self, release: str, modules: list[str] = (), *, compression: str = "zstd",
                  early_cpio: bool = False) -> "RhelHost":
        super().initramfs(release, modules, compression=compression, early_cpio=early_cpio)
        os.replace(self.path(f"boot/initrd.img-{release}"), self.path(f"boot/initramfs-{release}.img"))
        return self

    def reboot_required(self, *packages: str) -> "RhelHost":
        raise NotImplementedError("on RHEL, reboot-required is decided from install times (installed_at=)")

    # --- out-of-tree modules ---------------------------------------------------------------
    def kmod(self, name: str, version: str, release: str, *, built_for: str, modules: list[str] | None = None,
             weak_links: bool = True) -> "RhelHost":
        """A kABI-tracking kmod package (ELRepo's kmod-NAME): its modules in built_for's extra/NAME/,
        linked into every other kernel whose symbol versions match (what weak-modules does)."""
        files = {}
        for mod in modules or [name]:
            data = module_elf(mod, built_for, key="dkms-mok")
            rel = f"lib/modules/{built_for}/extra/{name}/{mod}.ko"
            self.write(f"usr/{rel}", data)
            files[f"/{rel}"] = data
            if weak_links:
                for k in self.kernels:
                    if k != built_for and KABI.get(k, k) == KABI.get(built_for, built_for):
                        self.symlink(f"usr/lib/modules/{k}/weak-updates/{name}/{mod}.ko", f"/{rel}")
        self.rpm(f"kmod-{name}", version, release, provides=(f"kmod({name}.ko) = {version}",), files=files)
        self.write("usr/sbin/weak-modules", "#!/bin/bash\n# fixture stand-in for kmod's weak-modules\n", mode=0o755)
        return self

    def akmod(self, name: str, version: str, release: str, *, built: tuple[str, ...] = (),
              failed: dict[str, str] | None = None) -> "RhelHost":
        """akmod-NAME: its source rpm as /usr/src/akmods/NAME-kmod.latest; kmod-NAME-K packages for
        the kernels in ``built``; akmods' logs for them and for the ``failed`` ones (kernel -> log)."""
        srpm = rpmbuild(Spec(f"{name}-kmod", version, release, arch="noarch"), source=True)
        target = f"{name}-kmod-{version}-{release}.src.rpm"
        self.write(f"usr/src/akmods/{target}", srpm.read_bytes())
        self.symlink(f"usr/src/akmods/{name}-kmod.latest", target)
        self.rpm(f"akmod-{name}", version, release, files={f"/usr/src/akmods/{target}": srpm.read_bytes()})
        verrel = f"{version}-{release.split('.fc')[0]}"
        for k in built:
            rel = f"lib/modules/{k}/extra/{name}/{name}.ko"
            data = module_elf(name, k, key="dkms-mok")
            self.write(f"usr/{rel}", data)
            self.rpm(f"kmod-{name}-{k}", version, release, files={f"/{rel}": data})
            self.write(f"var/cache/akmods/{name}/{verrel}-for-{k}.log",
                       f"2023/11/14 22:13:20 akmods: Building RPM using the command '/usr/sbin/akmodsbuild "
                       f"--target x86_64 --kernels {k} /usr/src/akmods/{name}-kmod.latest'\n"
                       "2023/11/14 22:13:30 akmods: Successful.\n")
        for k, log in (failed or {}).items():
            self.write(f"var/cache/akmods/{name}/{verrel}-for-{k}.failed.log", log)
        return self

    def versionlock(self, *specs: str) -> "RhelHost":
        self.write("etc/dnf/plugins/versionlock.conf", "[main]\nenabled = 1\nlocklist = "
                   "/etc/dnf/plugins/versionlock.list\n")
        self.write("etc/dnf/plugins/versionlock.list", "".join(f"\n# Added lock on Tue Nov 14 22:13:20 2023\n{s}\n"
                                                              for s in specs))
        self.write("usr/lib/python3.9/site-packages/dnf-plugins/versionlock.py", "# python3-dnf-plugin-versionlock\n")
        self.rpm("python3-dnf-plugin-versionlock", "4.3.0", "13.el9", arch="noarch")
        return self

    # --- finishing -----------------------------------------------------------------------
    def finish(self, *, depmod: bool = True, mtime: int = FIXED_MTIME) -> Path:
        if depmod:
            self.depmod_all()
        db = self.path("usr/lib/sysimage/rpm" if self.os_id == "fedora" else "var/lib/rpm")
        shutil.rmtree(db, ignore_errors=True)
        db.mkdir(parents=True)
        if self.os_id == "fedora":          # Fedora >= 36: the rpmdb moved, the old path links there
            self.symlink("var/lib/rpm", "../../usr/lib/sysimage/rpm")
        for when in sorted({at for _, at in self.specs}):
            install(self.root, *(rpmbuild(s) for s, at in self.specs if at == when), justdb=True, faketime=when)
        for volatile in ("rpmdb.sqlite-shm",):          # rpm's shared-memory index: random salts
            (db / volatile).unlink(missing_ok=True)
        for path in [self.root, *self.root.rglob("*")]:
            os.utime(path, (mtime, mtime), follow_symlinks=False)
        self._finished = True
        return self.root


def _config(cfg: dict[str, str]) -> str:
    return "".join(f"{key}={v}\n" for key, v in sorted(cfg.items()))
