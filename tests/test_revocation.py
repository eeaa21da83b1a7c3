"""Revocations the kernel loads into .blacklist (docs/readiness.md, "Revocations"): a module whose
signer is an X.509 certificate in dbx or (under Secure Boot) MokListXRT is refused whatever the
enforcement, when the kernel has CONFIG_SYSTEM_REVOCATION_LIST; TBS-hash and binary-hash entries
revoke nothing for modules, by the kernel's own code.

The revocation variables are written by the real efitools (cert-to-efi-sig-list for a
certificate, cert-to-efi-hash-list for a TBS hash), as the firmware stores them: 4 attribute
bytes and the EFI_SIGNATURE_LIST (sign-efi-sig-list only wraps that for an authenticated write,
the stored variable is the list itself).  The module is DKMS's build signed with the real key
(tests/data/keys, hostbuilder), so the revoked certificate's key verifies its signature."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1x509

import modbuild as mb
from exporter.formats.efi import EFI_CERT_X509_SHA256_GUID, parse_signature_lists
from testkit import K2, scrape
from test_module_truth import host_with, reasons

KEYS = Path(__file__).parent / "data" / "keys"
EFIVARS = "sys/firmware/efi/efivars"
DB_GUID = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
SHIM_LOCK = "605dab50-e046-4300-abb6-3dd810dd8b23"
OWNER = "605dab50-e046-4300-abb6-3dd810dd8b23"
REVOCATION_CONFIG = "CONFIG_LOAD_UEFI_KEYS=y\nCONFIG_SYSTEM_REVOCATION_LIST=y\n"


def efitools(tool: str, *args: str, out: Path) -> bytes:
    subprocess.run([mb.need_tool(tool), *args, str(out)], check=True, capture_output=True)
    return out.read_bytes()


@pytest.fixture
def revoked_cert_esl(tmp_path) -> bytes:
    return efitools("cert-to-efi-sig-list", "-g", OWNER, str(KEYS / "dkms-mok.pem"), out=tmp_path / "x509.esl")


def revoke(host, variable: str, esl: bytes, *, config: str = REVOCATION_CONFIG):
    name, guid = ("dbx", DB_GUID) if variable == "dbx" else ("MokListXRT", SHIM_LOCK)
    host.write(f"{EFIVARS}/{name}-{guid}", b"\x06\x00\x00\x00" + esl)
    cfg = host.path(f"boot/config-{K2}")
    cfg.write_text(cfg.read_text() + config)
    return scrape(host.root)


@pytest.mark.parametrize("variable", ["dbx", "MokListXRT"])
def test_a_revoked_signer_is_refused_even_enrolled(host, revoked_cert_esl, variable):
    assert reasons(host_with(host, sb=True)) == []          # enrolled in MokListRT: ready before
    s = revoke(host, variable, revoked_cert_esl)
    (p,) = [p for m in s.readiness.kernel(K2).modules for p in m.problems]
    assert p.reason == "signature_revoked" and variable in p.detail and "EKEYREJECTED" in p.detail
    assert "mok.key.revoked" in p.fix and "mokutil --import" in p.fix and "dkms install --force" in p.fix
    assert s.readiness.verdict == "not_ready"


def test_revoked_in_dbx_is_refused_without_secure_boot(host, revoked_cert_esl):
    """dbx is loaded whatever the Secure Boot state, and EKEYREJECTED is fatal unenforced."""
    host_with(host, sb=False)
    assert reasons(revoke(host, "dbx", revoked_cert_esl)) == ["signature_revoked"]


def test_mokx_is_not_trusted_without_secure_boot(host, revoked_cert_esl):
    host_with(host, sb=False)
    assert reasons(revoke(host, "MokListXRT", revoked_cert_esl)) == []


def test_no_revocation_list_in_the_kernel_config_revokes_nothing(host, revoked_cert_esl):
    """Debian 12 and 13 build without CONFIG_SYSTEM_REVOCATION_LIST: add_key_to_revocation_list()
    is then the stub that returns 0."""
    host_with(host, sb=True)
    assert reasons(revoke(host, "dbx", revoked_cert_esl, config="CONFIG_LOAD_UEFI_KEYS=y\n")) == []


def test_another_revoked_certificate_leaves_the_module_alone(host, tmp_path):
    esl = efitools("cert-to-efi-sig-list", "-g", OWNER, str(KEYS / "foreign.pem"), out=tmp_path / "f.esl")
    host_with(host, sb=True)
    assert reasons(revoke(host, "dbx", esl)) == []


def test_a_changed_module_of_a_revoked_signer_is_invalid_not_revoked(host, revoked_cert_esl):
    """The revoked key does not verify a changed module: is_key_on_revocation_list() says ENOKEY
    and the trusted keyring's check then fails it (EKEYREJECTED: signature_invalid)."""
    from hostbuilder import module_elf
    signed = bytearray(module_elf("acpi_call", K2))
    signed[64] ^= 0x01            # the first byte after the ELF header: .text, signature trailer intact
    host_with(host, sb=True, content=bytes(signed))
    assert reasons(revoke(host, "dbx", revoked_cert_esl)) == ["signature_invalid"]


def test_tbs_hash_entries_carry_a_time_and_revoke_nothing(host, tmp_path):
    """cert-to-efi-hash-list writes EFI_CERT_X509_SHA256: the certificate's TBS SHA-256 and an
    EFI_TIME (48 bytes).  The kernel blacklists "tbs:" + all 48 bytes in hex, which no 32-byte
    TBS digest it computes ever equals: no reason (docs/readiness.md, "Revocations")."""
    esl = efitools("cert-to-efi-hash-list", "-g", OWNER, str(KEYS / "dkms-mok.pem"), out=tmp_path / "tbs.esl")
    (entry,) = parse_signature_lists(esl)
    tbs = asn1x509.Certificate.load((KEYS / "dkms-mok.der").read_bytes())["tbs_certificate"].dump()
    assert entry.type_guid == EFI_CERT_X509_SHA256_GUID and len(entry.data) == 48
    assert entry.data[:32] == hashlib.sha256(tbs).digest()
    host_with(host, sb=True)
    assert reasons(revoke(host, "MokListXRT", esl)) == []
