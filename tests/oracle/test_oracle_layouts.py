"""The kernel as the oracle on SUSE- and Arch-layout trees (tests/oracle/layouts.py): every kernel
of each tree boots under QEMU from the files its boot loader names (SUSE: /boot/vmlinuz-K +
dracut's /boot/initrd-K; Arch: /boot/vmlinuz-<pkgbase> + /boot/initramfs-<pkgbase>.img), and the
exporter's verdict per module must be what the kernel did (judge.py, as for the Debian and RPM
trees).  Boots go through harness.boot; nothing here changes how a boot is made."""

from __future__ import annotations

import errno
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from testkit import slow_artifact

from . import artifacts
from .harness import BootResult, boot, extra_payload_path
from .judge import Row, judge_kernel
from .layouts import ARCH_SCENARIO, SUSE_SCENARIOS, LayoutTree, arch_tree, pkgbases, suse_trees
from .scenarios import SharedLock, boot_spec, ensure_realhost, exporter_check, os_cpu_count

pytestmark = [pytest.mark.oracle, pytest.mark.slow]


@dataclass
class LayoutCase:
    scenario: str
    kernel: str
    tree: Path
    doc: dict
    result: BootResult | None = None
    rows: list[Row] = field(default_factory=list)


@dataclass
class LayoutRun:
    cases: list[LayoutCase]
    seconds: float
    boots: int

    def case(self, scenario: str, kernel: str) -> LayoutCase:
        return next(c for c in self.cases if c.scenario == scenario and c.kernel == kernel)

    def report(self) -> str:
        lines = [f"layout oracle: {len(self.cases)} cases, {self.boots} boots, {self.seconds:.0f}s wall"]
        for c in self.cases:
            r = c.result
            lines.append(f"== {c.scenario} / {c.kernel}: {r.status} in {r.seconds:.1f}s (init at {r.view.began_at}s)")
            lines += ["   " + row.line() for row in c.rows]
        return "\n".join(lines)


def _spec(layout: LayoutTree, kernel: str, doc: dict):
    """The oracle's usual spec (plan, weak-modules candidates), with the files this layout boots."""
    vmlinuz, initrd = layout.boot_files[kernel]
    return replace(boot_spec(layout.tree, kernel, doc, capture=False), vmlinuz=vmlinuz, initrd=initrd)


def _run(work: Path) -> LayoutRun:
    from rhelhost.build import ensure_rhelhost
    realhost = ensure_realhost()
    rhelhost = ensure_rhelhost()
    with SharedLock(realhost), SharedLock(rhelhost):
        start = time.monotonic()
        layouts = [*suse_trees(rhelhost), arch_tree(realhost)]
        todo = [(lt, k) for lt in layouts for k in lt.boot_files]
        workers = max(1, min(2, os_cpu_count()))
        with ThreadPoolExecutor(workers) as pool:
            docs = list(pool.map(lambda item: exporter_check(item[0].tree, item[1]), todo))
        specs = [_spec(lt, k, doc) for (lt, k), doc in zip(todo, docs, strict=True)]
        unique = {s.key(): s for s in specs}
        with ThreadPoolExecutor(workers) as pool:
            futures = {key: pool.submit(boot, spec, work / key) for key, spec in unique.items()}
            results = {key: f.result() for key, f in futures.items()}
        run = LayoutRun([], time.monotonic() - start, len(unique))
    for (lt, k), doc, spec in zip(todo, docs, specs, strict=True):
        case = LayoutCase(lt.scenario, k, lt.tree, doc, results[spec.key()])
        case.rows = judge_kernel(k, doc, case.result)
        run.cases.append(case)
    (artifacts.oracle_cache() / "last-layouts-report.txt").write_text(run.report() + "\n")
    return run


@pytest.fixture(scope="module")
def layout_run(tmp_path_factory: pytest.TempPathFactory) -> LayoutRun:
    slow_artifact("QEMU boots of the SUSE- and Arch-layout trees")
    try:
        return _run(tmp_path_factory.mktemp("oracle-layouts"))
    except artifacts.MissingTool as e:
        pytest.fail(str(e), pytrace=False)
    except RuntimeError as e:
        pytest.fail(f"the layout oracle could not run: {e}", pytrace=False)


@pytest.mark.parametrize("scenario", [*SUSE_SCENARIOS, ARCH_SCENARIO])
def test_exporter_verdicts_match_the_booted_kernel(layout_run: LayoutRun, scenario: str) -> None:
    mine = [c for c in layout_run.cases if c.scenario == scenario]
    assert len(mine) == 2, [c.kernel for c in mine]
    table = "\n".join(row.line() for c in mine for row in c.rows)
    bad = [c.result.describe() for c in mine if not all(r.agree for r in c.rows)]
    assert all(r.agree for c in mine for r in c.rows), f"exporter and kernel disagree in {scenario}:\n{table}\n\n" + \
        "\n\n".join(bad)
    assert all(c.result.status == "ok" for c in mine), "\n\n".join(c.result.describe() for c in mine)


def _kernels(layout_run: LayoutRun, scenario: str) -> list[str]:
    return sorted({c.kernel for c in layout_run.cases if c.scenario == scenario},
                  key=lambda k: int(k.split("-")[1]))


def _reasons(case: LayoutCase, module: str) -> set[str]:
    return {p["reason"] for k in case.doc["kernels"] if k["kernel"] == case.kernel for m in k["modules"]
            if m["module"] == module for p in m["problems"]}


def test_suse_kmp_loads_through_its_weak_updates_link(layout_run: LayoutRun) -> None:
    """suse_kmp_fits: the KMP built for 56 sits in 56's updates/ and, linked by weak-modules2's rule,
    in the newer kernel's weak-updates/: the exporter calls both working and both kernels load it."""
    old, new = _kernels(layout_run, "suse_kmp_fits")
    for k in (old, new):
        case = layout_run.case("suse_kmp_fits", k)
        m = case.result.view.module("kabidemo")
        assert m.loaded, (k, m, case.result.describe())
        assert not _reasons(case, "kabidemo"), case.doc
    weak = layout_run.case("suse_kmp_fits", new)
    assert "weak-updates" in weak.result.view.module("kabidemo").loads[-1][0]


def test_suse_kmp_without_its_link_is_not_found_though_it_fits(layout_run: LayoutRun) -> None:
    """suse_kmp_unlinked: the newer kernel cannot find kabidemo (weak_update_missing), and 56's
    file, loaded into it as it is, is accepted: weak-modules2 --add-kernel would link it."""
    new = _kernels(layout_run, "suse_kmp_unlinked")[-1]
    case = layout_run.case("suse_kmp_unlinked", new)
    assert _reasons(case, "kabidemo") == {"weak_update_missing"}, case.doc
    assert case.result.view.module("kabidemo").resolved is False
    (candidate,) = case.result.spec.extra_files
    assert case.result.view.extra[extra_payload_path(candidate)] is None, case.result.describe()


def test_suse_kmp_that_does_not_fit_is_refused_for_its_symbol_versions(layout_run: LayoutRun) -> None:
    """suse_kmp_break: 54's CRCs disagree with the KMP built for 56; the exporter says kabi_mismatch
    and the kernel refuses 56's file with "disagrees about version of symbol"."""
    old = _kernels(layout_run, "suse_kmp_break")[0]
    case = layout_run.case("suse_kmp_break", old)
    assert _reasons(case, "kabidemo") == {"kabi_mismatch"}, case.doc
    (candidate,) = case.result.spec.extra_files
    assert case.result.view.extra[extra_payload_path(candidate)] in (errno.ENOEXEC, errno.EINVAL), \
        case.result.describe()
    assert any("kabidemo: disagrees about version of symbol" in line for line in case.result.view.dmesg), \
        case.result.view.dmesg


def test_arch_boot_files_are_named_after_pkgbase(layout_run: LayoutRun) -> None:
    """Each release booted from /boot/vmlinuz-<pkgbase>: the exporter maps systemd-boot's
    `linux /vmlinuz-linux` to the release whose pkgbase is `linux`, and that kernel ran."""
    bases = {c.kernel: (c.tree / f"usr/lib/modules/{c.kernel}/pkgbase").read_text().strip()
             for c in layout_run.cases if c.scenario == ARCH_SCENARIO}
    assert sorted(bases.values()) == ["linux", "linux-lts"], bases
    for k, base in bases.items():
        case = layout_run.case(ARCH_SCENARIO, k)
        assert case.result.spec.vmlinuz.name == f"vmlinuz-{base}"
        assert case.result.view.release == k, case.result.describe()
    linux = next(k for k, b in bases.items() if b == "linux")
    doc = layout_run.case(ARCH_SCENARIO, linux).doc
    assert doc["next_boot"]["kernel"] == linux, doc["next_boot"]


def test_arch_early_module_missing_from_the_next_initramfs(layout_run: LayoutRun) -> None:
    """The running linux-lts loads v4l2loopback from its zstd initramfs; linux's image was made
    without it: missing_from_initramfs, fix `mkinitcpio -P`, and the kernel loads it only from
    the root file system; the DKMS builds in updates/dkms load in both."""
    lts, linux = (next(c for c in layout_run.cases if c.scenario == ARCH_SCENARIO
                       and (c.tree / f"usr/lib/modules/{c.kernel}/pkgbase").read_text().strip() == b)
                  for b in ("linux-lts", "linux"))
    early = lts.result.view.module("v4l2loopback")
    assert early.in_initramfs and early.loaded, early
    assert _reasons(linux, "v4l2loopback") == {"missing_from_initramfs"}, linux.doc
    fixes = {p.get("fix", "") for k in linux.doc["kernels"] for m in k["modules"] for p in m["problems"]}
    assert "mkinitcpio -P" in fixes, fixes
    m = linux.result.view.module("v4l2loopback")
    assert m.in_initramfs is False and not m.early_loaded and m.loaded, m
    for case in (lts, linux):
        acpi = case.result.view.module("acpi_call")
        assert acpi.loaded and "/updates/dkms/" in acpi.loads[-1][0], acpi
    assert pkgbases(ensure_realhost())   # the releases the builder gave each pkgbase
