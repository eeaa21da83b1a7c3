"""The exporter on the SUSE-layout trees (tests/rhelhost/suse.py) against the real tools: rpm's
`rpm -qa` of the headers before rpm's ndb code stored them in Packages.db, rpmpkgList of that
file, zypper's own view of its locks, depmod -aeE's weak-modules2 decision symbol by symbol on
real modules and real symvers, grub-editenv's saved entry, and the verdicts the KMP leads to."""

from __future__ import annotations

import re
import subprocess

import pytest

import ndbtools
from rhelhost.weaklinks import depmod_disagreements
from conftest import require_tool, scrape
from rhelhost.suse import suse_scenarios
from exporter.facts.bootloader import BootFacts
from exporter.facts.module import ModuleFacts
from exporter.facts.packages import PackageFacts
from exporter.facts.system import SystemFacts
from exporter.formats.module import ModuleFile
from exporter.verdict.loader import check_versions

pytestmark = pytest.mark.rhelhost
NAMES = [s.name for s in suse_scenarios("NEW", "OLD", "TWIN")]
NDB = "usr/lib/sysimage/rpm/Packages.db"


@pytest.fixture(scope="module")
def scraped(rhelhost):
    return {name: scrape(rhelhost.tree(name)) for name in NAMES}


def ref(rhelhost, name: str, what: str) -> str:
    return (rhelhost.root / "scenarios" / name / "ref" / what).read_text()


@pytest.mark.parametrize("name", NAMES)
def test_ndb_packages_are_what_rpm_listed(rhelhost, scraped, name):
    facts = scraped[name].facts.get(PackageFacts)
    assert facts.manager == "rpm" and facts.database == "/" + NDB and not facts.findings
    mine = sorted((p.name, *(p.version.split(":", 1) if ":" in p.version else ("(none)", p.version)), p.arch,
                   str(p.installtime)) for p in facts.packages)
    mine = sorted((n, e, *v.rsplit("-", 1), a, t) for n, e, v, a, t in mine)
    theirs = sorted(tuple(line.split("\t")[1:]) for line in ref(rhelhost, name, "rpm-qa.txt").splitlines() if line)
    assert len(theirs) >= 10 and mine == theirs
    listed = ndbtools.run(rhelhost.tree(name) / NDB, "list").stdout.split()
    assert len(listed) == len(theirs)


@pytest.mark.parametrize("name", NAMES)
def test_held_packages_are_what_zypper_keeps(rhelhost, scraped, name):
    kept = set(re.findall(r"^\s+(?:Keep installed\s*:\s*)?(\S+) \(@System\)$", ref(rhelhost, name, "zypper-locks.txt"),
                          re.M))
    held = {p.label for p in scraped[name].facts.get(PackageFacts).held}
    assert held == kept
    assert all(p.held_by.startswith("/etc/zypp/locks: ") for p in scraped[name].facts.get(PackageFacts).held)


@pytest.mark.parametrize("name", NAMES)
def test_next_boot_is_grubenvs_saved_entry(rhelhost, scraped, name):
    tree = rhelhost.tree(name)
    env = dict(line.split("=", 1) for line in subprocess.run(
        [require_tool("grub-editenv"), str(tree / "boot/grub2/grubenv"), "list"], capture_output=True,
        text=True).stdout.splitlines())
    assert env["saved_entry"]
    boot = scraped[name].facts.get(BootFacts)
    assert boot.loader == "grub" and boot.next_boot == rhelhost.scenario(name)["next_boot"]


@pytest.mark.parametrize("name", NAMES)
def test_weak_modules2_decision_is_depmods_symbol_by_symbol(rhelhost, scraped, tmp_path, name):
    """The KMP linked into a copy of each other kernel's weak-updates/updates/, depmod -naeE
    against that kernel's symvers: the symbols it complains about are the exporter's CRC
    mismatches, and the tree has the link exactly when depmod found none."""
    s = rhelhost.scenario(name)
    tree, built_for = rhelhost.tree(name), s["kmp_for"]
    modules = scraped[name].facts.get(ModuleFacts)
    for k in s["kernels"]:
        if k == built_for:
            continue
        candidate = modules.kernels[built_for].files["updates/kabidemo.ko"]
        assert isinstance(candidate, ModuleFile)
        vc = check_versions(candidate, modules.kernels[k].exports)
        said, stderr = depmod_disagreements(tmp_path, tree, k, "weak-updates/updates/kabidemo.ko",
                                            f"usr/lib/modules/{built_for}/updates/kabidemo.ko")
        assert said == {sym for sym, _, _ in vc.mismatches}, (k, stderr[-2000:])
        linked = (tree / f"usr/lib/modules/{k}/weak-updates/updates/kabidemo.ko").is_symlink()
        assert linked == (not said and s["weak_links"]), (k, said)


EXPECTED = {"suse_kmp_fits": (True, None), "suse_kmp_unlinked": (False, "weak_update_missing"),
            "suse_kmp_break": (False, "kabi_mismatch")}


@pytest.mark.parametrize("name", NAMES)
def test_kmp_verdict_and_fix(rhelhost, scraped, name):
    s = rhelhost.scenario(name)
    readiness = scraped[name].readiness
    ready, reason = EXPECTED[name]
    verdict = next(k for k in readiness.kernels if k.kernel == s["next_boot"])
    assert verdict.verdict == ("ready" if ready else "not_ready") and readiness.next_boot == s["next_boot"]
    kmp = {m.module: m for m in verdict.modules}["kabidemo"]
    assert "installed_for_running_kernel" in kmp.expected_because
    assert [p.reason for p in kmp.problems] == ([reason] if reason else [])
    if reason == "weak_update_missing":
        assert kmp.problems[0].fix == f"/usr/lib/module-init-tools/weak-modules2 --add-kernel {s['next_boot']}"
    if reason == "kabi_mismatch":
        assert kmp.problems[0].fix.startswith("zypper install kabidemo-kmp-amd64 (a KMP built for ")
    system = scraped[name].facts.get(SystemFacts)
    assert system.reboot_required == s["reboot_needed"]
