"""The series budget (docs/performance.md, "Fleet scale"): what one host costs a Prometheus.

A fleet's TSDB grows with hosts × series per host, so the number a host serves is a budget, not
an accident.  Every example host (the exporter's real output on the trees tests/example_hosts.py
builds, with its fixed mtimes) must stay within the budget's formula for its shape, and the
typical and worst-case hosts within their fixed ceilings.  A change that adds a per-kernel or per-module metric shows
up here first, with the scope it grew in.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from example_hosts import EXAMPLES
from testkit import metrics_of

# Per-scope ceilings, in series (docs/performance.md has the same table).
PER_HOST = 30            # series without a per-item label (the answer, Secure Boot, boot, exporter)
PER_COLLECTOR = 3        # success, errors, duration
PER_KERNEL = 16          # kernel-scoped metrics, its headers package(s), kernel-level problems
PER_KERNEL_MODULE = 8    # working, signed, signature info, initramfs, early boot, DKMS state, problems
PER_LISTED_ITEM = 12     # packages held/unconfigured/awaiting reboot, loaded OOT modules, keys: at most this many

TYPICAL, TYPICAL_CEILING = "healthy", 150            # 2 kernels × 2 DKMS modules
WORST, WORST_CEILING = "many-problems", 450          # 4 kernels × 9 needed modules, every problem


def budget(kernels: int, kernel_modules: int, collectors: int) -> int:
    """The most series a host of this shape may serve."""
    return (PER_HOST + PER_COLLECTOR * collectors + PER_KERNEL * kernels
            + PER_KERNEL_MODULE * kernel_modules + PER_LISTED_ITEM)


def shape(m: dict) -> tuple[int, int, int, int]:
    """(series, kernels, kernel × needed module pairs, collectors) of one host's output."""
    series = sum(len(v) for v in m.values())
    return (series, len(m["dkms_kernel_info"]), len(m.get("dkms_module_working", [])),
            len(m["dkms_scrape_collector_success"]))


@pytest.fixture(scope="module")
def hosts(tmp_path_factory) -> Path:
    """The example hosts as tests/example_hosts.py builds them.  Not the committed trees: git
    does not keep mtimes, a checkout writes boot/ before usr/, so there every initramfs is older
    than its modules and many-problems gains initramfs_stale series the description lacks."""
    root = tmp_path_factory.mktemp("examples")
    for name, build in EXAMPLES.items():
        build(root / name)
    return root


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_host_within_series_budget(hosts, capsys, name):
    series, kernels, pairs, collectors = shape(metrics_of(hosts / name, capsys))
    assert series <= budget(kernels, pairs, collectors), (
        f"{name}: {series} series > budget {budget(kernels, pairs, collectors)} for {kernels} kernels, "
        f"{pairs} kernel × module pairs, {collectors} collectors: update docs/performance.md's budget "
        "only if the new series are worth it at 10,000 hosts")


@pytest.mark.parametrize(("name", "ceiling"), [(TYPICAL, TYPICAL_CEILING), (WORST, WORST_CEILING)])
def test_typical_and_worst_case_hosts_within_ceiling(hosts, capsys, name, ceiling):
    series, *_ = shape(metrics_of(hosts / name, capsys))
    assert series <= ceiling, f"{name}: {series} series > {ceiling}"


def test_per_module_metrics_scale_with_pairs_not_with_more(hosts, capsys):
    """Series beyond the fixed part grow linearly in kernels and kernel × module pairs: the
    worst-case host's surplus over the typical one is explained by its extra kernels and pairs."""
    small = shape(metrics_of(hosts / TYPICAL, capsys))
    big = shape(metrics_of(hosts / WORST, capsys))
    growth = big[0] - small[0]
    allowed = PER_KERNEL * (big[1] - small[1]) + PER_KERNEL_MODULE * (big[2] - small[2]) + PER_LISTED_ITEM
    assert 0 < growth <= allowed, (growth, allowed)


def _documented_rows() -> dict[str, tuple[int, int, int, int]]:
    """docs/performance.md's series-budget table: name -> (kernels, pairs, series, budget), from
    rows like ``| `healthy` (typical ...) | 2 | 4 | 114 | 139 | 150 |``."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "performance.md").read_text()
    section = text.split("### Series budget", 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0].startswith("`") and all(c.isdigit() for c in cells[1:5]):
            rows[cells[0].split("`")[1]] = tuple(int(c) for c in cells[1:5])
    return rows


def test_the_documented_budget_table_is_the_example_hosts_output(hosts, capsys, tmp_path):
    """The table SREs size their Prometheus by is measured, not remembered: one row per example
    host with the kernels, pairs and series its output has and the formula's budget.  As
    deployed, with a persistent cache (its counters are series too), a new one per host."""
    documented = _documented_rows()
    assert set(documented) == set(EXAMPLES), sorted(documented)
    for name, row in documented.items():
        series, kernels, pairs, collectors = shape(metrics_of(hosts / name, capsys, "--cache.dir",
                                                              str(tmp_path / name)))
        assert row == (kernels, pairs, series, budget(kernels, pairs, collectors)), (name, row)
