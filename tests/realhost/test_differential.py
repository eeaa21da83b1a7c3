"""The exporter against the real tools, on every scenario of the real Debian host.

For each scenario tree, the exporter's `metrics` output is turned into facts (facts.py
facts_from_metrics) and compared with the facts the real tools printed inside the same tree
(dkms status, modinfo, lsinitramfs, dpkg --audit, apt-mark showhold, mokutil).  Any difference
fails with both sides.  `check --json` must give the verdict the readiness model
(docs/readiness.md) derives from the real tools' facts, listed in EXPECTED_CHECK.
"""

from __future__ import annotations

import json

import pytest

from .conftest import SCENARIOS, Exporter, RealHost
from .facts import (
    FACT_KINDS,
    NEXT_BOOT_READY,
    Facts,
    FactSet,
    describe_difference,
    facts_from_metrics,
    facts_from_reference,
    metric_lines,
    metric_name,
    next_boot_ready,
)
from .reference import Reference

pytestmark = pytest.mark.realhost

# What each fact kind is compared with, for the failure message.
TOOL_OF = {
    "module_states": "dkms status (one series per line)",
    "module_flags": "dkms status (the (WARNING! ...) notes of a line)",
    "held": "apt-mark showhold",
    "unconfigured": "dpkg --audit",
    "signatures": "modinfo -F signer/sig_key/sig_hashalgo of every DKMS module file",
    "in_initramfs": "lsinitramfs of every kernel's initramfs",
    "secure_boot": "mokutil --sb-state (efivars of the tree)",
    "unregistered": "the /usr/src/*/dkms.conf bash reads, less what dkms status lists",
    "early_boot": "lsinitramfs of the running kernel's initramfs (its DKMS modules load in early boot)",
    "symbol_problems": "depmod -n -e -E Module.symvers K (warnings about DKMS module files)",
    "file_missing": "dkms status (installed for K) against the DKMS module files find lists for K",
    "not_in_depmod": "modprobe -S K --show-depends for every DKMS module file on disk",
    "initramfs_stale": "unmkinitramfs: the image's copy of an early-boot module against the file on disk (sha256)",
    "missing_from_initramfs": "lsinitramfs (running kernel's image has it, K's lacks it) and modprobe (K resolves it)",
}

# The file under ref/ holding each tool's output (in_initramfs: see tool_output).
RAW_OF = {
    "module_states": "dkms-status.txt",
    "module_flags": "dkms-status.txt",
    "held": "apt-mark-showhold.txt",
    "unconfigured": "dpkg-audit.txt",
    "signatures": "modinfo.tsv",
    "secure_boot": "mokutil-sb-state.txt",
    "unregistered": "dkms-sources.tsv",
    "file_missing": "dkms-status.txt",
    "initramfs_stale": "initramfs-copies.tsv",
}

# `check` exit codes (0 ready, 1 not ready, 2 unknown) the readiness model gives each scenario,
# where the running kernel is the newest (6.1.0-NEW) and no bootloader config names another.
EXPECTED_CHECK = {
    "healthy": (0, "both DKMS modules are installed for the newest kernel"),
    "headers_missing": (1, "both modules are registered (AUTOINSTALL) and built for no kernel: not_built"),
    "dkms_uninstalled": (1, "v4l2loopback is built but not installed for the newest kernel"),
    "module_deleted": (1, "DKMS says v4l2loopback is installed for the newest kernel; its file is gone"),
    "initramfs_forced": (0, "the module is installed and in the initramfs it was forced into"),
    "initramfs_dropped": (0, "nothing asks for the module in early boot any more"),
    "signed_sb_off": (0, "without Secure Boot Debian's kernel does not enforce module signatures"),
    "signed_sb_on": (1, "under Secure Boot Debian's kernel enforces signatures (lockdown); acpi_call is unsigned"),
    "held": (0, "holds are host facts, not module problems"),
    "half_configured": (0, "unconfigured packages are host facts, not module problems"),
    "unregistered": (0, "DKMS knows no module, so no kernel needs one (dkms_module_unregistered says why)"),
    "depmod_stale": (1, "v4l2loopback's file for the newest kernel is not in its modules.dep: not_in_depmod"),
    "initramfs_stale": (1, "the early-boot v4l2loopback was rebuilt after the newest kernel's initramfs"),
    "built_for_both": (0, "both modules are installed for both kernels"),
    "stale_build": (0, "the copied module breaks only the older kernel, which is not a boot target"),
    "early_boot_missing": (1, "v4l2loopback loads early on the running kernel; the newest kernel's initramfs lacks it"),
}


def tool_output(ref: Reference, kind: str, facts: FactSet) -> str:
    """The real tool's own output behind a fact kind (for initramfs: the lines naming the modules)."""
    if kind in ("in_initramfs", "early_boot", "missing_from_initramfs"):
        names = {f[0] for f in facts}
        return "\n".join(f"{k}: {path}" for k, listing in sorted(ref.initramfs.items())
                         for name, path in sorted(listing.items()) if name in names) or "(none of them)"
    if kind == "symbol_problems":
        return "\n".join(f"{k}: {path} {reason} {sym}" for k, warnings in sorted(ref.symbol_problems.items())
                         for path, reason, sym in warnings[:40]) or "(no warnings)"
    if kind == "not_in_depmod":
        return "\n".join(f"{k} {m}: {path or 'not found'}" for (k, m), path in sorted(ref.resolved.items(),
                                                                                     key=lambda kv: kv[0]))
    if kind == "unregistered":
        return ref.raw.get("dkms-sources.tsv", "").rstrip() + "\n-- dkms status:\n" + ref.raw.get("dkms-status.txt", "")
    return ref.raw.get(RAW_OF[kind], "").rstrip() or "(empty)"


def both_sides(host: RealHost, exporter: Exporter, scenario: str) -> tuple[Facts, Facts, str]:
    metrics = exporter.metrics(scenario)
    mine = facts_from_metrics(metrics)
    universe = mine.in_initramfs or frozenset()
    theirs = facts_from_reference(host.reference(scenario), initramfs_universe=universe)
    return mine, theirs, metrics


@pytest.mark.parametrize("kind", FACT_KINDS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_exporter_agrees_with_real_tools(realhost: RealHost, exporter: Exporter, scenario: str, kind: str) -> None:
    mine, theirs, metrics = both_sides(realhost, exporter, scenario)
    got, want = getattr(mine, kind), getattr(theirs, kind)
    if got is None:
        pytest.fail(f"{kind}: the exporter exposes no {metric_name(kind)} (facts.py METRIC_OF); "
                    f"the real tools ({TOOL_OF[kind]}) say:\n"
                    + "\n".join("    " + " | ".join(f) for f in sorted(want)), pytrace=False)
    if got != want:
        ref = realhost.reference(scenario)
        pytest.fail(describe_difference(f"{scenario}: {kind} vs {TOOL_OF[kind]}", got, want)
                    + f"\n  exporter lines:\n{metric_lines(metrics, kind)[:4000]}"
                    + f"\n  real tool output:\n{tool_output(ref, kind, got | want)[:4000]}", pytrace=False)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_check_verdict(realhost: RealHost, exporter: Exporter, scenario: str) -> None:
    exporter.metrics(scenario)  # fails clearly first when the exporter side is missing
    run = exporter.run(scenario, "check")
    want, why = EXPECTED_CHECK[scenario]
    try:
        verdict = json.loads(run.stdout)
    except ValueError:
        pytest.fail(f"check --json printed no JSON\n{run.describe()}", pytrace=False)
    assert run.returncode == want, (
        f"{scenario}: check exits {run.returncode}, the readiness model says {want} ({why})\n"
        f"{json.dumps(verdict, indent=1)[:4000]}")
    ready = next_boot_ready(exporter.metrics(scenario))
    assert ready == {0: 1.0, 1: 0.0}.get(want), (
        f"{scenario}: {NEXT_BOOT_READY} is {ready}, check exits {run.returncode}")
