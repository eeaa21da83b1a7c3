"""The booted kernel on the heavy-weight and dependency trees (issue: kernel-exact dependencies):

- ZFS from the initramfs: the heavy `zfs` tree's newest kernel booted with its own initramfs,
  whose modprobe loads zfs as zfs-initramfs' boot script does (`modprobe zfs`, here through
  /conf/modules, which the oracle init runs as initramfs-tools' load_modules does).  The
  exporter says the nine ZFS modules are needed early and are in that image; the kernel must
  load zfs (and spl ... before it) from the image, the same builds as the tree's.
- "Unknown symbol": the derived `dependency_deleted` tree (healthy, videodev.ko deleted for the
  newest kernel and depmod rerun).  The exporter says dependency_missing naming videodev; the
  kernel must refuse v4l2loopback with ENOENT and "Unknown symbol".

Each case boots once here (about 20-60 s under TCG); the full oracle stage judges
`dependency_deleted` for every kernel too (scenarios.DERIVED).
"""

from __future__ import annotations

import errno
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from testkit import slow_artifact

from . import artifacts
from .harness import BootResult, BootSpec, build_payload, combined_initrd, direct_argv, pin_mtimes, result_of, run_recorded
from .judge import Row, judge_kernel
from .scenarios import SharedLock, boot_spec, derived_tree, ensure_realhost, exporter_check

pytestmark = [pytest.mark.oracle, pytest.mark.slow]

ZFS_MODULES = ("spl", "znvpair", "zunicode", "zcommon", "zavl", "icp", "zlua", "zzstd", "zfs")


@dataclass
class Judged:
    doc: dict
    result: BootResult
    rows: list[Row]


def conf_modules_overlay(tree: Path, work: Path, extra: str) -> Path:
    """A cpio appended after the payload: /conf/modules as mkinitramfs wrote it from the tree's
    /etc/initramfs-tools/modules, plus ``extra`` (the kernel's unpacker overwrites the file)."""
    stage = work / "overlay"
    (stage / "conf").mkdir(parents=True, exist_ok=True)
    listed = [line.strip() for line in (tree / "etc/initramfs-tools/modules").read_text().splitlines()
              if line.strip() and not line.lstrip().startswith("#")]
    (stage / "conf/modules").write_text("".join(f"{m}\n" for m in [*listed, extra]))
    pin_mtimes(stage)   # the same bytes every run: a recorded boot replays (records.py)
    out = work / "overlay.cpio"
    with open(out, "wb") as f:
        subprocess.run([artifacts.need("cpio", "cpio"), "-o", "-H", "newc", "-R", "0:0", "--reproducible", "--quiet"],
                       cwd=stage, input=b"conf\nconf/modules", stdout=f, check=True)
    return out


def boot_with(spec: BootSpec, work: Path, overlay: Path | None = None) -> BootResult:
    """harness.boot for a direct boot, with an optional cpio after the oracle's payload (replayed
    from the record of identical bytes, as harness.boot is)."""
    work.mkdir(parents=True, exist_ok=True)
    initrd = combined_initrd(spec.initrd, build_payload(spec, work), work / "initrd.img")
    if overlay is not None:
        initrd = combined_initrd(initrd, overlay, work / "initrd-overlay.img")
    console = work / "console.log"
    console.unlink(missing_ok=True)
    return result_of(spec, run_recorded(direct_argv(spec, initrd, console), console, spec.timeout))


@pytest.fixture(scope="module")
def zfs_boot(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    slow_artifact("a QEMU boot of the heavy ZFS tree")
    from realhost.heavyhost import ensure_heavy

    heavy = ensure_heavy(echo=False)
    tree, kernel = heavy.tree("zfs"), heavy.env["NEW_KERNEL"]
    doc = exporter_check(tree, kernel)
    spec = boot_spec(tree, kernel, doc)
    assert spec.secure_boot is None
    work = tmp_path_factory.mktemp("oracle-zfs")
    result = boot_with(spec, work, conf_modules_overlay(tree, work, "zfs"))
    return Judged(doc, result, judge_kernel(kernel, doc, result))


@pytest.fixture(scope="module")
def dependency_boot(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    slow_artifact("a QEMU boot of the dependency_deleted tree")
    realhost = ensure_realhost()
    with SharedLock(realhost):
        env = dict(line.split("=", 1) for line in (realhost / "host.env").read_text().splitlines() if "=" in line)
        tree, kernel = derived_tree(realhost, "dependency_deleted"), env["NEW_KERNEL"]
        doc = exporter_check(tree, kernel)
        spec = boot_spec(tree, kernel, doc)
        result = boot_with(spec, tmp_path_factory.mktemp("oracle-dependency"))
    return Judged(doc, result, judge_kernel(kernel, doc, result))


def table(j: Judged) -> str:
    return "\n".join(r.line() for r in j.rows) + "\n\n" + j.result.describe()


def modules_of(doc: dict) -> dict[str, dict]:
    (k,) = doc["kernels"]
    return {m["module"]: m for m in k["modules"]}


def test_every_zfs_verdict_matches_the_booted_kernel(zfs_boot: Judged) -> None:
    assert zfs_boot.result.status == "ok", zfs_boot.result.describe()
    assert all(r.agree for r in zfs_boot.rows), table(zfs_boot)


def test_zfs_loads_from_the_initramfs_the_exporter_says_holds_it(zfs_boot: Judged) -> None:
    mods = modules_of(zfs_boot.doc)
    for name in ZFS_MODULES:
        assert mods[name]["working"] and mods[name]["early_boot"] and mods[name]["in_initramfs"], mods[name]
    view = zfs_boot.result.view
    assert ("zfs", 0) in view.conf_modules, (view.conf_modules, table(zfs_boot))
    for name in ZFS_MODULES:
        m = view.module(name)
        assert m.in_initramfs and m.early_loaded, (name, m)
        assert m.initramfs_sha256 == m.tree_sha256 not in (None, "none"), (name, m)


def test_a_deleted_in_tree_dependency_is_refused_with_unknown_symbol(dependency_boot: Judged) -> None:
    assert dependency_boot.result.status == "ok", dependency_boot.result.describe()
    assert all(r.agree for r in dependency_boot.rows), table(dependency_boot)
    loopback = modules_of(dependency_boot.doc)["v4l2loopback"]
    (dep,) = [p for p in loopback["problems"] if p["reason"] == "dependency_missing"]
    assert re.search(r"needs videodev \(", dep["detail"]), dep
    m = dependency_boot.result.view.module("v4l2loopback")
    assert not m.loaded and m.errno == errno.ENOENT, m
    said = [line for line in dependency_boot.result.view.dmesg if "v4l2loopback: Unknown symbol" in line]
    assert said, dependency_boot.result.view.dmesg
    print("kernel:", said[0])
