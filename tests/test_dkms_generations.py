"""The rules that changed between dkms generations (Debian 12's 3.0.10, Ubuntu 24.04's 3.0.11,
Debian 13's 3.2.2), each at the release that changed it (docs/formats.md, "Which rules apply").
The same tree is read with the installed dkms's version set on both sides of the threshold;
tests/realhost runs the real 3.0.10 and 3.2.2 on real trees."""

from __future__ import annotations

import shutil

import pytest

from testkit import K1, K2, scrape
from exporter.facts.dkms import DkmsFacts
from exporter.facts.kernel import KernelFacts
from exporter.verdict.expected import _autoinstall, _excluded
from hostbuilder import Host


def with_dkms(h: Host, version: str) -> Host:
    """The installed dkms's version, where the exporter reads it (the script's --version echo)."""
    h.write("usr/sbin/dkms", f'#!/bin/bash\n# fixture stand-in\necho $"dkms-{version}"\n', mode=0o755)
    return h


def host(tmp_path, version: str) -> Host:
    h = with_dkms(Host(tmp_path / version), version)
    h.kernel(K1, running=True)
    h.kernel(K2)
    return h


def status(h: Host) -> list[str]:
    return sorted(line.render() for line in scrape(h.root).facts.get(DkmsFacts).status_lines())


@pytest.mark.parametrize(("version", "want"), [
    ("3.0.10", ["plain/1.0: added"]),     # is_module_added: -L source || -d source
    ("3.0.12", ["plain/1.0: added"]),
    ("3.0.13", []),                       # -L source && -d source; not broken (no /usr/src/plain-1.0)
    ("3.2.2", []),
])
def test_a_plain_source_directory_is_added_only_before_3_0_13(tmp_path, version, want) -> None:
    h = host(tmp_path, version)
    h.dkms("plain", "1.0")
    src = h.path("var/lib/dkms/plain/1.0/source")
    src.unlink()
    shutil.copytree(h.path("usr/src/plain-1.0"), src)
    shutil.rmtree(h.path("usr/src/plain-1.0"))
    assert status(h) == want


@pytest.mark.parametrize("version", ["3.0.13", "3.2.2"])
def test_a_plain_source_directory_beside_its_usr_src_tree_is_broken(tmp_path, version) -> None:
    h = host(tmp_path, version)
    h.dkms("plain", "1.0")
    src = h.path("var/lib/dkms/plain/1.0/source")
    src.unlink()
    shutil.copytree(h.path("usr/src/plain-1.0"), src)
    assert status(h) == ["plain/1.0: broken"]


@pytest.mark.parametrize(("version", "want"), [
    ("3.0.13", ["two/1.0: added"]),        # is_module_built needs every DEST_MODULE_NAME file
    ("3.1.7", ["two/1.0: added"]),
    # module/ is enough; module_status_built_extra stops at the first missing file (no diff note)
    ("3.1.8", [f"two/1.0, {K1}, x86_64: installed (WARNING! Missing some built modules!)"]),
    ("3.2.2", [f"two/1.0, {K1}, x86_64: installed (WARNING! Missing some built modules!)"]),
])
def test_a_missing_built_file_unbuilds_only_before_3_1_8(tmp_path, version, want) -> None:
    h = host(tmp_path, version)
    h.dkms("two", "1.0", dest=["two_a", "two_b"])
    h.dkms_build("two", "1.0", K1, dest=["two_a", "two_b"])
    h.path(f"var/lib/dkms/two/1.0/{K1}/x86_64/module/two_b.ko").unlink()
    assert status(h) == want


def facts_of(h: Host):
    s = scrape(h.root).facts
    return s.get(DkmsFacts), s.get(KernelFacts)


@pytest.mark.parametrize(("version", "value", "want"), [
    ("3.1.6", "no", True),      # [[ $AUTOINSTALL ]]: any non-empty value
    ("3.1.6", "", False),
    ("3.1.7", "no", False),     # yes/no/empty (360bcd4 "support AUTOINSTALL={yes,no,}")
    ("3.1.7", "YES", True),
    ("3.2.2", "no", False),
    ("3.2.2", "true", False),   # an unsupported value makes read_conf fail
])
def test_autoinstall_values_by_generation(tmp_path, version, value, want) -> None:
    h = host(tmp_path, version)
    h.dkms("auto", "1.0", conf=f'PACKAGE_NAME="auto"\nPACKAGE_VERSION="1.0"\nBUILT_MODULE_NAME[0]="auto"\n'
                               f'DEST_MODULE_LOCATION[0]="/updates"\nAUTOINSTALL="{value}"\n')
    dkms, _ = facts_of(h)
    entry = next(e for e in dkms.entries if e.module == "auto")
    assert _autoinstall(entry, K2, "x86_64", dkms) is want


@pytest.mark.parametrize(("version", "want"), [
    ("3.0.10", False),   # no BUILD_EXCLUSIVE_KERNEL_MIN in 3.0.10's read_conf
    ("3.0.11", True),    # 566223d "add BUILD_EXCLUSIVE_KERNEL_MIN/MAX"
    ("3.2.2", True),
])
def test_build_exclusive_kernel_min_exists_from_3_0_11(tmp_path, version, want) -> None:
    h = host(tmp_path, version)
    h.dkms("future", "1.0", conf='PACKAGE_NAME="future"\nPACKAGE_VERSION="1.0"\nBUILT_MODULE_NAME[0]="future"\n'
                                 'DEST_MODULE_LOCATION[0]="/updates"\nAUTOINSTALL="yes"\n'
                                 'BUILD_EXCLUSIVE_KERNEL_MIN="99.0"\n')
    dkms, kernels = facts_of(h)
    entry = next(e for e in dkms.entries if e.module == "future")
    kernel = next(k for k in kernels.kernels if k.release == K2)
    assert _excluded(entry, kernel, "x86_64", dkms) is want
