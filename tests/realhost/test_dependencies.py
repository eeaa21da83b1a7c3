"""dependency_missing against kmod on the real Debian host: the in-tree dependency of a DKMS
module (v4l2loopback needs videodev, videodev needs mc) deleted for the newest kernel.

Each case is a hard-linked copy of the `healthy` scenario tree (cp -al: seconds, no extra disk)
with one file removed, then what the real tools say there: `modprobe --show-depends -S K -d ROOT`
(which dependency chain modprobe would insert, and the dependency line it cannot use) and
`depmod -n -e -E Module.symvers` (the symbols nobody present exports).  The exporter's verdict on
the same tree must name exactly the modules the tools show missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from testkit import require_tool

from exporter.formats.symvers import module_name_of, parse_module_symvers

from .conftest import REPO, RealHost

pytestmark = pytest.mark.realhost

VIDEODEV = "kernel/drivers/media/v4l2-core/videodev.ko"


def copy_tree(host: RealHost, scenario: str, dest: Path) -> Path:
    """A hard-linked copy of a scenario's tree (a copy when dest is on another file system);
    the files a test changes are unlinked or rewritten, never written through a link."""
    src = host.tree(scenario)
    same_fs = os.stat(src).st_dev == os.stat(dest.parent).st_dev
    subprocess.run(["cp", "-al" if same_fs else "-a", str(src), str(dest)], check=True)
    return dest


def depmod(root: Path, kernel: str) -> None:
    """Run the real depmod in the copy, after giving it its own copies of the index files."""
    base = root / "lib/modules" / kernel
    for index in base.glob("modules.*"):
        data = index.read_bytes()
        index.unlink()
        index.write_bytes(data)
    subprocess.run([require_tool("depmod"), "-b", str(root), kernel], check=True, capture_output=True)


def show_depends(root: Path, kernel: str, module: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("modprobe"), "--show-depends", "-S", kernel, "-d", str(root), module],
                          capture_output=True, text=True, check=False)


def unknown_symbols(root: Path, kernel: str, file: str) -> set[str]:
    """`depmod -n -e -E Module.symvers`: the symbols of one module file no present module exports."""
    p = subprocess.run([require_tool("depmod"), "-n", "-e", "-E",
                        str(root / f"usr/src/linux-headers-{kernel}/Module.symvers"), "-b", str(root), kernel],
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    pattern = re.compile(rf"depmod: WARNING: {re.escape(str(root))}/lib/modules/{re.escape(kernel)}/"
                         rf"{re.escape(file)} needs unknown symbol (\S+)")
    return {m.group(1) for m in pattern.finditer(p.stderr)}


def check_json(root: Path, kernel: str | None = None) -> dict:
    """`check --json` (the boot targets, or ``kernel``)."""
    p = subprocess.run([sys.executable, "-m", "exporter", "check", "--json", "--path.rootfs", str(root),
                        *(["--kernel", kernel] if kernel else [])],
                       cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode in (0, 1, 2), p.stderr[-2000:]
    return json.loads(p.stdout)


def problems_of(report: dict, kernel: str, module: str) -> list[dict]:
    (k,) = [k for k in report["kernels"] if k["kernel"] == kernel]
    return [p for m in k["modules"] if m["module"] == module for p in m["problems"]]


def missing_named(problem: dict) -> set[str]:
    """The module names the exporter's dependency_missing detail says K lacks."""
    return set(re.findall(r"(?:needs |; )(\w+) \(", problem["detail"]))


@pytest.fixture
def new_kernel(realhost: RealHost) -> str:
    return realhost.env["NEW_KERNEL"]


def test_intact_tree_agrees_with_modprobe(realhost: RealHost, new_kernel: str, tmp_path: Path) -> None:
    root = copy_tree(realhost, "healthy", tmp_path / "tree")
    p = show_depends(root, new_kernel, "v4l2loopback")
    assert p.returncode == 0 and "videodev.ko" in p.stdout and not p.stderr, p.stderr
    assert not [x for x in problems_of(check_json(root), new_kernel, "v4l2loopback")
                if x["reason"] == "dependency_missing"]


def test_dependency_deleted_after_depmod(realhost: RealHost, new_kernel: str, tmp_path: Path) -> None:
    """modules.dep still names videodev.ko: modprobe cannot use the dependency line (it would
    insert v4l2loopback alone, and the kernel would answer "Unknown symbol")."""
    root = copy_tree(realhost, "healthy", tmp_path / "tree")
    (root / "lib/modules" / new_kernel / VIDEODEV).unlink()
    p = show_depends(root, new_kernel, "v4l2loopback")
    assert f"{VIDEODEV} error=No such file or directory" in p.stderr, p.stderr
    assert "videodev.ko" not in p.stdout and "v4l2loopback.ko" in p.stdout
    found = problems_of(check_json(root), new_kernel, "v4l2loopback")
    (dep,) = [x for x in found if x["reason"] == "dependency_missing"]
    assert missing_named(dep) == {"videodev"}, dep
    assert dep["fix"] == f"apt-get install --reinstall linux-image-{new_kernel}"


def test_dependency_deleted_and_depmod_rerun(realhost: RealHost, new_kernel: str, tmp_path: Path) -> None:
    """depmod ran without videodev.ko (as on Ubuntu without linux-modules-extra-K): modules.dep
    lists no dependency, modprobe inserts v4l2loopback alone, depmod -e names the symbols nobody
    exports.  The exporter names the modules K's Module.symvers says export them."""
    root = copy_tree(realhost, "healthy", tmp_path / "tree")
    (root / "lib/modules" / new_kernel / VIDEODEV).unlink()
    depmod(root, new_kernel)
    p = show_depends(root, new_kernel, "v4l2loopback")
    assert p.returncode == 0 and p.stdout.split() == [
        "insmod", f"{root}/lib/modules/{new_kernel}/updates/dkms/v4l2loopback.ko"], p.stdout
    unknown = unknown_symbols(root, new_kernel, "updates/dkms/v4l2loopback.ko")
    assert unknown, "depmod -e names no unknown symbol: the case did not happen"
    exports = parse_module_symvers(
        (root / f"usr/src/linux-headers-{new_kernel}/Module.symvers").read_text())
    owners = {module_name_of(exports[s].module) for s in unknown}
    found = problems_of(check_json(root), new_kernel, "v4l2loopback")
    (dep,) = [x for x in found if x["reason"] == "dependency_missing"]
    assert missing_named(dep) == owners == {"videodev"}, (dep, owners)
    assert not [x for x in found if x["reason"] == "unknown_symbol"], found


# --- loaded_module_missing --------------------------------------------------------------------

LOADED = ("ahci", "videodev", "mc", "8250", "e1000e")   # in-tree; 8250 is built into Debian's kernel


def proc_modules(names: tuple[str, ...]) -> str:
    """/proc/modules lines as the kernel prints them (no taint: in-tree, signed by the build key)."""
    return "".join(f"{n} 16384 0 - Live 0xffffffffc0000000\n" for n in names)


def modprobe_lacks(root: Path, kernel: str, module: str) -> bool:
    """What modprobe makes of `modprobe M` for K: "not found in directory" (K's index has no M),
    or the insmod line it would run for M itself names a file that is not there."""
    p = show_depends(root, kernel, module)
    if p.returncode != 0:
        assert "not found in directory" in p.stderr, p.stderr
        return True
    if p.stdout.strip() == f"builtin {module}":
        return False
    last = p.stdout.strip().splitlines()[-1].split()
    assert last[0] == "insmod", p.stdout
    return not Path(last[1]).exists()


def test_loaded_modules_the_kernels_lack_agree_with_modprobe(realhost: RealHost, new_kernel: str,
                                                             tmp_path: Path) -> None:
    """The old kernel lost ahci.ko (in the running kernel's initramfs: an error) and mc.ko (listed
    in modules-load.d: an error) after depmod ran; the new one lost videodev.ko and depmod ran
    again (loaded by hand: a warning).  Per kernel, the modules the exporter says are missing are
    the ones modprobe cannot load, with the severity the rule gives."""
    old = realhost.env["OLD_KERNEL"]
    root = copy_tree(realhost, "healthy", tmp_path / "tree")
    (root / "proc/modules").write_text(proc_modules(LOADED))
    (root / "etc/modules-load.d").mkdir(exist_ok=True)
    (root / "etc/modules-load.d/media.conf").write_text("# loaded at every boot\nmc\n")
    for rel in ("kernel/drivers/ata/ahci.ko", "kernel/drivers/media/mc/mc.ko"):
        (root / "lib/modules" / old / rel).unlink()
    (root / "lib/modules" / new_kernel / VIDEODEV).unlink()
    depmod(root, new_kernel)
    initramfs = (realhost.root / "scenarios/healthy/ref/lsinitramfs" / f"{new_kernel}.txt").read_text()
    assert "/kernel/drivers/ata/ahci.ko" in initramfs, "the running kernel's initramfs lacks ahci: case moot"
    said = {}
    for kernel in (old, new_kernel):
        (k,) = [k for k in check_json(root, kernel)["kernels"] if k["kernel"] == kernel]
        said[kernel] = {p["detail"].split(" ", 1)[0]: p["severity"] for p in k["problems"]
                        if p["reason"] == "loaded_module_missing"}
        lacks = {m for m in LOADED if modprobe_lacks(root, kernel, m)}
        assert set(said[kernel]) == lacks, (kernel, said[kernel], lacks)
    assert said == {old: {"ahci": "error", "mc": "error"}, new_kernel: {"videodev": "warning"}}
