"""The series budget (docs/performance.md, "Fleet scale"): what one host costs a Prometheus.

A fleet's TSDB grows with hosts × series per host, so the number a host serves is a budget, not
an accident.  Every example host (examples/hosts, the exporter's real output on the committed
trees) must stay within the budget's formula for its shape, and the typical and worst-case
hosts within their fixed ceilings.  A change that adds a per-kernel or per-module metric shows
up here first, with the scope it grew in.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit import metrics_of

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "hosts"

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


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.iterdir()))
def test_example_host_within_series_budget(capsys, name):
    series, kernels, pairs, collectors = shape(metrics_of(EXAMPLES / name, capsys))
    assert series <= budget(kernels, pairs, collectors), (
        f"{name}: {series} series > budget {budget(kernels, pairs, collectors)} for {kernels} kernels, "
        f"{pairs} kernel × module pairs, {collectors} collectors: update docs/performance.md's budget "
        "only if the new series are worth it at 10,000 hosts")


@pytest.mark.parametrize(("name", "ceiling"), [(TYPICAL, TYPICAL_CEILING), (WORST, WORST_CEILING)])
def test_typical_and_worst_case_hosts_within_ceiling(capsys, name, ceiling):
    series, *_ = shape(metrics_of(EXAMPLES / name, capsys))
    assert series <= ceiling, f"{name}: {series} series > {ceiling}"


def test_per_module_metrics_scale_with_pairs_not_with_more(capsys):
    """Series beyond the fixed part grow linearly in kernels and kernel × module pairs: the
    worst-case host's surplus over the typical one is explained by its extra kernels and pairs."""
    small = shape(metrics_of(EXAMPLES / TYPICAL, capsys))
    big = shape(metrics_of(EXAMPLES / WORST, capsys))
    growth = big[0] - small[0]
    allowed = PER_KERNEL * (big[1] - small[1]) + PER_KERNEL_MODULE * (big[2] - small[2]) + PER_LISTED_ITEM
    assert 0 < growth <= allowed, (growth, allowed)
