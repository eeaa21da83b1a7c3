"""Module truth plugged into readiness: real ELF modules, real signatures, efivars fixtures."""

import re
import subprocess

import pytest

import modbuild
from testkit import K1, K2, cli, require_tool, scrape
from exporter.facts.secureboot import TrustFacts
from exporter.verdict.trust import enforced_for
from hostbuilder import EFI_GLOBAL, module_elf, signing_key, vermagic


def host_with(host, *, sb: bool | None, key="dkms-mok", mok=("dkms-mok",), content=None, built_against=None):
    host.kernel(K1, running=True)
    host.kernel(K2)
    host.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
    host.dkms_build("acpi-call", "1.2.2", K1, dest=["acpi_call"])
    host.dkms_build("acpi-call", "1.2.2", K2, dest=["acpi_call"], key=key, built_against=built_against,
                    content={"acpi_call": content} if content is not None else None)
    if sb is not None:
        host.secure_boot(sb, mok=mok)
    host.grub()
    host.finish()
    return scrape(host.root)


def reasons(s, kernel=K2):
    return [p.reason for m in s.readiness.kernel(kernel).modules for p in m.problems]


def test_signed_with_enrolled_key_under_secure_boot_is_ready(host):
    s = host_with(host, sb=True)
    assert reasons(s) == [] and s.readiness.verdict == "ready"
    m = s.readiness.kernel(K2).modules[0]
    assert (m.signature.signer, m.signature.key_id) == ("DKMS module signing key", "3A:1F:00:C0:FF:EE:12:34")


def test_unsigned_under_secure_boot(host):
    s = host_with(host, sb=True, key=None)
    assert reasons(s) == ["unsigned"] and s.readiness.verdict == "not_ready"


def test_unsigned_without_secure_boot_is_fine(host):
    s = host_with(host, sb=False, key=None)
    assert reasons(s) == [] and s.readiness.verdict == "ready"


def test_non_efi_host_without_sig_force_is_fine(host):
    s = host_with(host, sb=None, key=None)
    assert s.facts.get(TrustFacts).secure_boot.supported is False
    assert reasons(s) == []


@pytest.mark.parametrize("damage, says", [
    (lambda data: b"", "no CONFIG_MODULES line"),
    (lambda data: bytes(range(256)) * 8, "no CONFIG_MODULES line"),
    (lambda data: data[:-1], "the last line has no newline"),
    (lambda data: data[: data.index(b"CONFIG_LOCK_DOWN")], "no CONFIG_MODULES line|no newline|no CONFIG_CRYPTO"),
])
def test_a_damaged_config_makes_an_unsigned_module_unknown_not_fine(host, damage, says):
    """The sweep's finding: read as a smaller config, an empty, foreign or cut /boot/config-K
    lost CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT, so a kernel that refuses the unsigned module
    under Secure Boot passed for one that loads it ("ready")."""
    s = host_with(host, sb=True, key=None)
    assert reasons(s) == ["unsigned"]
    config = host.path(f"boot/config-{K2}")
    config.write_bytes(damage(config.read_bytes()))
    s = scrape(host.root)
    assert s.readiness.verdict == "unknown"
    errors = [str(e) for e in s.facts.runs["kernel"].errors]
    assert any(f"/boot/config-{K2}" in e for e in errors) and re.search(says, " ".join(errors)), errors


def test_without_a_boot_config_the_headers_config_says_what_k_enforces(host):
    """Arch ships no /boot/config-K (nor does Fedora always): the linux-headers' build/.config is
    the config K was built with.  Without any config, enforcement is unknown and not checked."""
    host_with(host, sb=True, key=None)
    host.path(f"boot/config-{K2}").unlink()
    s = scrape(host.root)
    assert reasons(s) == ["unsigned"] and s.readiness.verdict == "not_ready"
    assert s.facts.runs["kernel"].errors == []
    host.path(f"usr/src/linux-headers-{K2}/.config").unlink()   # where build/ points, inside the root
    assert reasons(scrape(host.root)) == []


LTTNG_LIKE = """PACKAGE_NAME="lt"
PACKAGE_VERSION="2.13.9"
AUTOINSTALL="yes"
i=0
if [ -f $kernel_source_dir/.config ]; then
    . $kernel_source_dir/.config
fi
BUILT_MODULE_NAME[$i]="lt_core"
DEST_MODULE_LOCATION[$i]="/extra"
i=$((i+1))
if [ "$CONFIG_KPROBES" = "y" ]; then
    BUILT_MODULE_NAME[$i]="lt_kprobes"
    DEST_MODULE_LOCATION[$i]="/extra"
    i=$((i+1))
fi
BUILT_MODULE_NAME[$i]="lt_tail"
DEST_MODULE_LOCATION[$i]="/extra"
"""


@pytest.mark.parametrize("built, verdict", [(("lt_core", "lt_tail"), "ready"),
                                            (("lt_core", "lt_kprobes", "lt_tail"), "ready"),
                                            (("lt_core", "lt_kprobes"), "not_ready")])   # lt_tail is not conditional
def test_a_conditional_module_list_is_what_dkms_built(host, built, verdict):
    """lttng-modules' dkms.conf indexes its modules with i=$((i+1)) and adds some only when the
    kernel config has an option.  The exporter does not run those tests; what dkms built for K
    is the list (before: the index was always 0, and only the last module was expected)."""
    host.kernel(K1, running=True)
    host.kernel(K2)
    host.dkms("lt", "2.13.9", dest=list(built), conf=LTTNG_LIKE)
    for k in (K1, K2):
        host.dkms_build("lt", "2.13.9", k, dest=list(built))
    host.grub()
    host.finish()
    s = scrape(host.root)
    assert s.readiness.verdict == verdict, [(m.module, reasons(s)) for m in s.readiness.kernel(K2).modules]
    if verdict == "ready":
        assert sorted(m.module for m in s.readiness.kernel(K2).modules) == sorted(built)
    else:   # dkms 3.0.10: a build without one of its unconditional modules is no build
        assert set(reasons(s)) == {"not_built"}


@pytest.mark.parametrize("sb, verdict", [(False, "ready"), (True, "not_ready")])
def test_a_running_kernel_whose_sysfs_is_not_there_is_judged_as_a_fresh_boot(host, sb, verdict):
    """No /sys/module/module/parameters/sig_enforce nor lockdown (sysfs or securityfs not where
    the exporter looks): the running kernel is judged from its config, command line and Secure
    Boot as the next boot will be, not left unknown."""
    host.kernel(K1)
    host.kernel(K2, running=True)
    host.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
    host.dkms_build("acpi-call", "1.2.2", K2, dest=["acpi_call"], key=None)
    host.secure_boot(sb)
    host.grub()
    host.finish()
    host.path("sys/module/module/parameters/sig_enforce").unlink()
    host.path("sys/kernel/security/lockdown").unlink()
    s = scrape(host.root)
    assert s.readiness.verdict == verdict and reasons(s) == (["unsigned"] if sb else [])


@pytest.mark.parametrize("boot_params, verdict", [(None, "unknown"), (2, "ready"), (3, "not_ready")])
def test_when_secure_boot_cannot_be_told_a_module_that_needs_it_off_is_unknown(host, boot_params, verdict):
    """efivarfs empty (not mounted where the exporter looks): K locks down under Secure Boot
    (CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT), so the unsigned module loads only if Secure Boot is
    off.  Without the kernel's own view (boot_params.secure_boot at 0x1EC) that is not known:
    unknown, not ready; with it, 2 (disabled) is ready and 3 (enabled) refuses the module."""
    host_with(host, sb=True, key=None)
    for var in host.path("sys/firmware/efi/efivars").iterdir():
        var.unlink()
    if boot_params is not None:
        data = bytearray(4096)
        data[0x1EC] = boot_params
        host.write("sys/kernel/boot_params/data", bytes(data))
    s = scrape(host.root)
    assert s.readiness.verdict == verdict
    assert reasons(s) == (["unsigned"] if verdict == "not_ready" else [])
    if verdict == "unknown":
        [why] = s.readiness.kernel(K2).unknown_because
        assert "enforces module signatures is unknown" in why and "efivarfs is not mounted" in why
        assert "acpi_call loads only if it does not" in why


@pytest.mark.parametrize("value, verdict", [
    (b"\x9c", "not_ready"),      # any non-zero byte is Secure Boot on, for the kernel
    (b"\x01\x00", "ready"),     # two bytes: the kernel cannot read it, and boots without lockdown
    (b"", "ready"),              # no data: as good as no variable (an uncommitted or deleted one)
])
def test_the_secure_boot_variable_read_as_the_kernel_reads_it(host, value, verdict):
    host_with(host, sb=True, key=None)
    host.write(f"sys/firmware/efi/efivars/SecureBoot-{EFI_GLOBAL}", (b"\x06\x00\x00\x00" + value) if value else b"")
    s = scrape(host.root)
    assert s.readiness.verdict == verdict
    assert reasons(s) == (["unsigned"] if verdict == "not_ready" else [])


def test_foreign_key_is_untrusted(host):
    s = host_with(host, sb=True, key="foreign")
    assert reasons(s) == ["untrusted_key"]


def test_dkms_key_not_enrolled_is_untrusted_and_shown_unenrolled(host, capsys):
    s = host_with(host, sb=True, mok=())
    assert reasons(s) == ["untrusted_key"]
    _, out = cli(capsys, "metrics", "--path.rootfs", str(host.root))
    assert ('dkms_signing_certificate_enrolled{key_id="3A:1F:00:C0:FF:EE:12:34",path="/var/lib/dkms/mok.pub",'
            'signer="DKMS module signing key"} 0.0') in out


def test_setup_mode_does_not_enforce(host):
    host.kernel(K1, running=True)
    host.secure_boot(True, setup_mode=True)
    host.finish()
    s = scrape(host.root)
    assert s.facts.get(TrustFacts).secure_boot.enabled is False
    assert enforced_for(s.facts.get(TrustFacts), host_config(host), running=False) is False


def host_config(host):
    from exporter.formats.kconfig import parse_kernel_config
    return parse_kernel_config(host.path(f"boot/config-{K1}").read_bytes())


def test_sig_force_kernel_enforces_without_secure_boot(host):
    host.kernel(K1, running=True)
    host.kernel(K2, config={"CONFIG_MODULE_SIG_FORCE": "y"})
    host.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
    host.dkms_build("acpi-call", "1.2.2", K1, dest=["acpi_call"], key=None)
    host.dkms_build("acpi-call", "1.2.2", K2, dest=["acpi_call"], key=None)
    host.finish()
    s = scrape(host.root)
    assert reasons(s, K2) == ["unsigned"]
    assert reasons(s, K1) == []


def test_built_against_the_previous_kernel_is_a_crc_mismatch(host):
    s = host_with(host, sb=False, built_against=K1)
    assert reasons(s) == ["symbol_version_mismatch"]
    detail = s.readiness.kernel(K2).modules[0].problems[0].detail
    assert "module_layout" in detail


def test_vermagic_mismatch_named(host, tmp_path):
    spec = modbuild.ModSpec(name="acpi_call", vermagic=f"{K2} SMP mod_unload modversions ",
                            versions=None, undefined=())
    data = modbuild.build_module(spec, tmp_path / "m.ko").read_bytes()
    s = host_with(host, sb=False, content=data)
    assert "vermagic_mismatch" in reasons(s)
    assert "should be '6.1.0-28-amd64 SMP preempt mod_unload modversions '" in \
        [p for p in s.readiness.kernel(K2).modules[0].problems if p.reason == "vermagic_mismatch"][0].detail


def test_compressed_signed_module_agrees_with_modinfo(host, tmp_path):
    data = module_elf("acpi_call", K2, compression="zstd")
    s = host_with(host, sb=True, content=b"placeholder")
    # replace the installed file with a .ko.zst as Ubuntu 24.04's dkms installs it
    (host.path(f"usr/lib/modules/{K2}/updates/dkms/acpi_call.ko")).unlink()
    zst = host.path(f"usr/lib/modules/{K2}/updates/dkms/acpi_call.ko.zst")
    zst.write_bytes(data)
    dep = host.path(f"usr/lib/modules/{K2}/modules.dep")
    dep.write_text(dep.read_text().replace("updates/dkms/acpi_call.ko:", "updates/dkms/acpi_call.ko.zst:"))
    s = scrape(host.root)
    m = s.readiness.kernel(K2).modules[0]
    assert m.working and m.file.endswith(".ko.zst")
    modinfo = require_tool("modinfo")
    for field, ours in (("signer", m.signature.signer), ("sig_key", m.signature.key_id),
                        ("sig_hashalgo", m.signature.hash_algo)):
        real = subprocess.run([modinfo, "-F", field, str(zst)], capture_output=True, text=True).stdout.strip()
        assert ours == real, field


@pytest.mark.parametrize("bad", ["truncated", "garbage", "bomb", "trailer_past_end"])
def test_bad_module_files_are_module_unreadable(host, bad):
    good = module_elf("acpi_call", K2)
    data = {
        "truncated": good[: len(good) // 3],
        "garbage": b"\x7fELF" + b"\x00" * 10 + b"nonsense" * 10,
        "bomb": modbuild.compress(b"\x00" * (300 * 1024 * 1024), "zstd"),
        "trailer_past_end": good[:100] + (10**6).to_bytes(4, "big").rjust(12, b"\0")[:8]
        + (10**6).to_bytes(4, "big") + b"~Module signature appended~\n",
    }[bad]
    s = host_with(host, sb=True, content=data)
    assert reasons(s) == ["module_unreadable"], reasons(s)
    assert s.readiness.verdict == "not_ready"
    assert s.facts.runs["module"].success  # a corrupt module is a fact about the module, not a read error


def test_loaded_vendor_module_without_a_file_for_the_new_kernel(host):
    host.kernel(K1, running=True)
    host.kernel(K2)
    host.write(f"usr/lib/modules/{K1}/extra/vendor.ko", module_elf("vendor", K1))
    host.loaded(("vendor", "OE"), ("e1000e", ""))
    host.finish()
    s = scrape(host.root)
    assert reasons(s, K2) == ["file_missing"]
    assert reasons(s, K1) == []
    # in the running kernel's extra/ (a vendor package's file) and loaded: needed by K2 for both reasons
    assert s.readiness.kernel(K2).modules[0].expected_because == ("installed_for_running_kernel", "loaded_out_of_tree")


@pytest.mark.parametrize("dkms_version, needed_on_k2", [("3.0.10", True), ("3.2.2", False)])
def test_loaded_module_dkms_excludes_from_a_kernel_is_not_needed_there(host, dkms_version, needed_on_k2):
    """BUILD_EXCLUSIVE_CONFIG keeps acpi-call away from a kernel without ACPI, but only where dkms
    reads it (3.0.11 and later, dkms.in's check_version_and_config): on Debian 12's 3.0.10 the
    line is ignored, dkms builds it for K2 too and K2 needs it (rule 3: loaded now)."""
    host.kernel(K1, running=True)
    host.kernel(K2, config={"CONFIG_ACPI": "n"})
    host.write("usr/sbin/dkms", f'#!/bin/bash\n# fixture stand-in\necho $"dkms-{dkms_version}"\n', mode=0o755)
    host.package("dkms", f"{dkms_version}-1", arch="all")
    host.dkms("acpi-call", "1.2.2", dest=["acpi_call"], extra_conf='BUILD_EXCLUSIVE_CONFIG="CONFIG_ACPI"\n')
    host.dkms_build("acpi-call", "1.2.2", K1, dest=["acpi_call"])
    host.loaded(("acpi_call", "OE"))
    host.finish()
    s = scrape(host.root)
    assert [m.module for m in s.readiness.kernel(K2).modules] == (["acpi_call"] if needed_on_k2 else [])
    assert [m.module for m in s.readiness.kernel(K1).modules] == ["acpi_call"]
    assert (s.readiness.verdict == "ready") is not needed_on_k2


@pytest.mark.parametrize(("check", "kernel_decompresses", "unreadable"), [
    ("crc64", True, True),     # Debian 13: kmod hands the .ko.xz to XZ Embedded, which refuses CRC64
    ("crc32", True, False),    # what kbuild and dkms 3.2 write
    ("none", True, False),
    ("crc64", False, False),   # no CONFIG_MODULE_DECOMPRESS: kmod decompresses with liblzma
])
def test_xz_check_the_kernels_decompressor_refuses(host, check, kernel_decompresses, unreadable):
    """The QEMU oracle booted Debian 13's 6.12.118 with a DKMS .ko.xz recompressed `xz
    --check=crc64`: EINVAL, "decompression failed with status 6" (lib/xz dec_stream_header)."""
    host.kernel(K1, running=True)
    host.kernel(K2, config={"CONFIG_MODULE_DECOMPRESS": "y", "CONFIG_MODULE_COMPRESS_XZ": "y"}
                if kernel_decompresses else None)
    host.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
    host.dkms_build("acpi-call", "1.2.2", K1, dest=["acpi_call"], key=None)
    host.dkms_build("acpi-call", "1.2.2", K2, dest=["acpi_call"], key=None)
    host.finish()
    plain = host.path(f"usr/lib/modules/{K2}/updates/dkms/acpi_call.ko")
    xz = subprocess.run([require_tool("xz"), f"--check={check}", "-c"], input=plain.read_bytes(),
                        capture_output=True, check=True).stdout
    plain.unlink()
    host.path(f"usr/lib/modules/{K2}/updates/dkms/acpi_call.ko.xz").write_bytes(xz)
    dep = host.path(f"usr/lib/modules/{K2}/modules.dep")
    dep.write_text(dep.read_text().replace("updates/dkms/acpi_call.ko:", "updates/dkms/acpi_call.ko.xz:"))
    s = scrape(host.root)
    assert reasons(s, K2) == (["module_unreadable"] if unreadable else []), s.readiness.kernel(K2).modules
    if unreadable:
        assert "xz check CRC64" in s.readiness.kernel(K2).modules[0].problems[0].detail
