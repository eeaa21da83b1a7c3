"""Build Arch Linux-layout host trees for the example hosts: hostbuilder's modules and DKMS trees
where Arch keeps them, and pacman's local database written by the real pacman (`pacman -U
--root`, packages built by the real makepkg: tests/pacmantools.py) under a standing clock.

Layout as Arch ships it: the image in /usr/lib/modules/K/vmlinuz with a ``pkgbase`` file, the
headers package's tree in /usr/lib/modules/K/build, mkinitcpio's /boot/initramfs-<pkgbase>.img
(zstd), /boot/vmlinuz-<pkgbase> copied there by mkinitcpio's hook, systemd-boot's loader entries
naming those, DKMS in updates/dkms, IgnorePkg in /etc/pacman.conf.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from hostbuilder import FIXED_MTIME, SYMBOLS, Host, _Kernel, kernel_crc, module_elf
from pacmantools import FIXED_TIME, Pkg, install


def _pkgver(release: str) -> tuple[str, str]:
    """pkgver and pkgrel of the kernel package of ``release``, as Arch's PKGBUILDs make them:
    6.10.2-arch1-1 is linux 6.10.2.arch1-1, 6.6.36-1-lts is linux-lts 6.6.36-1, 6.9.7-zen1-1-zen
    linux-zen 6.9.7.zen1-1 (the flavour suffix is not part of the version)."""
    parts = release.split("-")
    if len(parts) > 2 and not parts[-1].isdigit():
        parts = parts[:-1]
    return ".".join(parts[:-1]), parts[-1]


@dataclass
class ArchHost(Host):
    pkgs: list[Pkg] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        for d in ("usr/lib", "usr/bin", "boot/loader/entries", "etc", "proc/sys/kernel", "sys", "run",
                  "var/lib/dkms", "usr/src"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        for link in ("lib", "bin", "sbin"):
            if not (self.root / link).is_symlink():
                (self.root / link).symlink_to("usr/bin" if link == "sbin" else f"usr/{link}")
        self.write("etc/os-release", 'NAME="Arch Linux"\nPRETTY_NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n')
        self.write("usr/bin/dkms", '#!/bin/bash\n# fixture stand-in\necho $"dkms-3.0.13"\n', mode=0o755)
        self.pkg("dkms", "3.0.13", "1", arch="any")
        self.pkg("mkinitcpio", "39.2", "2", arch="any")
        self.pkg("systemd", "256.4", "1")

    def pkg(self, name: str, version: str, rel: str = "1", **kw) -> "ArchHost":
        self.pkgs.append(Pkg(name, version, rel, **kw))
        return self

    def package(self, name: str, version: str, **kw) -> "ArchHost":   # hostbuilder's dpkg call, mapped
        v, _, r = version.partition("-")
        return self.pkg(name, v, r or "1")

    def kernel(self, release: str, *, running: bool = False, headers: bool = True, pkgbase: str = "linux",
               installed: bool = True, **_) -> "ArchHost":
        """The ``linux`` package's files for ``release`` (6.10.2-arch1-1 is linux 6.10.2.arch1-1);
        ``installed=False``: only what is left after pacman replaced it (the held headers' build/)."""
        cfg = {"CONFIG_MODULES": "y", "CONFIG_MODULE_SIG": "y", "CONFIG_CRYPTO": "y", "CONFIG_MODVERSIONS": "y",
               "CONFIG_MODULE_SIG_FORCE": "n", "CONFIG_LOCK_DOWN_KERNEL_FORCE_NONE": "y"}
        version, rel = _pkgver(release)
        if installed:
            self.kernels[release] = _Kernel(release, False, True, True, cfg, ["e1000e"])
            base = f"usr/lib/modules/{release}"
            self.write(f"{base}/vmlinuz", b"MZ kernel " + release.encode())
            self.write(f"{base}/pkgbase", pkgbase + "\n")
            self.write(f"{base}/kernel/drivers/net/{'e1000e'}.ko", module_elf("e1000e", release, intree=True,
                                                                               key="kernel-build"))
            self.write(f"boot/vmlinuz-{pkgbase}", b"MZ kernel " + release.encode())
            self.pkg(pkgbase, version, rel, provides=("KSMBD-MODULE", "WIREGUARD-MODULE"))
        if headers:
            build = f"usr/lib/modules/{release}/build"
            self.write(f"{build}/Makefile", "# linux-headers Makefile\n")
            self.write(f"{build}/include/generated/autoconf.h", "#define CONFIG_MODULES 1\n")
            # linux-headers' PKGBUILD installs .config into build/: Arch's only copy of the config
            self.write(f"{build}/.config", "".join(f"{k}={v}\n" for k, v in sorted(cfg.items())))
            self.write(f"{build}/Module.symvers", "".join(
                f"0x{kernel_crc(release, s):08x}\t{s}\tvmlinux\tEXPORT_SYMBOL\t\n" for s in SYMBOLS))
            self.pkg(f"{pkgbase}-headers", version, rel)
            if release in self.kernels:
                self.kernels[release].headers = True
        if running:
            self.set_running(release)
        return self

    def systemd_boot(self, pkgbase: str = "linux") -> "ArchHost":
        """What an Arch install guide makes: loader.conf's default and one entry per kernel package."""
        self.write("boot/loader/loader.conf", "default arch.conf\ntimeout 3\n")
        self.write("boot/loader/entries/arch.conf", f"title   Arch Linux\nlinux   /vmlinuz-{pkgbase}\n"
                   f"initrd  /initramfs-{pkgbase}.img\noptions root=UUID=3f1c2b8e-6a7d-4c1e-9b2a-5d8e7f6a1b2c rw\n")
        return self

    def initramfs(self, release: str, modules: list[str] = (), *, pkgbase: str = "linux", **kw) -> "ArchHost":
        super().initramfs(release, modules, **kw)
        os.replace(self.path(f"boot/initrd.img-{release}"), self.path(f"boot/initramfs-{pkgbase}.img"))
        return self

    def ignore_pkg(self, *names: str) -> "ArchHost":
        self.ignore += names
        return self

    def finish(self, *, depmod: bool = True, mtime: int = FIXED_MTIME) -> Path:
        if depmod:
            self.depmod_all()
        conf = "[options]\nArchitecture = auto\nSigLevel = Never\n"
        self.write("etc/pacman.conf", conf)         # pacman -U reads it; the holds come after
        install(self.root, self.pkgs, when=FIXED_TIME)
        for volatile in ("var/log", "var/cache/pacman", "var/lib/pacman/sync"):
            shutil.rmtree(self.path(volatile), ignore_errors=True)
        self.path("var/lib/pacman/db.lck").unlink(missing_ok=True)
        if self.ignore:
            conf += f"IgnorePkg = {' '.join(self.ignore)}\n"
        self.write("etc/pacman.conf", conf)
        for path in [self.root, *self.root.rglob("*")]:
            os.utime(path, (mtime, mtime), follow_symlinks=False)
        self._finished = True
        return self.root
