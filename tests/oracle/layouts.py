"""The SUSE- and Arch-layout trees the oracle boots (tests/oracle/test_oracle_layouts.py).

SUSE: the three trees tests/rhelhost/suse.py builds from real Debian kernels (a KMP compiled by
kbuild in the updates/ of the kernel it was built for, weak-updates links decided by depmod
against the other kernel's symvers, /boot/vmlinuz-K and dracut's /boot/initrd-K).

Arch: made here from the real-host ``built_for_both`` tree (acpi_call and v4l2loopback built by
the real DKMS for both Debian kernels, installed in updates/dkms), laid out as Arch lays a system
out: each release's image in /usr/lib/modules/K/vmlinuz with a ``pkgbase`` file (NEW is the
``linux`` package, OLD ``linux-lts``), /boot/vmlinuz-<pkgbase> beside it, systemd-boot's
loader.conf and entries naming those files, pacman's local database written by the real pacman
(``pacman -U --root`` of makepkg's packages).  The initramfs is /boot/initramfs-<pkgbase>.img made
by the real dracut with zstd: mkinitcpio is not in Debian's archive (docs/testing.md, "mkinitcpio");
dracut is one of the generators Arch packages, writing a zstd cpio under mkinitcpio's file name.
The running kernel is OLD (linux-lts), whose image carries v4l2loopback (an early-boot module);
the next boot, ``linux`` (NEW), was generated without it: missing_from_initramfs.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import artifacts

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
SUSE_SCENARIOS = ("suse_kmp_fits", "suse_kmp_unlinked", "suse_kmp_break")
ARCH_SOURCE = "built_for_both"
ARCH_SCENARIO = "arch_early_missing"
ROOT_UUID = "3f1c2b8e-6a7d-4c1e-9b2a-5d8e7f6a1b2c"
ARCH_OS_RELEASE = ('NAME="Arch Linux"\nPRETTY_NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n'
                   'HOME_URL="https://archlinux.org/"\n')
# Debian's files an Arch system does not have (package state, initramfs-tools, GRUB's defaults)
DEBIAN_ONLY = ("var/lib/dpkg", "var/lib/apt", "etc/apt", "etc/dpkg", "etc/debian_version", "etc/initramfs-tools",
               "etc/kernel", "etc/default/grub", "var/lib/initramfs-tools", "vmlinuz", "vmlinuz.old", "initrd.img",
               "initrd.img.old")


@dataclass(frozen=True)
class LayoutTree:
    """One tree and where its kernels' boot files are."""

    scenario: str
    tree: Path
    boot_files: dict[str, tuple[Path, Path]]      # release -> (vmlinuz, initramfs) as the loader names them


def suse_trees(rhelhost: Path) -> list[LayoutTree]:
    out = []
    for name in SUSE_SCENARIOS:
        tree = rhelhost / "scenarios" / name / "tree"
        releases = sorted(p.name.removeprefix("vmlinuz-") for p in (tree / "boot").glob("vmlinuz-*"))
        out.append(LayoutTree(name, tree, {k: (tree / f"boot/vmlinuz-{k}", tree / f"boot/initrd-{k}")
                                           for k in releases}))
    return out


def _env(realhost: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (realhost / "host.env").read_text().splitlines() if "=" in line)


def pkgbases(realhost: Path) -> dict[str, str]:
    env = _env(realhost)
    return {env["NEW_KERNEL"]: "linux", env["OLD_KERNEL"]: "linux-lts"}


def arch_tree(realhost: Path) -> LayoutTree:
    """Build (or reuse, keyed by the real-host stamp, this file and pacmantools.py) the Arch tree."""
    bases = pkgbases(realhost)
    key = hashlib.sha256((realhost / "stamp").read_bytes() + Path(__file__).read_bytes()
                         + (TESTS / "pacmantools.py").read_bytes()).hexdigest()[:20]
    base = artifacts.oracle_cache() / "layouts" / ARCH_SCENARIO
    tree, stamp = base / "tree", base / "stamp"
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.exists() and stamp.read_text() == key and tree.is_dir()):
            stamp.unlink(missing_ok=True)
            _build_arch(realhost, tree, bases)
            stamp.write_text(key)
    return LayoutTree(ARCH_SCENARIO, tree, {k: (tree / f"boot/vmlinuz-{b}", tree / f"boot/initramfs-{b}.img")
                                            for k, b in bases.items()})


def _replace(path: Path, text: str) -> None:
    """Files of a hardlinked copy are replaced, never written through."""
    if path.is_symlink() or path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _build_arch(realhost: Path, tree: Path, bases: dict[str, str]) -> None:
    if tree.exists():
        shutil.rmtree(tree)
    tree.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(realhost / "scenarios" / ARCH_SOURCE / "tree"), str(tree)], check=True)
    for rel in DEBIAN_ONLY:
        p = tree / rel
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p)
    _replace(tree / "etc/os-release", ARCH_OS_RELEASE)
    _replace(tree / "usr/lib/os-release", ARCH_OS_RELEASE)
    new, old = (k for k, b in sorted(bases.items(), key=lambda kv: kv[1] != "linux"))
    _replace(tree / "proc/sys/kernel/osrelease", old + "\n")          # running linux-lts; next boot linux
    for k, pkgbase in bases.items():
        mods = tree / f"usr/lib/modules/{k}"
        os.link(tree / f"boot/vmlinuz-{k}", mods / "vmlinuz")          # the linux package's own copy
        _replace(mods / "pkgbase", pkgbase + "\n")
        os.replace(tree / f"boot/vmlinuz-{k}", tree / f"boot/vmlinuz-{pkgbase}")   # mkinitcpio's hook copies it
        for name in ("config", "System.map", "initrd.img"):
            (tree / f"boot/{name}-{k}").unlink(missing_ok=True)
        early = ["v4l2loopback"] if k == old else []
        _dracut(tree, k, tree / f"boot/initramfs-{pkgbase}.img", early)
    _systemd_boot(tree, bases)
    _pacman_db(tree, bases)


def _dracut(tree: Path, k: str, out: Path, early: list[str]) -> None:
    """The real dracut, zstd, into mkinitcpio's file name (as the RPM trees' images are made)."""
    argv = [artifacts.need("dracut", "dracut"), "--quiet", "--force", "--no-hostonly", "--no-early-microcode",
            "--kmoddir", str(tree / f"usr/lib/modules/{k}"), "--kver", k, "-m", "base", "--compress", "zstd"]
    if early:
        argv += ["--add-drivers", " ".join(early)]
    proc = subprocess.run([*argv, str(out)], capture_output=True, text=True, check=False, timeout=900)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"$ {' '.join(argv)} {out}\nexit {proc.returncode}\n{proc.stderr[-3000:]}")
    with open(out, "rb") as f:
        if f.read(4) != b"\x28\xb5\x2f\xfd":
            raise RuntimeError(f"{out}: dracut did not write a zstd image")


def _systemd_boot(tree: Path, bases: dict[str, str]) -> None:
    """What an Arch install guide makes with the ESP on /boot: one entry per kernel package."""
    _replace(tree / "boot/loader/loader.conf", "default arch.conf\ntimeout 3\n")
    for pkgbase in bases.values():
        name = "arch.conf" if pkgbase == "linux" else f"arch-{pkgbase.removeprefix('linux-')}.conf"
        _replace(tree / "boot/loader/entries" / name,
                 f"title   Arch Linux ({pkgbase})\nlinux   /vmlinuz-{pkgbase}\ninitrd  /initramfs-{pkgbase}.img\n"
                 f"options root=UUID={ROOT_UUID} rw\n")


def _pacman_db(tree: Path, bases: dict[str, str]) -> None:
    """pacman's local database by the real pacman: the kernel packages (pkgver from the release:
    6.1.0-57-amd64 is 6.1.0.57-1), their headers packages, dkms, the two -dkms packages, dracut."""
    from pacmantools import FIXED_TIME, Pkg, install
    pkgs = []
    for k, pkgbase in bases.items():
        v, abi, _ = k.split("-")
        pkgs += [Pkg(pkgbase, f"{v}.{abi}", "1"), Pkg(f"{pkgbase}-headers", f"{v}.{abi}", "1", base=pkgbase)]
    pkgs += [Pkg("dkms", "3.0.10", "1", arch="any"), Pkg("acpi_call-dkms", "1.2.2", "1"),
             Pkg("v4l2loopback-dkms", "0.12.7", "1", arch="any"), Pkg("dracut", "059", "1"),
             Pkg("systemd", "252.33", "1")]
    conf = "[options]\nArchitecture = auto\nSigLevel = Never\n"
    _replace(tree / "etc/pacman.conf", conf)
    install(tree, pkgs, when=FIXED_TIME)
    for volatile in ("var/cache/pacman", "var/lib/pacman/sync"):
        shutil.rmtree(tree / volatile, ignore_errors=True)
    (tree / "var/lib/pacman/db.lck").unlink(missing_ok=True)
