"""The exporter against the real tools on Debian's heavy-weight DKMS packages (heavy.sh):
ZFS (zfs-dkms + zfs-initramfs: nine modules from one DKMS package, spl first, in the running
kernel's initramfs) and NVIDIA (nvidia-kernel-dkms: five modules, nvidia-current.ko tens of MiB).

Every fact kind of test_differential.py is compared on both trees (dkms status, modinfo,
lsinitramfs, modprobe, depmod -e ...), then what only these packages show: the exporter's
dependency closure of each DKMS module against `modprobe --show-depends`, a deleted in-tree
dependency (drm_kms_helper) and a deleted DKMS dependency (spl) against modprobe and depmod, and
the exporter's peak memory with and without nvidia-current.ko.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from testkit import slow_artifact

from exporter.formats.symvers import module_name_of, parse_module_symvers

from .conftest import REPO, Exporter, RealHost
from .facts import FACT_KINDS, describe_difference, metric_lines, metric_name
from .heavyhost import HEAVY_SCENARIOS, HeavyBuildError, ensure_heavy
from .reference import load_reference, module_name
from .test_dependencies import (
    check_json,
    copy_tree,
    depmod,
    ko,
    missing_named,
    problems_of,
    show_depends,
    unknown_symbols,
)
from .test_differential import TOOL_OF, both_sides, tool_output

pytestmark = pytest.mark.realhost

# The modules DKMS builds from each package (their dkms.conf BUILT_MODULE_NAME / DEST_MODULE_NAME).
ZFS_MODULES = frozenset({"spl", "znvpair", "zunicode", "zcommon", "zavl", "icp", "zlua", "zzstd", "zfs"})
NVIDIA_MODULES = frozenset({"nvidia_current", "nvidia_current_modeset", "nvidia_current_drm",
                            "nvidia_current_uvm", "nvidia_current_peermem"})
MODULES_OF = {"zfs": ZFS_MODULES, "nvidia": ZFS_MODULES | NVIDIA_MODULES}
DRM_KMS_HELPER = "kernel/drivers/gpu/drm/drm_kms_helper.ko"
# `check` exits 0: every module is installed for the newest kernel (the running one and the boot
# target), ZFS's in its initramfs; the older kernel has no headers and no build, but is no target.
EXPECTED_CHECK = {"zfs": 0, "nvidia": 0}
# The peak-memory budget of reading nvidia-current.ko and the other four: "a few MiB".
RSS_GROWTH_LIMIT = 8 * 2**20


@pytest.fixture(scope="session")
def heavy() -> RealHost:
    slow_artifact("the heavy-weight real-host build (tests/realhost/heavy.sh: ZFS and NVIDIA DKMS)")
    try:
        return ensure_heavy()
    except HeavyBuildError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def heavy_exporter(heavy: RealHost) -> Exporter:
    runner = Exporter(heavy)
    runner.prefetch(HEAVY_SCENARIOS)
    return runner


@pytest.fixture
def new_kernel(heavy: RealHost) -> str:
    return heavy.env["NEW_KERNEL"]


@pytest.mark.parametrize("kind", FACT_KINDS)
@pytest.mark.parametrize("scenario", HEAVY_SCENARIOS)
def test_exporter_agrees_with_real_tools(heavy: RealHost, heavy_exporter: Exporter, scenario: str, kind: str) -> None:
    mine, theirs, metrics = both_sides(heavy, heavy_exporter, scenario)
    got, want = getattr(mine, kind), getattr(theirs, kind)
    assert got is not None, f"{kind}: the exporter exposes no {metric_name(kind)}"
    if got != want:
        pytest.fail(describe_difference(f"{scenario}: {kind} vs {TOOL_OF[kind]}", got, want)
                    + f"\n  exporter lines:\n{metric_lines(metrics, kind)[:4000]}"
                    + f"\n  real tool output:\n{tool_output(heavy.reference(scenario), kind, got | want)[:4000]}",
                    pytrace=False)


@pytest.mark.parametrize("scenario", HEAVY_SCENARIOS)
def test_check_verdict(heavy_exporter: Exporter, scenario: str) -> None:
    heavy_exporter.metrics(scenario)
    run = heavy_exporter.run(scenario, "check")
    assert run.returncode == EXPECTED_CHECK[scenario], run.describe()


@pytest.mark.parametrize("scenario", HEAVY_SCENARIOS)
def test_the_packages_built_what_they_claim(heavy: RealHost, scenario: str, new_kernel: str) -> None:
    """The trees are what heavy.sh says (the real tools alone): every module of the packages
    installed for NEW only; ZFS in NEW's initramfs; nvidia-current.ko tens of MiB."""
    ref = heavy.reference(scenario)
    on_disk = {(f.name, f.kernel) for f in ref.module_files}
    assert on_disk == {(m, new_kernel) for m in MODULES_OF[scenario] | {"v4l2loopback", "acpi_call"}}
    image = ref.initramfs[new_kernel]
    assert ZFS_MODULES <= set(image), sorted(image)
    assert not NVIDIA_MODULES & set(image)
    if scenario == "nvidia":
        size = (ref.tree / "lib/modules" / new_kernel / ko(ref.tree, new_kernel, "updates/dkms/nvidia-current.ko")).stat().st_size
        assert size > 20 * 2**20, size


def modprobe_chain(ref, kernel: str, module: str) -> list[str]:
    """Module names in the order `modprobe -S K --show-depends` inserts them (the module last)."""
    out = ref.raw[f"modprobe/{kernel}-{module}.txt"]
    return [module_name(line.split()[1]) for line in out.splitlines() if line.startswith("insmod ")]


@pytest.mark.parametrize("scenario", HEAVY_SCENARIOS)
def test_dependencies_agree_with_modprobe(heavy: RealHost, scenario: str, new_kernel: str) -> None:
    """For each DKMS module of NEW, the modules the exporter says it needs first are the ones
    modprobe --show-depends inserts before it (spl before zfs; nvidia-current before
    nvidia-current-modeset before nvidia-current-drm, with drm_kms_helper and drm)."""
    from testkit import scrape

    from exporter.facts.module import ModuleFacts

    ref = heavy.reference(scenario)
    facts = scrape(heavy.tree(scenario)).facts.get(ModuleFacts).kernels[new_kernel]
    for f in ref.module_files:
        chain = modprobe_chain(ref, new_kernel, f.name)
        assert chain[-1] == f.name, chain
        rel = f.path.split(f"/lib/modules/{new_kernel}/", 1)[1]
        needs = {n.name for n in facts.needs[rel]}
        assert needs == set(chain[:-1]), (f.name, sorted(needs), chain)
        assert not facts.missing_needs(rel), (f.name, facts.missing_needs(rel))
    zfs = modprobe_chain(ref, new_kernel, "zfs")
    assert zfs.index("spl") < zfs.index("znvpair") < zfs.index("zfs"), zfs
    if scenario == "nvidia":
        drm = modprobe_chain(ref, new_kernel, "nvidia_current_drm")
        assert drm.index("nvidia_current") < drm.index("nvidia_current_modeset") < drm.index("nvidia_current_drm")
        assert {"drm", "drm_kms_helper"} <= set(drm), drm


def test_in_tree_dependency_deleted_and_depmod_rerun(heavy: RealHost, new_kernel: str, tmp_path: Path) -> None:
    """drm_kms_helper.ko gone for NEW and depmod run again: modprobe inserts nvidia-current-drm
    without it, depmod -e names symbols nobody exports; the exporter names drm_kms_helper (from
    NEW's Module.symvers) in dependency_missing for nvidia-current-drm, and nothing else breaks."""
    root = copy_tree(heavy, "nvidia", tmp_path / "tree")
    (root / "lib/modules" / new_kernel / ko(root, new_kernel, DRM_KMS_HELPER)).unlink()
    depmod(root, new_kernel)
    drm = ko(root, new_kernel, "updates/dkms/nvidia-current-drm.ko")
    p = show_depends(root, new_kernel, "nvidia-current-drm")
    assert p.returncode == 0 and "drm_kms_helper" not in p.stdout and drm in p.stdout, p.stdout + p.stderr
    unknown = unknown_symbols(root, new_kernel, drm)
    assert unknown, "depmod -e names no unknown symbol: the case did not happen"
    exports = parse_module_symvers((root / f"usr/src/linux-headers-{new_kernel}/Module.symvers").read_text())
    owners = {module_name_of(exports[s].module) for s in unknown}
    report = check_json(root)
    (dep,) = [x for x in problems_of(report, new_kernel, "nvidia_current_drm") if x["reason"] == "dependency_missing"]
    assert missing_named(dep) == owners == {"drm_kms_helper"}, (dep, owners)
    broken = {m["module"] for k in report["kernels"] if k["kernel"] == new_kernel for m in k["modules"]
              if any(x["reason"] == "dependency_missing" for x in m["problems"])}
    # modprobe's view: which DKMS modules of NEW lose drm_kms_helper from their chain
    lose = {m for m in MODULES_OF["nvidia"]
            if "drm_kms_helper" in modprobe_chain(heavy.reference("nvidia"), new_kernel, m)}
    assert broken == lose == {"nvidia_current_drm"}, (broken, lose)


def test_dkms_dependency_deleted(heavy: RealHost, new_kernel: str, tmp_path: Path) -> None:
    """spl.ko (ZFS's own first module) deleted without depmod, as a cleanup script's rm would:
    modprobe zfs stops at spl ("No such file or directory"); the exporter says file_missing for
    spl and dependency_missing naming spl for every ZFS module modprobe would need it for."""
    root = copy_tree(heavy, "zfs", tmp_path / "tree")
    spl = ko(root, new_kernel, "updates/dkms/spl.ko")
    (root / "lib/modules" / new_kernel / spl).unlink()
    needing = set()
    for m in ZFS_MODULES - {"spl"}:
        p = show_depends(root, new_kernel, m)
        if f"{spl} error=No such file or directory" in p.stderr:
            needing.add(m)
    assert "zfs" in needing, needing
    report = check_json(root)
    assert report["verdict"] != "ready"
    reasons = {m["module"]: {x["reason"] for x in m["problems"]} for k in report["kernels"]
               if k["kernel"] == new_kernel for m in k["modules"]}
    assert "file_missing" in reasons["spl"], reasons["spl"]
    said = {m for m, r in reasons.items() if "dependency_missing" in r}
    assert said == needing, (said, needing)
    for m in said:
        (dep,) = [x for x in problems_of(report, new_kernel, m) if x["reason"] == "dependency_missing"]
        assert "spl" in missing_named(dep), dep


def peak_rss(tree: Path) -> int:
    """Peak RSS (bytes) of one `python -m exporter metrics` on a tree, from wait4's rusage."""
    argv = [sys.executable, "-m", "exporter", "--no-cache.dir", "metrics", "--path.rootfs", str(tree)]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    return usage.ru_maxrss * 1024


def test_peak_memory_with_nvidia_grows_by_a_few_mib(heavy: RealHost) -> None:
    """The exporter scraping the nvidia tree against the same tree without nvidia-kernel-dkms
    (zfs): the five NVIDIA modules, nvidia-current.ko tens of MiB, may add a few MiB of peak RSS,
    not the file's size.  Best of three each (the first run warms the page cache)."""
    without = min(peak_rss(heavy.tree("zfs")) for _ in range(3))
    with_nvidia = min(peak_rss(heavy.tree("nvidia")) for _ in range(3))
    growth = with_nvidia - without
    print(f"peak RSS: zfs {without / 2**20:.1f} MiB, nvidia {with_nvidia / 2**20:.1f} MiB, "
          f"growth {growth / 2**20:.1f} MiB")
    assert growth <= RSS_GROWTH_LIMIT, (
        f"peak RSS grows by {growth / 2**20:.1f} MiB with nvidia-kernel-dkms "
        f"({without / 2**20:.1f} -> {with_nvidia / 2**20:.1f} MiB)")
