"""The real tools' side alone: each scenario is what it claims to be, by the real tools' own word.

These pass or fail without the exporter.  They keep the scenarios honest (a build that silently
stopped making a difference would otherwise "agree" with any exporter) and prove the parsers
read every real output.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography import x509

from .conftest import SCENARIOS, RealHost
from .reference import Reference

pytestmark = pytest.mark.realhost

DKMS_MODULES = {"acpi_call", "v4l2loopback"}


@pytest.fixture(scope="module")
def refs(realhost: RealHost) -> dict[str, Reference]:
    return {name: realhost.reference(name) for name in SCENARIOS}


def states(ref: Reference) -> set[tuple[str, str, str]]:
    return {(line.module, line.kernel, line.state) for line in ref.dkms_status}


def module_files(ref: Reference) -> set[tuple[str, str]]:
    return {(f.name, f.kernel) for f in ref.module_files}


def test_every_scenario_has_both_kernels_with_an_initramfs(refs: dict[str, Reference]) -> None:
    for name, ref in refs.items():
        kernels = {ref.new_kernel, ref.old_kernel}
        assert ref.kernels == kernels, name
        assert set(ref.initramfs) == kernels, name
        for kernel, modules in ref.initramfs.items():
            assert len(modules) > 100, f"{name}: the {kernel} initramfs lists only {len(modules)} modules"
        assert (ref.tree / "proc/sys/kernel/osrelease").read_text().strip() == ref.new_kernel


def test_healthy_is_the_base_as_debian_built_it(refs: dict[str, Reference]) -> None:
    ref = refs["healthy"]
    new, old = ref.new_kernel, ref.old_kernel
    assert states(ref) == {("acpi-call", new, "installed"), ("v4l2loopback", new, "installed")}
    assert all(line.arch == "x86_64" and not line.flags for line in ref.dkms_status)
    assert module_files(ref) == {("acpi_call", new), ("v4l2loopback", new)}
    for f in ref.module_files:
        assert f.vermagic.split()[0] == new and "modversions" in f.vermagic.split()
        assert (f.signer, f.sig_key, f.sig_hashalgo) == ("", "", ""), "DKMS signed without a key?"
    assert ref.holds == {ref.env["OLD_IMAGE_PACKAGE"]}
    assert ref.audit == []
    assert ref.secure_boot == "unsupported" and not ref.enrolled_sha1
    assert (ref.tree / f"usr/src/linux-headers-{new}/include").is_dir()
    assert not (ref.tree / f"usr/src/linux-headers-{old}").exists()
    for kernel, modules in ref.initramfs.items():
        assert not DKMS_MODULES & set(modules), f"a DKMS module in {kernel}'s initramfs"
        # initramfs-tools compressed it with zstd (the exporter must read that).
        assert (ref.tree / f"boot/initrd.img-{kernel}").read_bytes()[:4] == b"\x28\xb5\x2f\xfd"


def test_headers_missing_leaves_the_modules_added_and_built_for_no_kernel(refs: dict[str, Reference]) -> None:
    ref = refs["headers_missing"]
    assert states(ref) == {("acpi-call", "", "added"), ("v4l2loopback", "", "added")}
    assert all(line.arch == "" for line in ref.dkms_status)
    assert ref.module_files == []
    assert not (ref.tree / f"usr/src/linux-headers-{ref.new_kernel}").exists()
    assert not (ref.tree / f"usr/lib/modules/{ref.new_kernel}/build").exists()
    assert (ref.tree / f"boot/vmlinuz-{ref.new_kernel}").is_file()


def test_dkms_uninstalled_leaves_v4l2loopback_built_only(refs: dict[str, Reference]) -> None:
    ref = refs["dkms_uninstalled"]
    new = ref.new_kernel
    assert states(ref) == {("acpi-call", new, "installed"), ("v4l2loopback", new, "built")}
    assert module_files(ref) == {("acpi_call", new)}


def test_initramfs_forced_then_dropped(refs: dict[str, Reference]) -> None:
    new, old = refs["healthy"].new_kernel, refs["healthy"].old_kernel
    healthy, forced, dropped = (refs[n].initramfs for n in ("healthy", "initramfs_forced", "initramfs_dropped"))
    assert forced[new]["v4l2loopback"].endswith(f"/modules/{new}/updates/dkms/v4l2loopback.ko")
    # update-initramfs (manual_add_modules) pulled in what v4l2loopback depends on.
    assert "videodev" in forced[new] and "videodev" not in healthy[new]
    assert "v4l2loopback" not in forced[old]
    assert "v4l2loopback" not in dropped[new]
    assert set(dropped[new]) == set(healthy[new])
    assert states(refs["initramfs_dropped"]) == states(refs["healthy"])


def test_signed_modules_carry_the_test_key(refs: dict[str, Reference]) -> None:
    for name in ("signed_sb_off", "signed_sb_on"):
        ref = refs[name]
        new = ref.new_kernel
        cert = x509.load_der_x509_certificate((ref.tree / "var/lib/dkms/mok.pub").read_bytes())
        signed = ref.module_file("v4l2loopback", new)
        unsigned = ref.module_file("acpi_call", new)
        assert signed is not None and unsigned is not None
        assert signed.signer == ref.env["TEST_KEY_CN"]
        assert signed.signer == cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        # sign-file names the key by issuer and serial number; modinfo prints that serial.
        assert int(signed.sig_key.replace(":", ""), 16) == cert.serial_number
        assert signed.sig_hashalgo == kernel_sig_hash(ref.tree, new)
        assert (unsigned.signer, unsigned.sig_key) == ("", "")
        # dkms notices that the installed file is no longer the one it built.
        flags = {line.module: line.flags for line in ref.dkms_status}
        assert flags == {"v4l2loopback": ("built_installed_differ",), "acpi-call": ()}
    assert refs["signed_sb_off"].secure_boot == "disabled"
    assert refs["signed_sb_off"].enrolled_sha1 == frozenset()
    on = refs["signed_sb_on"]
    assert on.secure_boot == "enabled"
    der = (on.tree / "var/lib/dkms/mok.pub").read_bytes()
    assert on.enrolled_sha1 == {hashlib.sha1(der).hexdigest()}


def kernel_sig_hash(tree: Path, kernel: str) -> str:
    for line in (tree / f"boot/config-{kernel}").read_text().splitlines():
        if line.startswith("CONFIG_MODULE_SIG_HASH="):
            return line.split("=", 1)[1].strip('"')
    raise AssertionError(f"config-{kernel} has no CONFIG_MODULE_SIG_HASH")


def test_held_changes_the_holds_only(refs: dict[str, Reference]) -> None:
    assert refs["held"].holds == {"dkms", "v4l2loopback-dkms"}
    assert states(refs["held"]) == states(refs["healthy"])


def test_half_configured_is_what_dpkg_audit_lists(refs: dict[str, Reference]) -> None:
    assert sorted(refs["half_configured"].audit) == [
        ("dkms-exporter-test-failing-postinst", "half-configured"),
        ("dkms-exporter-test-unpacked", "unpacked"),
    ]
    for name in SCENARIOS:
        if name != "half_configured":
            assert refs[name].audit == [], name
