"""The exporter's trust readers on files captured from a real Secure Boot boot (OVMF + Debian's
shim 16 + grub + the signed 6.1 kernel, tests/data/keys/dkms-mok.der enrolled as a MOK), not on
hand-made bytes.  tests/data/efi-captures/README.md says how they were made and how to refresh them.
These tests do not boot anything."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from testkit import scrape
from hostbuilder import KEYS

from exporter.collectors.secureboot import (
    mok_keys_trusted,
    read_efivar,
    read_lockdown,
    read_mok_list,
    read_sig_enforce,
    secure_boot_state,
)
from exporter.formats.efi import EFI_GLOBAL_GUID, SHIM_LOCK_GUID
from exporter.formats.x509 import load_certificate
from exporter.facts.secureboot import TrustFacts

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "efi-captures"
SYS = CAPTURES / "sys"
DEBIAN_CA = "Debian Secure Boot CA"
K_OLD, K_NEW = "6.1.0-27-amd64", "6.1.0-28-amd64"


def cert(stem: str):
    return load_certificate((KEYS / f"{stem}.der").read_bytes())


def test_the_captures_are_from_a_secure_boot_boot() -> None:
    provenance = json.loads((CAPTURES / "PROVENANCE.json").read_text())
    assert provenance["facts"]["efi"] == "yes"
    assert provenance["facts"]["sig_enforce"] == "Y"
    assert set(provenance["files"]) == {str(p.relative_to(CAPTURES)) for p in CAPTURES.rglob("*")
                                        if p.is_file() and p.name not in ("README.md", "PROVENANCE.json")}


def test_secure_boot_state_from_real_efivars_and_boot_params() -> None:
    state = secure_boot_state(SYS)
    assert (state.supported, state.enabled, state.setup_mode, state.source) == (True, True, False, "efivars")
    assert state.shim_validation_disabled is False  # no MokSBStateRT: shim validates
    # the kernel's own view, from the real boot_params page (secure_boot byte at 0x1EC)
    assert state.kernel_view == "enabled"


def test_real_efivar_attributes_are_kept_apart_from_the_value() -> None:
    sb = read_efivar(SYS / "firmware/efi/efivars" / f"SecureBoot-{EFI_GLOBAL_GUID}")
    assert sb.data == b"\x01" and sb.attributes == 0x06           # BS|RT, volatile
    mok = read_efivar(SYS / "firmware/efi/efivars" / f"MokListRT-{SHIM_LOCK_GUID}")
    assert mok.attributes == 0x06
    # the mokvar table holds the same list, without the attribute bytes
    assert mok.data == (SYS / "firmware/efi/mok-variables/MokListRT").read_bytes()


def test_mok_list_as_shim_really_makes_it() -> None:
    """Shim puts its built-in vendor certificate (Debian's CA) in front of the enrolled MOKs."""
    moks = read_mok_list(SYS)
    assert moks.sources == (SYS / "firmware/efi/mok-variables/MokListRT",)
    assert [c.subject_cn for c in moks.certificates] == [DEBIAN_CA, "DKMS module signing key"]
    assert moks.certificates[1].sha256 == cert("dkms-mok").sha256
    assert moks.sha256 == () and moks.other == ()


def test_mok_list_from_efivarfs_when_the_mokvar_table_is_absent(tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    shutil.copytree(SYS, sysfs)
    shutil.rmtree(sysfs / "firmware/efi/mok-variables")
    moks = read_mok_list(sysfs)
    assert moks.sources == (sysfs / "firmware/efi/efivars" / f"MokListRT-{SHIM_LOCK_GUID}",)
    assert [c.sha256 for c in moks.certificates] == [c.sha256 for c in read_mok_list(SYS).certificates]
    assert mok_keys_trusted(sysfs) is None  # only the mokvar table tells the kernel to trust MOKs


def test_shim_16_asks_the_kernel_to_trust_moks() -> None:
    assert mok_keys_trusted(SYS) is True    # MokListTrustedRT is in the mokvar table


def test_denylist_is_a_real_signature_list() -> None:
    xrt = read_mok_list(SYS, "MokListXRT")
    assert xrt is not None and xrt.certificates == ()
    assert xrt.sha256 or xrt.other  # shim's vendor dbx entries


def test_lockdown_and_sig_enforce_as_the_kernel_wrote_them() -> None:
    assert read_lockdown(SYS / "kernel/security/lockdown") == "integrity"
    assert read_sig_enforce(SYS / "module/module/parameters/sig_enforce") is True


def test_the_kernel_keyrings_hold_the_mok_by_the_exporters_key_id() -> None:
    """/proc/keys names asymmetric keys '<CN>: <SKID hex>': the exporter's SKID formatting must be
    the kernel's, and the enrolled MOK must have reached a keyring."""
    keys = (CAPTURES / "proc/keys").read_text()
    names = dict(re.findall(r"asymmetri (.+?): ([0-9a-f]{40}):", keys))
    mok = cert("dkms-mok")
    assert names.get(mok.subject_cn) == mok.skid
    assert DEBIAN_CA in names
    assert re.search(r"keyring\s+\.machine: [1-9]", keys)  # MOKs trusted (MokListTrustedRT)


@pytest.fixture
def sb_host(host):
    """A fixture host with the captured sysfs: Secure Boot on, dkms-mok enrolled (really)."""
    host.kernel(K_OLD, running=True)
    host.kernel(K_NEW)
    for name, key in (("acpi-call", "dkms-mok"), ("v4l2loopback", "foreign"), ("zfs", None)):
        mod = name.replace("-", "_")
        host.dkms(name, "1.0", dest=[mod])
        for k in (K_OLD, K_NEW):
            host.dkms_build(name, "1.0", k, dest=[mod], key=key)
    shutil.copytree(SYS, host.root / "sys", dirs_exist_ok=True)
    host.write("var/lib/dkms/mok.pub", (KEYS / "dkms-mok.der").read_bytes())
    host.grub()
    host.finish()
    return host


def test_full_check_on_a_host_with_the_captured_efivars(sb_host) -> None:
    s = scrape(sb_host.root)
    assert s.facts.get(TrustFacts).secure_boot.enabled is True
    got = {m.module: [p.reason for p in m.problems] for m in s.readiness.kernel(K_NEW).modules}
    assert got == {"acpi_call": [], "v4l2loopback": ["untrusted_key"], "zfs": ["unsigned"]}
    assert s.readiness.verdict == "not_ready"
