"""The RPM family on RHEL-layout trees (tests/rhelbuilder.py: real rpmdbs from rpmbuild + rpm):
blscfg's menu order and default, kernel-devel names, reboot-required, duplicates, weak-modules'
decision, akmods, and bad input."""

from __future__ import annotations

import subprocess

import pytest

from conftest import require_tool, scrape
from hostbuilder import FIXED_MTIME
from rhelbuilder import MACHINE_ID, RhelHost
from exporter.distro.base import Distro
from exporter.distro.rhel import headers_package
from exporter.facts.akmods import AkmodBuild, AkmodEntry
from exporter.facts.bootloader import BootFacts
from exporter.facts.packages import PackageFacts
from exporter.facts.system import SystemFacts
from exporter.formats.bls import blscfg_order, blscfg_vercmp

K1, K2 = "5.14.0-427.13.1.el9_4.x86_64", "5.14.0-503.11.1.el9_5.x86_64"


def reasons(s, kernel: str) -> dict[str, list[str]]:
    kv = s.readiness.kernel(kernel)
    return {m.module: [p.reason for p in m.problems] for m in kv.modules}


# ---------------------------------------------------------------------------------------------
# blscfg (rhboot/grub2 grub-core/commands/blscfg.c)


def entry(version: str, linux: bool = True) -> dict[str, str]:
    return {"version": version, "title": f"RHEL ({version})", **({"linux": f"/vmlinuz-{version}"} if linux else {})}


def test_blscfg_order_is_newest_first_by_file_name():
    ids = [f"{MACHINE_ID}-{k}" for k in (K1, K2, "5.14.0-70.13.1.el9_0.x86_64", f"{K2}+debug")] + [f"{MACHINE_ID}-0-rescue"]
    got = [i for i, _ in blscfg_order([(i, entry(i.split("-", 1)[1])) for i in ids])]
    assert got == [f"{MACHINE_ID}-{K2}+debug", f"{MACHINE_ID}-{K2}", f"{MACHINE_ID}-{K1}",
                   f"{MACHINE_ID}-5.14.0-70.13.1.el9_0.x86_64", f"{MACHINE_ID}-0-rescue"]


def test_blscfg_drops_an_entry_equal_to_an_earlier_one_and_skips_entries_without_linux():
    """bls_add_entry returns GRUB_ERR_BAD_ARGUMENT on a tie; create_entry skips a missing 'linux'."""
    got = blscfg_order([("a-1.0-1", entry("1")), ("a-1_0-1", entry("2")), ("a-2.0-1", entry("3", linux=False))])
    assert [i for i, _ in got] == ["a-1.0-1"]


def test_rhel8_blscfg_sorts_by_the_version_key_first_and_has_no_plus_rule():
    entries = [("zzz-1.0-1", entry("5.14.0-1")), ("aaa-9.0-1", entry("5.14.0-2"))]
    assert [i for i, _ in blscfg_order(entries, "rhel8")] == ["aaa-9.0-1", "zzz-1.0-1"]
    assert [i for i, _ in blscfg_order(entries)] == ["zzz-1.0-1", "aaa-9.0-1"]
    assert blscfg_vercmp("x86_64+debug", "x86_64") == 1 and blscfg_vercmp("1+a", "1.1") == -1
    assert blscfg_vercmp("1+", "1") == 1 and blscfg_vercmp("1+", "1", plus=False) == 0   # RHEL 8: a separator


@pytest.fixture
def rhel(tmp_path) -> RhelHost:
    h = RhelHost(tmp_path / "rhel")
    h.kernel(K1, running=True)
    h.kernel(K2, installed_at=FIXED_MTIME + 3600)
    return h


def test_saved_entry_written_by_grub_editenv_names_the_next_kernel(rhel):
    rhel.grub(default=f"{MACHINE_ID}-{K1}")
    rhel.finish()
    env = rhel.path("boot/grub2/grubenv")
    subprocess.run([require_tool("grub-editenv"), str(env), "set", f"saved_entry={MACHINE_ID}-{K1}"], check=True)
    boot = scrape(rhel.root).facts.get(BootFacts)
    assert (boot.loader, boot.next_boot) == ("grub-bls", K1)
    subprocess.run([require_tool("grub-editenv"), str(env), "set", f"next_entry={MACHINE_ID}-{K2}"], check=True)
    boot = scrape(rhel.root).facts.get(BootFacts)
    assert boot.next_boot == K2 and boot.entry.startswith("next_entry=")
    subprocess.run([require_tool("grub-editenv"), str(env), "unset", "next_entry"], check=True)
    subprocess.run([require_tool("grub-editenv"), str(env), "set", "saved_entry=1"], check=True)   # by index
    assert scrape(rhel.root).facts.get(BootFacts).next_boot == K1
    subprocess.run([require_tool("grub-editenv"), str(env), "set",
                    f"saved_entry=Red Hat Enterprise Linux ({K2}) 9.4 (Plow)"], check=True)       # by title
    assert scrape(rhel.root).facts.get(BootFacts).next_boot == K2


def test_blscfg_disabled_falls_back_to_menuentries(rhel):
    rhel.grub(blscfg=False)
    rhel.write("boot/grub2/grub.cfg", rhel.path("boot/grub2/grub.cfg").read_text()
               + f"menuentry 'RHEL ({K1})' --id 'k1' {{\n\tlinux /vmlinuz-{K1} root=/dev/sda ro\n}}\n")
    rhel.finish()
    boot = scrape(rhel.root).facts.get(BootFacts)
    assert boot.loader == "grub" and boot.next_boot == K1


# ---------------------------------------------------------------------------------------------
# packages, reboot, names


def test_headers_package_names():
    assert headers_package(K1) == f"kernel-devel-{K1}"
    assert headers_package(f"{K1}+debug") == f"kernel-debug-devel-{K1}"
    assert headers_package(f"{K1}+rt") == f"kernel-rt-devel-{K1}"
    assert headers_package("4.18.0-513.5.1.rt7.307.el8_9.x86_64") == "kernel-rt-devel-4.18.0-513.5.1.rt7.307.el8_9.x86_64"
    assert headers_package("4.18.0-513.5.1.rt7.307.el8_9.x86_64+debug").startswith("kernel-rt-debug-devel-")


def test_reboot_required_by_a_kernel_installed_after_boot(rhel):
    rhel.grub()
    rhel.finish()
    s = scrape(rhel.root).facts.get(SystemFacts)
    assert s.reboot_required and s.reboot_required_packages == ("kernel-core",)
    assert s.reboot_required_since == FIXED_MTIME + 3600
    rhel.write("proc/stat", f"btime {FIXED_MTIME + 7200}\n")
    assert not scrape(rhel.root).facts.get(SystemFacts).reboot_required


def test_headers_package_metric_and_held_kernels(rhel, capsys):
    from exporter.cli import main
    rhel.versionlock(f"kernel-core-0:5.14.0-427.13.1.el9_4.*")
    rhel.grub()
    rhel.finish()
    main(["metrics", "--path.rootfs", str(rhel.root)])
    out = capsys.readouterr().out
    assert f'dkms_kernel_headers_package_installed{{kernel="{K1}",package="kernel-devel-{K1}"}} 1.0' in out
    assert out.count('dkms_package_held{kind="kernel-image",package="kernel-core"} 1.0') == 1   # two kernels, one series


def test_fedora_database_under_sysimage(tmp_path):
    h = RhelHost(tmp_path / "f", os_id="fedora", version_id="40")
    h.kernel("6.9.4-200.fc40.x86_64", running=True)
    h.grub()
    h.finish()
    assert h.path("var/lib/rpm").is_symlink()
    facts = scrape(h.root).facts.get(PackageFacts)
    assert facts.database == "/var/lib/rpm/rpmdb.sqlite" and facts.installed("kernel-core")


def test_a_corrupt_rpmdb_is_an_error_not_a_crash(rhel):
    rhel.grub()
    rhel.finish()
    db = rhel.path("var/lib/rpm/rpmdb.sqlite")
    data = bytearray(db.read_bytes())
    data[100:4000] = b"\xff" * 3900
    db.write_bytes(bytes(data))
    s = scrape(rhel.root)
    run = s.facts.runs["packages"]
    assert not run.success and run.crashed is None and run.errors
    assert s.facts.get(PackageFacts).packages == ()


# ---------------------------------------------------------------------------------------------
# modules: weak-modules, akmods, expectations


def test_kmod_linked_by_weak_modules_works_and_an_incompatible_one_is_a_kabi_mismatch(tmp_path):
    h = RhelHost(tmp_path / "w")
    h.kernel(K1, running=True)
    h.kernel("5.14.0-427.16.1.el9_4.x86_64", kabi=K1)        # same kABI: linked
    h.kernel(K2)                                              # kABI changed: not linked
    h.kmod("nvfake", "550.1", "1.el9_4", built_for=K1)
    h.grub(default=f"{MACHINE_ID}-{K2}")
    h.finish()
    s = scrape(h.root)
    assert reasons(s, "5.14.0-427.16.1.el9_4.x86_64") == {"nvfake": []}
    assert reasons(s, K2) == {"nvfake": ["kabi_mismatch"]}
    fix = s.readiness.kernel(K2).modules[0].problems[0].fix
    assert fix.startswith("dnf upgrade kmod-nvfake") and f"grubby --set-default /boot/vmlinuz-{K1}" in fix
    # the link removed by hand: weak-modules would make it again
    h.path("usr/lib/modules/5.14.0-427.16.1.el9_4.x86_64/weak-updates/nvfake/nvfake.ko").unlink()
    h.finish()
    s = scrape(h.root)
    (p,) = s.readiness.kernel("5.14.0-427.16.1.el9_4.x86_64").modules[0].problems
    assert p.reason == "weak_update_missing" and p.fix == "weak-modules --add-kernel 5.14.0-427.16.1.el9_4.x86_64"


def test_without_weak_modules_a_missing_module_is_file_missing(tmp_path):
    h = RhelHost(tmp_path / "nw")
    h.kernel(K1, running=True)
    h.kernel(K2)
    h.kmod("nvfake", "550.1", "1.el9_4", built_for=K1, weak_links=False)
    h.path("usr/sbin/weak-modules").unlink()
    h.grub(default=f"{MACHINE_ID}-{K2}")
    h.finish()
    assert reasons(scrape(h.root), K2) == {"nvfake": ["file_missing"]}


def test_akmods_failure_superseded_by_a_later_success():
    ok = AkmodBuild("K", "1.0-1", False, "/l", 200.0)
    bad = AkmodBuild("K", "1.0-1", True, "/f", 100.0, "other", "x")
    older_version = AkmodBuild("K", "0.9-1", True, "/o", 300.0, "other", "x")
    assert AkmodEntry("n", "1.0-1.fc40", "1.0-1", "/s", (bad, ok)).failure_for("K") is None
    assert AkmodEntry("n", "1.0-1.fc40", "1.0-1", "/s", (bad,)).failure_for("K") is bad
    assert AkmodEntry("n", "1.0-1.fc40", "1.0-1", "/s", (older_version,)).failure_for("K") is None


def test_akmod_not_built_yet_names_akmods_and_the_headers(tmp_path):
    h = RhelHost(tmp_path / "a", os_id="fedora", version_id="40")
    h.kernel("6.8.5-301.fc40.x86_64", running=True)
    h.kernel("6.9.4-200.fc40.x86_64", headers=False)
    h.akmod("nvfake", "550.1", "1.fc40", built=("6.8.5-301.fc40.x86_64",))
    h.grub(default=f"{MACHINE_ID}-6.9.4-200.fc40.x86_64")
    h.finish()
    s = scrape(h.root)
    (m,) = s.readiness.kernel("6.9.4-200.fc40.x86_64").modules
    assert [p.reason for p in m.problems] == ["not_built"] and m.provider == "akmods:nvfake/550.1-1.fc40"
    assert m.problems[0].fix == ("dnf install kernel-devel-6.9.4-200.fc40.x86_64 && akmods --force --kernels "
                                 "6.9.4-200.fc40.x86_64 --kmod nvfake")
    assert set(m.expected_because) == {"installed_for_running_kernel", "akmods"}


def test_dkms_destination_follows_dkms_own_rule():
    d = Distro()
    assert d.dkms_dest_for({"ID": "rocky", "ID_LIKE": "rhel centos fedora"}) == "/extra"
    assert d.dkms_dest_for({"ID": "fedora"}) == "/extra"
    assert d.dkms_dest_for({"ID": "amzn", "ID_LIKE": "centos rhel fedora"}) is None
    assert d.dkms_dest_for({"ID": "ubuntu", "ID_LIKE": "debian"}) == "/updates/dkms"
