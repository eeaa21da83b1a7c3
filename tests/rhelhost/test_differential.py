"""The exporter on the RHEL-layout trees against the real tools run on the same trees: rpm
(sqlite and, for RHEL 8, its bdb_ro backend on the Berkeley DB file), dnf's versionlock list,
grub-editenv, kernel-install's entries, depmod -aeE (the weak-modules decision, symbol by
symbol), dracut's lsinitrd, and the compiler's failure in akmods' log."""

from __future__ import annotations

import re
import subprocess

import pytest

from rhelhost.weaklinks import depmod_disagreements
from conftest import require_tool, scrape
from rhelhost.build import MACHINE_ID, scenarios
from rpmtools import QUERY_FORMAT
from exporter.facts.akmods import AkmodsFacts
from exporter.facts.bootloader import BootFacts
from exporter.facts.initramfs import InitramfsFacts
from exporter.facts.kernel import KernelFacts
from exporter.facts.module import ModuleFacts
from exporter.facts.packages import PackageFacts
from exporter.formats.module import ModuleFile
from exporter.verdict.loader import check_versions

pytestmark = pytest.mark.rhelhost
NAMES = [s.name for s in scenarios("NEW", "OLD")]


def dbpath(layout: str) -> str:
    return "/usr/lib/sysimage/rpm" if layout == "fedora" else "/var/lib/rpm"


def rpm_qa(tree, layout: str) -> list[tuple[str, ...]]:
    argv = [require_tool("rpm"), "--root", str(tree), "--dbpath", dbpath(layout)]
    if layout == "rhel8":
        argv += ["--define", "_db_backend bdb_ro"]
    proc = subprocess.run([*argv, "-qa", "--qf", QUERY_FORMAT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return sorted(tuple(line.split("\t")[1:]) for line in proc.stdout.splitlines() if line)


@pytest.fixture(scope="module")
def scraped(rhelhost):
    return {name: scrape(rhelhost.tree(name)) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_packages_are_what_rpm_lists(rhelhost, scraped, name):
    s = rhelhost.scenario(name)
    facts = scraped[name].facts.get(PackageFacts)
    assert facts.manager == "rpm" and facts.database.endswith("Packages" if s["layout"] == "rhel8" else "rpmdb.sqlite")
    mine = sorted((p.name, *(p.version.split(":", 1) if ":" in p.version else ("(none)", p.version)), p.arch,
                   str(p.installtime)) for p in facts.packages)
    mine = sorted((n, e, *v.rsplit("-", 1), a, t) for n, e, v, a, t in mine)
    theirs = rpm_qa(rhelhost.tree(name), s["layout"])
    assert len(theirs) >= 10 and mine == theirs


@pytest.mark.parametrize("name", NAMES)
def test_next_boot_is_the_entry_grubenv_names(rhelhost, scraped, name):
    tree = rhelhost.tree(name)
    env = dict(line.split("=", 1) for line in subprocess.run(
        [require_tool("grub-editenv"), str(tree / "boot/grub2/grubenv"), "list"], capture_output=True,
        text=True).stdout.splitlines())
    entry_id = env.get("next_entry") or env["saved_entry"]
    entry = (tree / "boot/loader/entries" / f"{entry_id}.conf").read_text()
    version = re.search(r"^version\s+(\S+)", entry, re.M).group(1)
    assert re.search(rf"^linux\s+/{MACHINE_ID}/{re.escape(version)}/linux$", entry, re.M), entry
    boot = scraped[name].facts.get(BootFacts)
    assert boot.loader == "grub-bls" and boot.next_boot == version == rhelhost.scenario(name)["next_boot"]


def test_versionlock_is_what_dnf_lists(rhelhost, scraped):
    tree = rhelhost.tree("rhel9_healthy")
    lines = [l for l in (tree / "etc/dnf/plugins/versionlock.list").read_text().splitlines()
             if l and not l.startswith("#")]
    assert len(lines) == 2 and all(l.startswith("kernel-devel-0:6.1.0-") for l in lines)   # dnf wrote one per kernel
    held = {p.name for p in scraped["rhel9_healthy"].facts.get(PackageFacts).held}
    assert held == {"kernel-devel"}


@pytest.mark.parametrize("name", ["rhel9_healthy", "rhel9_weak_missing", "rhel9_kabi_break"])
def test_weak_modules_decision_is_depmods_symbol_by_symbol(rhelhost, scraped, tmp_path, name):
    """For every kernel the kmod was not built for: link it into a copy of the kernel's
    weak-updates, run depmod -naeE against the kernel's symvers, and compare the symbols it
    complains about with the exporter's CRC check (the one kmod's depmod and the kernel make)."""
    s = rhelhost.scenario(name)
    tree, built_for = rhelhost.tree(name), s["kmod_for"]
    facts = scraped[name].facts
    modules = facts.get(ModuleFacts)
    for k in s["kernels"]:
        if k == built_for:
            continue
        candidate = modules.kernels[built_for].files["extra/kabidemo/kabidemo.ko"]
        assert isinstance(candidate, ModuleFile)
        vc = check_versions(candidate, modules.kernels[k].exports)
        said, stderr = depmod_disagreements(tmp_path, tree, k, "weak-updates/kabidemo.ko",
                                            f"usr/lib/modules/{built_for}/extra/kabidemo/kabidemo.ko")
        assert said == {sym for sym, _, _ in vc.mismatches}, (k, stderr[-2000:])
        linked = (tree / f"usr/lib/modules/{k}/weak-updates/kabidemo/kabidemo.ko").is_symlink()
        assert linked == (not said and s["weak_links"]), (k, said)


@pytest.mark.parametrize("name", NAMES)
def test_initramfs_modules_are_what_lsinitrd_lists(rhelhost, scraped, name):
    images = scraped[name].facts.get(InitramfsFacts).images
    for k in rhelhost.scenario(name)["kernels"]:
        image = images[k]
        assert image.path == f"/boot/initramfs-{k}.img" and image.listing is not None
        out = subprocess.run([require_tool("lsinitrd"), str(rhelhost.tree(name) / image.path.lstrip("/"))],
                             capture_output=True, text=True, timeout=120).stdout
        listed = {re.sub(r"\.ko(\..*)?$", "", p.rsplit("/", 1)[1]).replace("-", "_")
                  for p in re.findall(rf"\s(usr/lib/modules/{re.escape(k)}/\S+\.ko\S*)$", out, re.M)}
        assert image.listing.modules == listed
    for module in rhelhost.scenario(name)["early_boot"]:          # dracut --add-drivers put it there
        assert module in images[rhelhost.scenario(name)["next_boot"]].listing.modules

def test_akmods_failure_is_the_compilers(rhelhost, scraped):
    s = rhelhost.scenario("fedora_akmods")
    old = s["next_boot"]
    akmods = scraped["fedora_akmods"].facts.get(AkmodsFacts)
    entry = akmods.get("akdemo")
    assert entry.version == "2.0-1.fc40" and entry.verrel == "2.0-1"
    failure = entry.failure_for(old)
    assert failure.cause == "kernel_api_mismatch" and "implicit declaration of function 'akdemo_new_api_helper'" \
        in failure.detail
    kernels = scraped["fedora_akmods"].facts.get(KernelFacts)
    new = next(k for k in s["kernels"] if k != old)
    assert entry.failure_for(new) is None and "extra/akdemo/akdemo.ko" in kernels.get(new).out_of_tree["akdemo"]
