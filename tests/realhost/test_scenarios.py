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
# What DKMS names the module files it installs: Debian 12's 6.1 kernels ship plain .ko, Debian
# 13's 6.12 kernels .ko.xz, and dkms compresses its builds like the kernel's own (set_module_suffix).
KO_OF = {"bookworm": ".ko", "trixie": ".ko.xz"}


@pytest.fixture(scope="module")
def ko(realhost: RealHost) -> str:
    return KO_OF[realhost.suite]


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
        running = ref.old_kernel if name == "early_boot_missing" else ref.new_kernel
        assert ref.running_kernel == running, name
        assert (ref.tree / "proc/sys/kernel/osrelease").read_text().strip() == running, name


def test_healthy_is_the_base_as_debian_built_it(refs: dict[str, Reference], realhost: RealHost) -> None:
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
        # initramfs-tools compressed it with zstd (the exporter must read that).  Debian 13's
        # (0.148) first writes the already-compressed .ko.xz modules as an uncompressed cpio
        # segment ("070701"), then the rest with zstd: the exporter must read past the first one.
        image = (ref.tree / f"boot/initrd.img-{kernel}").read_bytes()
        if realhost.suite == "bookworm":
            assert image[:4] == b"\x28\xb5\x2f\xfd"
        else:
            assert image[:6] == b"070701" and b"\x28\xb5\x2f\xfd" in image


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


def test_initramfs_forced_then_dropped(refs: dict[str, Reference], ko: str) -> None:
    new, old = refs["healthy"].new_kernel, refs["healthy"].old_kernel
    healthy, forced, dropped = (refs[n].initramfs for n in ("healthy", "initramfs_forced", "initramfs_dropped"))
    assert forced[new]["v4l2loopback"].endswith(f"/modules/{new}/updates/dkms/v4l2loopback{ko}")
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


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def module_symvers(tree: Path, kernel: str) -> dict[str, int]:
    """symbol -> CRC of the kernel's headers (Module.symvers: crc, symbol, module, export type)."""
    text = (tree / f"usr/src/linux-headers-{kernel}/Module.symvers").read_text()
    return {cols[1]: int(cols[0], 16) for cols in (line.split("\t") for line in text.splitlines()) if len(cols) >= 4}


def test_unregistered_leaves_the_packages_installed_and_dkms_knowing_nothing(refs: dict[str, Reference]) -> None:
    ref = refs["unregistered"]
    assert ref.dkms_status == [] and ref.module_files == []
    assert {(src.module, src.package, src.package_status) for src in ref.sources} == {
        ("v4l2loopback", "v4l2loopback-dkms", "ii"), ("acpi-call", "acpi-call-dkms", "ii")}
    for src in ref.sources:
        assert not (ref.tree / "var/lib/dkms" / src.module).exists(), src
        assert src.conf == f"/usr/src/{src.module}-{src.version}/dkms.conf"
    # Reinstalling the packages (headers_missing) registers exactly those sources again.
    assert {(line.module, line.version) for line in refs["headers_missing"].dkms_status} == {
        (src.module, src.version) for src in ref.sources}
    for name in SCENARIOS:
        if name != "unregistered":
            registered = {(line.module, line.version) for line in refs[name].dkms_status}
            assert {(src.module, src.version) for src in refs[name].sources} <= registered, name


def test_module_deleted_leaves_dkms_and_depmod_naming_a_file_that_is_gone(refs: dict[str, Reference]) -> None:
    ref, healthy = refs["module_deleted"], refs["healthy"]
    new = ref.new_kernel
    assert states(ref) == states(healthy)                  # dkms status: still installed
    assert module_files(ref) == {("acpi_call", new)}
    assert ref.resolved[(new, "v4l2loopback")] == healthy.resolved[(new, "v4l2loopback")]  # modules.dep unchanged
    assert not (ref.tree / ref.resolved[(new, "v4l2loopback")].lstrip("/")).exists()


def test_depmod_stale_leaves_a_file_modprobe_cannot_find(refs: dict[str, Reference], ko: str) -> None:
    ref, healthy = refs["depmod_stale"], refs["healthy"]
    new = ref.new_kernel
    assert states(ref) == states(healthy)                 # dkms: installed
    assert module_files(ref) == module_files(healthy)     # the file is back
    assert ref.resolved[(new, "v4l2loopback")] is None    # modprobe: not found
    assert healthy.resolved[(new, "v4l2loopback")] == f"/lib/modules/{new}/updates/dkms/v4l2loopback{ko}"
    assert ref.resolved[(new, "acpi_call")] == healthy.resolved[(new, "acpi_call")]


def test_initramfs_stale_image_holds_the_build_before_the_rebuild(refs: dict[str, Reference]) -> None:
    ref, forced = refs["initramfs_stale"], refs["initramfs_forced"]
    new = ref.new_kernel
    [copy] = [c for c in ref.initramfs_copies if c.kernel == new and c.name == "v4l2loopback"]
    [before] = [c for c in forced.initramfs_copies if c.kernel == new and c.name == "v4l2loopback"]
    assert not before.differs                    # update-initramfs copied the installed file
    assert copy.image_sha256 == before.image_sha256  # the image is initramfs_forced's, untouched
    assert copy.differs and copy.image_mtime < copy.disk_mtime
    rebuilt = ref.module_file("v4l2loopback", new)
    assert rebuilt is not None and rebuilt.signer == "DKMS module signing key"  # DKMS signed the rebuild
    assert forced.module_file("v4l2loopback", new).signer == ""
    assert states(ref) == states(forced)


def test_built_for_both_installs_both_modules_for_both_kernels(refs: dict[str, Reference]) -> None:
    ref = refs["built_for_both"]
    new, old = ref.new_kernel, ref.old_kernel
    assert states(ref) == {(m, k, "installed") for m in ("acpi-call", "v4l2loopback") for k in (new, old)}
    assert module_files(ref) == {(m, k) for m in DKMS_MODULES for k in (new, old)}
    for f in ref.module_files:
        assert f.vermagic.split()[0] == f.kernel, f
        assert ref.resolved[(f.kernel, f.name)] == f.path.removeprefix("/usr")
    assert set(ref.symbol_problems) == {new, old} and not any(ref.symbol_problems.values())
    # The two kernels are different upstream releases: their exports' CRCs differ.
    assert module_symvers(ref.tree, new)["module_layout"] != module_symvers(ref.tree, old)["module_layout"]


def test_stale_build_disagrees_about_symbol_versions(refs: dict[str, Reference]) -> None:
    ref = refs["stale_build"]
    new, old = ref.new_kernel, ref.old_kernel
    copied, original = ref.module_file("v4l2loopback", old), ref.module_file("v4l2loopback", new)
    assert copied is not None and original is not None
    assert sha256(ref.tree / copied.path.lstrip("/")) == sha256(ref.tree / original.path.lstrip("/"))
    assert copied.vermagic.split()[0] == new      # built for the other kernel
    assert ref.resolved[(old, "v4l2loopback")] == copied.path.removeprefix("/usr")  # depmod -a ran
    # depmod's own check against the old kernel's Module.symvers ...
    warned = {(path, reason, sym) for path, reason, sym in ref.symbol_problems[old]}
    assert warned and {(p, r) for p, r, _ in warned} == {(copied.path.removeprefix("/usr"), "symbol_version_mismatch")}
    symbols = {sym for _, _, sym in warned}
    assert "module_layout" in symbols
    # ... and modprobe --dump-modversions against the same file agree on which CRCs differ.
    exports, crcs = module_symvers(ref.tree, old), ref.modversions[copied.path]
    assert {s for s, crc in crcs.items() if s in exports and exports[s] != crc} == symbols
    assert not ref.symbol_problems[new]
    flags = {(line.module, line.kernel): line.flags for line in ref.dkms_status}
    assert flags[("v4l2loopback", old)] == ("built_installed_differ",)  # dkms notices the swap
    assert flags[("v4l2loopback", new)] == ()


def test_early_boot_missing_is_in_the_running_kernels_image_only(refs: dict[str, Reference], ko: str) -> None:
    ref = refs["early_boot_missing"]
    new, old = ref.new_kernel, ref.old_kernel
    assert ref.running_kernel == old
    assert ref.initramfs[old]["v4l2loopback"].endswith(f"/modules/{old}/updates/dkms/v4l2loopback{ko}")
    assert "videodev" in ref.initramfs[old]
    assert "v4l2loopback" not in ref.initramfs[new] and "videodev" not in ref.initramfs[new]
    assert [c.differs for c in ref.initramfs_copies] == [False]   # old's copy is the installed file
    # The modules file still names it: NEW's image was made before DKMS built v4l2loopback for NEW.
    assert "v4l2loopback" in (ref.tree / "etc/initramfs-tools/modules").read_text().split()
    module = ref.module_file("v4l2loopback", new)
    assert module is not None
    assert (ref.tree / f"boot/initrd.img-{new}").stat().st_mtime < (ref.tree / module.path.lstrip("/")).stat().st_mtime
    assert states(ref) == states(refs["built_for_both"])
