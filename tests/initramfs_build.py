"""Test helper: initramfs images made by the real tools, and by our own cpio writer.

Real images come from Debian's mkinitramfs (initramfs-tools-core) and dracut (dracut-core), built
for a real Debian kernel (linux-image-6.1.0-N-amd64, fetched with ``apt-get download`` into the
shared cache's debs/ and unpacked with dpkg-deb).  mkinitramfs only looks for modules in
/lib/modules/K and for /boot/config-K, so it runs in a private mount namespace (``unshare -m``,
root) where the unpacked kernel is bind-mounted there; the host is never touched.  dracut takes the
modules directory as ``--kmoddir``.

Images are cached under ``$DKMS_EXPORTER_TEST_CACHE/initramfs/<kernel deb>/<recipe key>/``; the key
hashes this file's RECIPE, the tool versions and the build options, so a change rebuilds them.
Nothing here skips: a missing tool raises ``ToolMissing`` with the reason, which tests turn into a
failure.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

RECIPE = "3"  # bump when the way images are built changes

#: What each format's real compressor is invoked as (the way mkinitramfs/dracut call them).
COMPRESSORS: dict[str, list[str]] = {
    "gzip": ["gzip", "-n", "-c"],
    "zstd": ["zstd", "-q", "-c", "-9"],
    "xz": ["xz", "--check=crc32", "-c"],
    "lzma": ["xz", "--format=lzma", "-c"],
    "lz4": ["lz4", "-l", "-9", "-c", "-q"],
    "bzip2": ["bzip2", "-c"],
    "lzo": ["lzop", "-c"],
}
DECOMPRESSORS: dict[str, list[str]] = {
    "gzip": ["gzip", "-dc"],
    "zstd": ["zstd", "-dcq"],
    "xz": ["xz", "-dc"],
    "lzma": ["xz", "--format=lzma", "-dc"],
    "lz4": ["lz4", "-dc", "-q"],
    "bzip2": ["bzip2", "-dc"],
    "lzo": ["lzop", "-dc"],
}

#: Drivers asked for in the small test images (plus whatever the hooks add).
TEST_MODULES = ("ext4", "nvme", "ahci", "virtio_blk", "dm-crypt", "raid1", "xfs")


class ToolMissing(RuntimeError):
    """A Debian tool the tests compare against is not installed (see .ci/apt-packages)."""


def cache_dir() -> Path:
    """The shared test artifact cache."""
    root = os.environ.get("DKMS_EXPORTER_TEST_CACHE") or "~/.cache/dkms-exporter-tests"
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def require(*tools: str) -> None:
    """Raise ToolMissing naming every tool that is not on PATH (sbin included)."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [t for t in tools if shutil.which(t, path=path) is None]
    if missing:
        raise ToolMissing(f"needed tools not installed: {', '.join(missing)} (install .ci/apt-packages)")


def run(argv: Sequence[str], *, data: bytes | None = None, cwd: Path | None = None, env: dict | None = None) -> bytes:
    """Run a tool, returning stdout; a failure raises with its stderr in the message."""
    proc = subprocess.run(list(argv), input=data, capture_output=True, cwd=cwd, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}")
    return proc.stdout


def _tool_version(package: str) -> str:
    try:
        return run(["dpkg-query", "-W", "-f=${Version}", package]).decode()
    except (RuntimeError, FileNotFoundError):
        return "?"


def _atomic_dir(final: Path, build) -> Path:
    """Build a directory in a sibling temp dir and rename it into place (safe with parallel runs)."""
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp", dir=final.parent))
    try:
        build(tmp)
        try:
            tmp.rename(final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _atomic_file(final: Path, build) -> Path:
    """Write a file via a temp file and rename; skip if it is already cached."""
    if final.is_file() and final.stat().st_size > 0:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=final.name + ".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        build(tmp)
        tmp.rename(final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


# ------------------------------------------------------------------------------------------------
# A real Debian kernel


_DEB = re.compile(r"linux-image-(6\.1\.0-\d+-amd64)_([^_]+)_amd64\.deb")


def kernel_deb() -> Path:
    """A Debian 12 linux-image .deb in the shared debs/ cache, downloaded if none is there.
    The quick tier never downloads, cached or not: a test that gets here must be marked slow."""
    from testkit import slow_artifact   # here, not at the top: benchmarks import this module too

    slow_artifact("a real Debian kernel package (linux-image)")
    debs = cache_dir() / "debs"
    debs.mkdir(exist_ok=True)
    cached = sorted((p for p in debs.iterdir() if _DEB.fullmatch(p.name)), key=_deb_order)
    if cached:
        return cached[-1]
    require("apt-get", "apt-cache")
    match = _current_kernel_package()
    if not match and os.geteuid() == 0:  # a fresh machine may have no package lists yet
        run(["apt-get", "update", "-qq"])
        match = _current_kernel_package()
    if not match:
        raise ToolMissing("apt-cache knows no linux-image-amd64 (run apt-get update)")
    with tempfile.TemporaryDirectory(dir=debs) as tmp:
        run(["apt-get", "download", "-q", match.group(1)], cwd=Path(tmp))
        (deb,) = Path(tmp).glob("*.deb")
        target = debs / deb.name
        if not target.exists():
            deb.rename(target)
    return target


def _current_kernel_package() -> re.Match | None:
    """linux-image-6.1.0-N-amd64, the package Debian's linux-image-amd64 currently depends on."""
    try:
        deps = run(["apt-cache", "depends", "linux-image-amd64"]).decode()
    except RuntimeError:
        return None
    return re.search(r"Depends: (linux-image-6\.1\.0-\d+-amd64)\b", deps)


def _deb_order(path: Path) -> tuple[int, str]:
    m = _DEB.fullmatch(path.name)
    assert m
    return int(m.group(1).split("-")[1]), m.group(2)


@dataclass(frozen=True)
class Kernel:
    root: Path  # holds boot/ and lib/modules/<release>/
    release: str

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.release


def debian_kernel() -> Kernel:
    """The kernel package unpacked (cached) with depmod run on it, as its postinst would."""
    require("dpkg-deb", "depmod")
    deb = kernel_deb()
    m = _DEB.fullmatch(deb.name)
    assert m
    release = m.group(1)

    def build(tmp: Path) -> None:
        run(["dpkg-deb", "-x", str(deb), str(tmp)])
        run(["depmod", "-b", str(tmp), release])

    root = _atomic_dir(cache_dir() / "initramfs" / deb.stem / "root", build)
    return Kernel(root, release)


# ------------------------------------------------------------------------------------------------
# mkinitramfs (initramfs-tools)

_HOOK_HEAD = """#!/bin/sh
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0;; esac
. /usr/share/initramfs-tools/hook-functions
set -e
"""

# What intel-microcode / amd64-microcode's hooks do: an uncompressed cpio put before the image.
# A second early archive in the crc (070702) format, as an ACPI-table hook could add.
_EARLY_HOOK = _HOOK_HEAD + """d=$(mktemp -d)
mkdir -p "$d/kernel/x86/microcode" "$d/a/kernel/firmware/acpi"
printf 'not really microcode' > "$d/kernel/x86/microcode/GenuineIntel.bin"
printf 'odd' > "$d/kernel/x86/microcode/AuthenticAMD.bin"
printf 'SSDT' > "$d/a/kernel/firmware/acpi/ssdt1.aml"
(cd "$d" && find kernel | LC_ALL=C sort | cpio --quiet -o -H newc) > "$d.1.cpio"
(cd "$d/a" && find kernel | LC_ALL=C sort | cpio --quiet -o -H crc) > "$d.2.cpio"
prepend_earlyinitramfs "$d.1.cpio"
prepend_earlyinitramfs "$d.2.cpio"
"""

# catenate_cpiogz: a gzip'd cpio appended after the main compressed archive (overlay).
_OVERLAY_HOOK = _HOOK_HEAD + """d=$(mktemp -d)
mkdir -p "$d/conf/conf.d"
printf 'OVERLAY=1\\n' > "$d/conf/conf.d/zz-overlay"
(cd "$d" && find . | LC_ALL=C sort | cpio --quiet -o -H newc | gzip -n) > "$d.cpio.gz"
catenate_cpiogz "$d.cpio.gz"
"""

_NAMESPACE_BUILD = r"""set -e
root="$1"; shift
if [ -d /usr/lib/modules ]; then :; else
  # No /lib/modules on this host: give /usr/lib one, privately, through an overlay.
  ovl=$(mktemp -d); mkdir -p "$ovl/up/modules" "$ovl/work"
  mount -t overlay overlay -o "lowerdir=/usr/lib,upperdir=$ovl/up,workdir=$ovl/work" /usr/lib
fi
mount --bind "$root/lib/modules" /usr/lib/modules
mount --bind "$root/boot" /boot
exec "$@"
"""


def in_kernel_namespace(kernel: Kernel, argv: Sequence[str]) -> bytes:
    """Run argv where /lib/modules and /boot are the unpacked kernel's (a private mount namespace)."""
    require("unshare", "mount")
    if os.geteuid() != 0:
        raise ToolMissing("building real initramfs images needs root (unshare -m, bind mounts)")
    return run(["unshare", "--mount", "--propagation", "private", "sh", "-c", _NAMESPACE_BUILD, "sh", str(kernel.root), *argv])


def mkinitramfs_image(compress: str, *, early: bool = False, overlay: bool = False, modules: str = "list") -> Path:
    """A real /boot/initrd.img-K as Debian's mkinitramfs makes it, cached.

    ``modules="list"`` takes TEST_MODULES plus what the hooks add (a few MB, fast); ``"most"`` is
    Debian's default (the big, realistic image the benchmark uses).
    """
    require("mkinitramfs", "cpio", compress)
    kernel = debian_kernel()
    options = f"{compress}-early{int(early)}-overlay{int(overlay)}-{modules}"
    key = _key("mkinitramfs", _tool_version("initramfs-tools-core"), _tool_version("klibc-utils"), options)
    final = cache_dir() / "initramfs" / kernel_deb().stem / key / f"initrd.img-{options}"

    def build(tmp: Path) -> None:
        with tempfile.TemporaryDirectory() as confdir_s:
            confdir = Path(confdir_s) / "initramfs-tools"
            _initramfs_conf(confdir, compress, modules, early=early, overlay=overlay)
            in_kernel_namespace(kernel, ["mkinitramfs", "-d", str(confdir), "-o", str(tmp), kernel.release])

    return _atomic_file(final, build)


def _initramfs_conf(confdir: Path, compress: str, modules: str, *, early: bool, overlay: bool) -> None:
    """A private copy of initramfs-tools' configuration (host conf.d left out)."""
    (confdir / "hooks").mkdir(parents=True)
    (confdir / "scripts").mkdir()
    (confdir / "conf.d").mkdir()
    (confdir / "initramfs.conf").write_text(
        f"MODULES={modules}\nBUSYBOX=n\nKEYMAP=n\nCOMPRESS={compress}\nDEVICE=\nNFSROOT=auto\nRUNSIZE=10%\nFSTYPE=auto\n"
    )
    (confdir / "modules").write_text("\n".join(TEST_MODULES) + "\n")
    for name, text, wanted in (("zz-early", _EARLY_HOOK, early), ("zz-overlay", _OVERLAY_HOOK, overlay)):
        if wanted:
            hook = confdir / "hooks" / name
            hook.write_text(text)
            hook.chmod(0o755)


# ------------------------------------------------------------------------------------------------
# dracut


def dracut_image(compress: str, *, early_microcode: bool = True) -> Path:
    """A real dracut image (dracut-core), no-hostonly, early microcode + ACPI cpio first, cached."""
    require("dracut", "cpio", *(COMPRESSORS[compress][:1]))
    kernel = debian_kernel()
    options = f"{compress}-ucode{int(early_microcode)}"
    key = _key("dracut", _tool_version("dracut-core"), options)
    final = cache_dir() / "initramfs" / kernel_deb().stem / key / f"initramfs-{options}.img"

    def build(tmp: Path) -> None:
        with tempfile.TemporaryDirectory() as work_s:
            work = Path(work_s)
            (work / "fw" / "intel-ucode").mkdir(parents=True)
            (work / "fw" / "amd-ucode").mkdir()
            (work / "acpi").mkdir()
            (work / "conf.d").mkdir()
            (work / "fw" / "intel-ucode" / "06-55-04").write_bytes(b"\x01" * 3000)
            (work / "fw" / "amd-ucode" / "microcode_amd_fam17h.bin").write_bytes(b"\x02" * 1001)
            (work / "acpi" / "ssdt1.aml").write_bytes(b"SSDT" * 25)
            (work / "conf.d" / "test.conf").write_text(
                f'fw_dir="{work}/fw"\nacpi_override="yes"\nacpi_table_dir="{work}/acpi"\n'
            )
            flag = "--early-microcode" if early_microcode else "--no-early-microcode"
            drivers = " ".join(m.replace("-", "_") for m in TEST_MODULES)
            run([
                "dracut", "--quiet", "--force", "--no-hostonly", "--kver", kernel.release,
                "--kmoddir", str(kernel.modules_dir), "-m", "base", "-d", drivers,
                f"--{compress}" if compress != "bzip2" else "--bzip2", flag,
                "-c", "/dev/null", "--confdir", str(work / "conf.d"), "--tmpdir", str(work), str(tmp),
            ])

    return _atomic_file(final, build)


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join((RECIPE, *parts)).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------
# What the real listing tools print


def lsinitramfs_names(image: Path) -> list[str]:
    """``lsinitramfs IMAGE`` as a list of names (decoded the way the exporter decodes names)."""
    require("lsinitramfs", "cpio")
    out = run(["lsinitramfs", str(image)])
    return [os.fsdecode(line) for line in out.split(b"\n")[:-1]]


_TV_LINE = re.compile(
    rb"^([-dlcbps])[-rwxsStT]{9}\s+\d+\s+\S+\s+\S+\s+(?:\d+|\d+,\s*\d+)\s+"
    rb"[A-Z][a-z]{2}\s+\d+\s+(?:\d\d:\d\d|\d{4})\s(.*)$"
)


def lsinitrd_names(image: Path) -> list[str]:
    """The names in ``lsinitrd IMAGE`` (early cpio section first, then the main image)."""
    require("lsinitrd", "cpio")
    names = []
    for line in run(["lsinitrd", str(image)]).split(b"\n"):
        m = _TV_LINE.match(line)
        if m:
            name = m.group(2)
            if m.group(1) == b"l":
                name = name.rsplit(b" -> ", 1)[0]
            names.append(os.fsdecode(name))
    return names


def cpio_t(archive: bytes) -> list[str]:
    """``cpio -t`` on an uncompressed archive (stops at the first TRAILER!!!, as cpio does)."""
    require("cpio")
    out = run(["cpio", "-i", "--list", "--quiet", "--no-absolute-filenames"], data=archive)
    return [os.fsdecode(line) for line in out.split(b"\n")[:-1]]


# ------------------------------------------------------------------------------------------------
# Our own writer


@dataclass(frozen=True)
class Entry:
    name: bytes | str
    data: bytes = b""
    mode: int = 0o100644


def cpio_archive(entries: Iterable[Entry], *, fmt: str = "newc", pad_to: int = 512, ino_base: int = 1) -> bytes:
    """A newc (070701) or crc (070702) archive with TRAILER!!!, NUL-padded like GNU cpio."""
    magic = {"newc": b"070701", "crc": b"070702"}[fmt]
    out = bytearray()
    for ino, entry in enumerate([*entries, Entry("TRAILER!!!", mode=0)], start=ino_base):
        name = entry.name.encode() if isinstance(entry.name, str) else entry.name
        check = sum(entry.data) & 0xFFFFFFFF if fmt == "crc" else 0
        nlink = 2 if (entry.mode & 0o170000) == 0o040000 else 1
        fields = (ino, entry.mode, 0, 0, nlink, 0, len(entry.data), 0, 0, 0, 0, len(name) + 1, check)
        out += magic + b"".join(b"%08X" % v for v in fields) + name + b"\0"
        out += b"\0" * (-len(out) % 4)
        out += entry.data + b"\0" * (-len(entry.data) % 4)
    if pad_to:
        out += b"\0" * (-len(out) % pad_to)
    return bytes(out)


def compress(data: bytes, fmt: str) -> bytes:
    """Compress with the real command-line tool (as mkinitramfs/dracut would)."""
    require(COMPRESSORS[fmt][0])
    return run(COMPRESSORS[fmt], data=data)


def decompress(data: bytes, fmt: str) -> bytes:
    require(DECOMPRESSORS[fmt][0])
    return run(DECOMPRESSORS[fmt], data=data)


def tree_entries(n_dirs: int = 3, files_per_dir: int = 4, *, kernel: str = "6.1.0-99-amd64") -> list[Entry]:
    """A small tree shaped like an initramfs: dirs, modules, odd name lengths, a symlink."""
    entries = [Entry(".", mode=0o040755), Entry("usr", mode=0o040755), Entry("usr/lib", mode=0o040755)]
    base = f"usr/lib/modules/{kernel}/kernel"
    entries += [Entry("usr/lib/modules", mode=0o040755), Entry(f"usr/lib/modules/{kernel}", mode=0o040755)]
    entries.append(Entry(base, mode=0o040755))
    for d in range(n_dirs):
        entries.append(Entry(f"{base}/d{d}", mode=0o040755))
        for f in range(files_per_dir):
            stem = "m" * (1 + (d * files_per_dir + f) % 7) + f"-{d}_{f}"  # every name-length residue
            entries.append(Entry(f"{base}/d{d}/{stem}.ko", data=bytes(range(256)) * (f + d) + b"x" * f))
    entries.append(Entry("bin", data=b"usr/bin", mode=0o120777))
    return entries
