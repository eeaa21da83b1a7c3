"""The host trees the oracle judges: the real-host builder's scenarios, and two trees derived from
them here for what the builder does not make (a truncated initramfs, a MOK never enrolled).

A tree says how its kernel boots: efivars with SecureBoot=1 and SetupMode=0 mean a Secure Boot
boot through OVMF + shim + grub with the certificates of the tree's MokListRT enrolled (read with
virt-firmware's own EFI_SIGNATURE_LIST parser, not the exporter's); any other tree boots straight
from QEMU (SeaBIOS, no EFI), where Debian's kernel neither locks down nor enforces signatures —
the same decision as an EFI boot with Secure Boot off.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from testkit import realhost_scenarios

from . import artifacts
from .harness import BootSpec, SecureBootSetup

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
REALHOST = REPO / "tests/realhost"
EFI_GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
SHIM_LOCK = "605dab50-e046-4300-abb6-3dd810dd8b23"
DB_GUID = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"     # EFI_IMAGE_SECURITY_DATABASE_GUID: db, dbx
BUILD_TIMEOUT = 45 * 60


# name -> (source scenario, what is changed, how)
DERIVED = {
    "initramfs_truncated": ("healthy", "the newest kernel's initramfs cut to half its size"),
    "sb_mok_not_enrolled": ("signed_sb_on", "MokListRT removed: mokutil --import was run, MokManager never"),
    "xz_crc64": ("healthy", "the newest kernel's v4l2loopback.ko.xz recompressed with xz --check=crc64 (dkms 3.0's "
                 "`xz -f`; dkms 3.2 with compress_xz_opts emptied in framework.conf)"),
    "sb_module_changed": ("signed_sb_on", "one bit of NEW's v4l2loopback.ko .text flipped after signing, trailer intact"),
    "sb_mok_revoked_dbx": ("signed_sb_on", "the enrolled MOK certificate also in dbx (virt-fw-vars --add-dbx-cert)"),
    "dependency_deleted": ("healthy", "the newest kernel's videodev.ko (v4l2loopback's in-tree dependency) deleted, "
                                      "then depmod run, as on a kernel whose extra-modules package is not installed"),
}
# The in-tree module dependency_deleted removes (relative to /lib/modules/K, any compression).
DELETED_DEPENDENCY = "kernel/drivers/media/v4l2-core/videodev.ko"


# The Debian generations the oracle boots (tests/realhost/build.sh's DKMS_EXPORTER_REALHOST_SUITE),
# the same variable and default as the real-host tests: .ci/run boots both.
GENERATIONS = tuple(g for g in os.environ.get("DKMS_EXPORTER_REALHOST_GENERATIONS", "bookworm,trixie").split(",")
                    if g)
# Derived trees made on a later generation too (bookworm gets every DERIVED entry): the derivations
# here are generation-neutral (an initramfs cut in half, MokListRT removed).
LATER_DERIVED = ("initramfs_truncated", "sb_mok_not_enrolled", "xz_crc64")
# ... and those that mean something only there (bookworm's modules are not compressed).
LATER_ONLY = ("xz_crc64",)


def rhel_scenarios() -> tuple[str, ...]:
    """The RHEL/Fedora-layout trees of tests/rhelhost/build.py."""
    from rhelhost.build import scenarios
    return tuple(s.name for s in scenarios("NEW", "OLD"))


def scenario_names(generation: str = "bookworm") -> tuple[str, ...]:
    """The scenarios of one generation: bookworm's real-host, derived and RHEL-layout trees; a
    later generation's real-host trees and the derivations of LATER_DERIVED."""
    if generation == "bookworm":
        return realhost_scenarios() + tuple(d for d in DERIVED if d not in LATER_ONLY) + rhel_scenarios()
    return realhost_scenarios() + tuple(d for d in DERIVED if d in LATER_DERIVED)


def ensure_realhost(suite: str = "bookworm") -> Path:
    """Runs tests/realhost/build.sh for one generation (warm: seconds; cold: about 7 minutes, needs
    root) and returns the build it made or reused (its REALHOST_DIR=, builds/KEY: scenarios/,
    host.env, stamp); a failure raises with the end of its output."""
    build = REALHOST / "build.sh"
    proc = subprocess.run(["bash", str(build)], capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                          check=False, env={**os.environ, "DKMS_EXPORTER_REALHOST_SUITE": suite})
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    if proc.returncode != 0:
        raise RuntimeError(f"DKMS_EXPORTER_REALHOST_SUITE={suite} tests/realhost/build.sh failed "
                           f"(exit {proc.returncode}):\n{tail}")
    dirs = [line.split("=", 1)[1].strip() for line in proc.stdout.splitlines() if line.startswith("REALHOST_DIR=")]
    if not dirs:
        raise RuntimeError(f"tests/realhost/build.sh printed no REALHOST_DIR=:\n{tail}")
    return Path(dirs[-1])


class SharedLock:
    """A shared flock on the real-host builder's lock file (realhost/.lock, two levels above a
    build's builds/KEY): a rebuild, which may delete old builds, waits while the oracle reads the
    trees.  Held only around the work, never for the whole pytest session (the realhost tests run
    build.sh later in the same session)."""

    def __init__(self, build: Path) -> None:
        self.build = build
        self.path = build.parents[1] / ".lock"      # realhost/.lock, rhelhost/.lock

    def __enter__(self) -> Self:
        self.handle = open(self.path, "a+")
        fcntl.flock(self.handle, fcntl.LOCK_SH)
        if not (self.build / "stamp").is_file():
            self.__exit__()
            raise RuntimeError(f"{self.build} was deleted before the oracle could lock it (a concurrent rebuild?)")
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


# ---------------------------------------------------------------------------------------------
# Derived trees


def _link_copy(src: Path, dst: Path) -> None:
    """A hardlinked copy (same filesystem, seconds); files to change are replaced, never written."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(src), str(dst)], check=True)


def derived_tree(realhost: Path, name: str, generation: str = "bookworm") -> Path:
    """Build (or reuse, keyed by the source tree's build stamp and this file) a derived tree
    (bookworm's under derived/NAME, a later generation's under derived/GENERATION/NAME)."""
    source, _ = DERIVED[name]
    stamp_text = (realhost / "stamp").read_text().strip() + hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    base = artifacts.oracle_cache() / "derived" / ("" if generation == "bookworm" else generation) / name
    tree, stamp = base / "tree", base / "stamp"
    if stamp.exists() and stamp.read_text() == stamp_text and tree.is_dir():
        return tree
    stamp.unlink(missing_ok=True)
    _link_copy(realhost / "scenarios" / source / "tree", tree)
    env = dict(line.split("=", 1) for line in (realhost / "host.env").read_text().splitlines() if "=" in line)
    if name == "initramfs_truncated":
        image = tree / "boot" / f"initrd.img-{env['NEW_KERNEL']}"
        data = image.read_bytes()
        image.unlink()  # a hardlink: replace, never write through it
        image.write_bytes(data[: len(data) // 2])
    elif name == "sb_mok_not_enrolled":
        (tree / "sys/firmware/efi/efivars" / f"MokListRT-{SHIM_LOCK}").unlink()
    elif name == "xz_crc64":
        (module,) = (tree / "lib/modules" / env["NEW_KERNEL"] / "updates").rglob("v4l2loopback.ko.xz")
        xz = artifacts.need("xz", "xz-utils")
        plain = subprocess.run([xz, "-dc", str(module)], capture_output=True, check=True).stdout
        module.unlink()  # a hardlink: replace, never write through it
        module.write_bytes(subprocess.run([xz, "--check=crc64", "-c"], input=plain, capture_output=True,
                                          check=True).stdout)
    elif name == "sb_module_changed":
        _flip_text_bit(next((tree / "lib/modules" / env["NEW_KERNEL"] / "updates").rglob("v4l2loopback.ko")))
    elif name == "sb_mok_revoked_dbx":
        # dbx as the firmware stores it after the update: the same EFI_CERT_X509 list as MokListRT
        efivars = tree / "sys/firmware/efi/efivars"
        mok = (efivars / f"MokListRT-{SHIM_LOCK}").read_bytes()
        (efivars / f"dbx-{DB_GUID}").write_bytes(b"\x27\x00\x00\x00" + mok[4:])
    elif name == "dependency_deleted":
        _delete_and_depmod(tree, env["NEW_KERNEL"], DELETED_DEPENDENCY)
    stamp.write_text(stamp_text)
    return tree


def _flip_text_bit(path: Path) -> None:
    """One bit in the middle of .text, the appended signature left as sign-file wrote it (the
    file is a hardlink: replaced, never written through)."""
    from elftools.elf.elffile import ELFFile
    data = bytearray(path.read_bytes())
    with path.open("rb") as fh:
        text = ELFFile(fh).get_section_by_name(".text")
        at = text["sh_offset"] + text["sh_size"] // 2
    data[at] ^= 0x01
    path.unlink()
    path.write_bytes(bytes(data))


def _delete_and_depmod(tree: Path, kernel: str, rel: str) -> None:
    """Delete one module file of K (whatever its compression) and run the real depmod on the
    tree; the index files are hardlinks into the source tree, so depmod gets its own copies."""
    base = tree / "lib/modules" / kernel
    (found,) = [p for p in (base / (rel + suffix) for suffix in ("", ".xz", ".zst", ".gz")) if p.exists()]
    found.unlink()
    for index in base.glob("modules.*"):
        data = index.read_bytes()
        index.unlink()
        index.write_bytes(data)
    subprocess.run([artifacts.need("depmod", "kmod"), "-b", str(tree), kernel], check=True, capture_output=True)


def tree_of(realhost: Path, scenario: str, rhelhost: Path | None = None, generation: str = "bookworm") -> Path:
    if scenario in DERIVED:
        return derived_tree(realhost, scenario, generation)
    if rhelhost is not None and scenario in rhel_scenarios():
        return rhelhost / "scenarios" / scenario / "tree"
    return realhost / "scenarios" / scenario / "tree"


# ---------------------------------------------------------------------------------------------
# Boot specs and exporter runs


def installed_kernels(tree: Path) -> list[str]:
    return sorted(p.name.removeprefix("vmlinuz-") for p in (tree / "boot").glob("vmlinuz-*"))


def _efivar(tree: Path, name: str, guid: str) -> bytes | None:
    path = tree / "sys/firmware/efi/efivars" / f"{name}-{guid}"
    return path.read_bytes()[4:] if path.exists() else None


def secure_boot_setup(tree: Path) -> SecureBootSetup | None:
    """Secure Boot on (per the tree's efivars) -> the MOKs to enroll and whose shim and grub boot
    (the tree's own Debian release); otherwise None."""
    sb, setup = _efivar(tree, "SecureBoot", EFI_GLOBAL), _efivar(tree, "SetupMode", EFI_GLOBAL)
    if sb != b"\x01" or setup not in (None, b"\x00"):
        return None
    return SecureBootSetup(tuple(mok_certificates(tree)), debian_suite(tree),
                           dbx_certificates=tuple(mok_certificates(tree, "dbx", DB_GUID)))


def debian_suite(tree: Path) -> str:
    """The tree's Debian release by its os-release VERSION_CODENAME, if the oracle has that
    release's boot chain; bookworm's otherwise (other layouts boot through Debian 12's)."""
    text = ""
    for rel in ("etc/os-release", "usr/lib/os-release"):   # the first may be an absolute symlink
        try:
            text = (tree / rel).read_text()
            break
        except OSError:
            continue
    m = re.search(r'^VERSION_CODENAME="?([a-z]+)"?$', text, re.MULTILINE)
    return m.group(1) if m and m.group(1) in artifacts.SUITES else artifacts.HOST_SUITE


def mok_certificates(tree: Path, name: str = "MokListRT", guid: str = "") -> list[bytes]:
    """DER certificates of the tree's MokListRT (or dbx), parsed by virt-firmware."""
    data = _efivar(tree, name, guid or SHIM_LOCK)
    if data is None:
        return []
    artifacts.virt_fw_vars()  # fails with the install hint when virt-firmware is missing
    from virt.firmware.efi import guids, siglist

    return [sig["data"] for esl in siglist.EfiSigDB(data) if str(esl.guid) == guids.EfiCertX509
            for sig in esl]


def exporter_check(tree: Path, kernel: str) -> dict:
    """`python -m exporter check --json --kernel K --path.rootfs TREE` (exit 0/1/2 are answers)."""
    argv = [sys.executable, "-m", "exporter", "check", "--json", "--kernel", kernel, "--path.rootfs", str(tree)]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode not in (0, 1, 2) or not proc.stdout.strip():
        raise RuntimeError(f"$ {' '.join(argv)}\nexit {proc.returncode}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def modules_to_try(tree: Path, kernel: str, doc: dict) -> tuple[str, ...]:
    """The exporter's needed modules for K, plus every DKMS module file on disk for K."""
    names = [m["module"] for k in doc.get("kernels", []) if k["kernel"] == kernel for m in k["modules"]]
    for sub in ("updates", "extra", "weak-updates"):
        d = tree / "lib/modules" / kernel / sub
        if d.is_dir():
            names += sorted(re.sub(r"\.ko(\..*)?$", "", p.name) for p in d.rglob("*.ko*"))
    return tuple(dict.fromkeys(n.replace("-", "_") for n in names))


def extra_files(kernel: str, doc: dict) -> tuple[str, ...]:
    """Other kernels' module files the exporter's weak-modules reasons name, to load as they are."""
    from .judge import candidate_file
    found = [candidate_file(p["detail"]) for k in doc.get("kernels", []) if k["kernel"] == kernel
             for m in k["modules"] for p in m["problems"]]
    return tuple(dict.fromkeys(f for f in found if f))


def initrd_of(tree: Path, kernel: str) -> Path:
    """initramfs-tools' /boot/initrd.img-K, else dracut's /boot/initramfs-K.img (RHEL, Fedora)."""
    debian = tree / "boot" / f"initrd.img-{kernel}"
    return debian if debian.exists() else tree / "boot" / f"initramfs-{kernel}.img"


def boot_spec(tree: Path, kernel: str, doc: dict, *, capture: bool | None = None) -> BootSpec:
    sb = secure_boot_setup(tree)
    return BootSpec(tree=tree, release=kernel, vmlinuz=tree / "boot" / f"vmlinuz-{kernel}",
                    initrd=initrd_of(tree, kernel), modules=modules_to_try(tree, kernel, doc),
                    secure_boot=sb, capture=sb is not None if capture is None else capture,
                    extra_files=extra_files(kernel, doc))


@dataclass(frozen=True)
class Case:
    """One scenario x kernel: the exporter's document and the boot that judges it."""

    scenario: str
    kernel: str
    tree: Path
    doc: dict
    spec: BootSpec
    generation: str = "bookworm"


def cases(realhost: Path, rhelhost: Path | None = None, generation: str = "bookworm") -> list[Case]:
    """Every scenario x installed kernel of one generation with the exporter's verdict (one
    `check` process each, two at a time: each is about a second of Python)."""
    if generation != "bookworm":
        names = scenario_names(generation)
    else:
        names = scenario_names() if rhelhost is not None else \
            realhost_scenarios() + tuple(d for d in DERIVED if d not in LATER_ONLY)
    pairs = [(scenario, tree_of(realhost, scenario, rhelhost, generation)) for scenario in names]
    todo = [(scenario, tree, kernel) for scenario, tree in pairs for kernel in installed_kernels(tree)]
    with ThreadPoolExecutor(max(1, min(2, os_cpu_count()))) as pool:
        docs = list(pool.map(lambda item: exporter_check(item[1], item[2]), todo))
    return [Case(scenario, kernel, tree, doc, boot_spec(tree, kernel, doc), generation)
            for (scenario, tree, kernel), doc in zip(todo, docs, strict=True)]


def os_cpu_count() -> int:
    return len(os.sched_getaffinity(0))
