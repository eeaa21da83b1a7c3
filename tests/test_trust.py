"""exporter.trust: efivars fixtures, MOK lists (checked against efitools), certificates (checked
against openssl x509), lockdown / sig_enforce / kernel config, and module key trust."""

from __future__ import annotations

import re
import struct
import subprocess
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import modbuild as mb
from exporter.collectors.module import read_module
from exporter.collectors.secureboot import (
    mok_keys_trusted,
    read_certificate,
    read_efivar,
    read_lockdown,
    read_mok_list,
    read_sig_enforce,
    secure_boot_state,
)
from exporter.formats.efi import (
    EFI_CERT_SHA256_GUID,
    EFI_CERT_X509_GUID,
    EFI_GLOBAL_GUID,
    SHIM_LOCK_GUID,
    key_list_from_entries,
    parse_signature_lists,
)
from exporter.formats.errors import TrustDataError
from exporter.formats.kconfig import KconfigError, parse_kernel_config
from exporter.formats.x509 import load_certificate
from exporter.verdict.trust import signature_enforced, signing_certificate

ATTR_BS_RT = 0x6
ATTR_NV_BS_RT = 0x7
OWNER = "605dab50-e046-4300-abb6-3dd810dd8b23"


def efivar(sysfs: Path, name: str, guid: str, data: bytes, attributes: int = ATTR_BS_RT) -> Path:
    """An efivarfs file exactly as the kernel presents it: u32 LE attributes, then the data."""
    path = sysfs / "firmware" / "efi" / "efivars" / f"{name}-{guid}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<I", attributes) + data)
    return path


def boot_params(sysfs: Path, mode: int) -> None:
    path = sysfs / "kernel" / "boot_params" / "data"
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = bytearray(4096)
    raw[0x1EC] = mode
    path.write_bytes(bytes(raw))


def esl(type_guid: str, entries: list[bytes], owner: str = OWNER, header: bytes = b"") -> bytes:
    """An EFI_SIGNATURE_LIST built from the UEFI spec layout (mokutil's signature.h)."""
    sig_size = 16 + max(len(e) for e in entries)
    body = b"".join(uuid.UUID(owner).bytes_le + e.ljust(sig_size - 16, b"\0") for e in entries)
    return (
        uuid.UUID(type_guid).bytes_le
        + struct.pack("<III", 28 + len(header) + len(body), len(header), sig_size)
        + header
        + body
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, mb.SigningKey]:
    d = tmp_path_factory.mktemp("trustkeys")
    return {
        "enrolled": mb.make_signing_key(d, serial=0x00F1E2D3C4B5A69788, stem="enrolled"),
        "other": mb.make_signing_key(d, cn="DKMS module signing key", stem="other"),
        "small": mb.make_signing_key(d, cn="Small serial", serial=0x0A0B, stem="small"),
    }


# ---------------------------------------------------------------------------------------------
# Secure Boot


@pytest.mark.parametrize(
    "secure_boot, setup_mode, enabled, setup, detail",
    [
        (b"\x01", b"\x00", True, False, "SecureBoot enabled"),
        (b"\x00", b"\x00", False, False, "SecureBoot disabled"),
        (b"\x01", b"\x01", False, True, "Platform is in Setup Mode"),
        (b"\x00", b"\x01", False, True, "Platform is in Setup Mode"),
        # the kernel reads each into a u8 (efi_get_secureboot_mode): a SecureBoot of another size
        # is "Could not determine", and it boots without Secure Boot lockdown
        (b"\x01\x00", b"\x00", False, False, "2 bytes, not 1: the kernel cannot determine"),
        (b"\x01\x00\x00\x00", b"\x00", False, False, "4 bytes"),
        # a SetupMode it cannot read counts as 0; any non-zero SecureBoot byte is on
        (b"\x01", b"\x01\x00\x00\x00", True, False, "SecureBoot enabled"),
        (b"\x02", b"\x00", True, False, "SecureBoot enabled"),
        (b"\xff", b"\x02", True, False, "SecureBoot enabled"),
    ],
)
def test_secure_boot_efivars(tmp_path, secure_boot, setup_mode, enabled, setup, detail):
    efivar(tmp_path, "SecureBoot", EFI_GLOBAL_GUID, secure_boot)
    efivar(tmp_path, "SetupMode", EFI_GLOBAL_GUID, setup_mode)
    state = secure_boot_state(tmp_path)
    assert state.supported and state.enabled is enabled and state.setup_mode is setup
    assert detail in state.detail
    assert state.shim_validation_disabled is False
    assert state.source == "efivars"


def test_secure_boot_variable_missing_means_disabled(tmp_path):
    efivar(tmp_path, "SetupMode", EFI_GLOBAL_GUID, b"\x00")
    assert secure_boot_state(tmp_path).enabled is False


def test_setup_mode_missing_counts_as_user_mode(tmp_path):
    efivar(tmp_path, "SecureBoot", EFI_GLOBAL_GUID, b"\x01")
    assert secure_boot_state(tmp_path).enabled is True


def test_moksbstate_means_shim_validation_disabled(tmp_path):
    efivar(tmp_path, "SecureBoot", EFI_GLOBAL_GUID, b"\x01")
    efivar(tmp_path, "SetupMode", EFI_GLOBAL_GUID, b"\x00")
    efivar(tmp_path, "MokSBStateRT", SHIM_LOCK_GUID, b"\x01")
    state = secure_boot_state(tmp_path)
    assert state.enabled is True and state.shim_validation_disabled is True


def test_not_an_efi_host(tmp_path):
    boot_params(tmp_path, 0)
    state = secure_boot_state(tmp_path)
    assert (state.supported, state.enabled, state.kernel_view) == (False, False, "unset")
    assert "not supported" in state.detail


@pytest.mark.parametrize("mode, view, enabled", [(3, "enabled", True), (2, "disabled", False), (1, "unknown", None)])
def test_efivarfs_not_mounted_falls_back_to_boot_params(tmp_path, mode, view, enabled):
    (tmp_path / "firmware" / "efi" / "efivars").mkdir(parents=True)
    boot_params(tmp_path, mode)
    state = secure_boot_state(tmp_path)
    assert state.supported and state.kernel_view == view and state.enabled is enabled
    assert state.source == ("boot_params" if enabled is not None else None)


def test_efivar_files(tmp_path):
    path = efivar(tmp_path, "SecureBoot", EFI_GLOBAL_GUID, b"\x01", ATTR_NV_BS_RT)
    var = read_efivar(path)
    assert (var.attributes, var.data) == (7, b"\x01")
    path.write_bytes(b"")  # uncommitted variable
    assert read_efivar(path) is None
    assert read_efivar(tmp_path / "nope") is None
    path.write_bytes(b"\x06\x00")
    with pytest.raises(TrustDataError) as e:
        read_efivar(path)
    assert e.value.code == "bad_efivar"


# ---------------------------------------------------------------------------------------------
# Certificates, compared with openssl x509


def openssl_x509(path: Path) -> dict[str, str]:
    out = subprocess.run(
        [mb.need_tool("openssl"), "x509", "-in", str(path), "-noout", "-serial", "-fingerprint",
         "-sha256", "-subject", "-issuer", "-ext", "subjectKeyIdentifier", "-nameopt", "multiline"],
        capture_output=True, text=True, check=True,
    ).stdout
    fields = {
        "serial": re.search(r"serial=(\w+)", out).group(1),
        "sha256": re.search(r"Fingerprint=([0-9A-F:]+)", out).group(1).replace(":", "").lower(),
        "skid": re.search(r"Subject Key Identifier:\s*\n\s*([0-9A-F:]+)", out).group(1).replace(":", "").lower(),
    }
    cns = re.findall(r"commonName\s*=\s*(.+)", out)
    fields["subject_cn"], fields["issuer_cn"] = cns[0].strip(), cns[1].strip()
    return fields


@pytest.mark.parametrize("name", ["enrolled", "other", "small"])
@pytest.mark.parametrize("form", ["der", "pem"])
def test_certificate_fields_equal_openssl(keys, name, form):
    key = keys[name]
    cert = read_certificate(key.cert_der if form == "der" else key.cert_pem)
    truth = openssl_x509(key.cert_pem)
    serial_hex = truth["serial"].lstrip("0") or "0"
    serial_hex = serial_hex.rjust(len(serial_hex) + len(serial_hex) % 2, "0")
    assert cert.serial == ":".join(re.findall("..", serial_hex))
    assert (cert.sha256, cert.skid, cert.subject_cn, cert.issuer_cn) == (
        truth["sha256"], truth["skid"], truth["subject_cn"], truth["issuer_cn"]
    )
    assert cert.der == key.der


def test_certificate_serial_is_the_modinfo_key_id(tmp_path, keys):
    """The certificate side and the module side use one format: modinfo's sig_key."""
    for key in keys.values():
        module = tmp_path / "m.ko"
        base = mb.build_module(mb.ModSpec(), tmp_path / "base.ko").read_bytes()
        module.write_bytes(mb.sign_module(base, key))
        cert = read_certificate(key.cert_der)
        assert cert.serial == mb.modinfo_field(module, "sig_key")
        assert cert.issuer_cn == mb.modinfo_field(module, "signer")


@pytest.mark.parametrize(
    "data",
    [b"", b"not a certificate", b"\x30\x82\x01\x00" + b"\x00" * 10,
     b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
)
def test_bad_certificates(data):
    with pytest.raises(TrustDataError) as e:
        load_certificate(data, "mok.pub")
    assert e.value.code == "bad_certificate" and "mok.pub" in e.value.message


def test_missing_certificate_file(tmp_path):
    assert read_certificate(tmp_path / "var/lib/dkms/mok.pub") is None


# ---------------------------------------------------------------------------------------------
# MOK lists


def test_esl_layout_equals_efitools(tmp_path, keys):
    """Our fixture ESL is byte-identical to efitools' cert-to-efi-sig-list output, and parses
    back to the same certificate sig-list-to-certs extracts."""
    key = keys["enrolled"]
    out = tmp_path / "MokListRT.esl"
    subprocess.run(
        [mb.need_tool("cert-to-efi-sig-list"), "-g", OWNER, str(key.cert_pem), str(out)],
        check=True, capture_output=True,
    )
    assert out.read_bytes() == esl(EFI_CERT_X509_GUID, [key.der])
    subprocess.run([mb.need_tool("sig-list-to-certs"), str(out), str(tmp_path / "back")],
                   check=True, capture_output=True)
    (entry,) = parse_signature_lists(out.read_bytes())
    assert (entry.type_guid, entry.owner) == (EFI_CERT_X509_GUID, OWNER)
    assert entry.data == (tmp_path / "back-0.der").read_bytes() == key.der


def test_mok_list_from_efivars(tmp_path, keys):
    efivar(tmp_path, "MokListRT", SHIM_LOCK_GUID, esl(EFI_CERT_X509_GUID, [keys["enrolled"].der]))
    mok = read_mok_list(tmp_path)
    assert [c.der for c in mok.certificates] == [keys["enrolled"].der]
    assert mok.sources == (tmp_path / "firmware/efi/efivars" / f"MokListRT-{SHIM_LOCK_GUID}",)
    assert read_mok_list(tmp_path, "MokListXRT") is None


def test_mok_list_split_variables_and_hashes(tmp_path, keys):
    digest = bytes(range(32))
    efivar(tmp_path, "MokListRT", SHIM_LOCK_GUID, esl(EFI_CERT_X509_GUID, [keys["enrolled"].der]))
    efivar(tmp_path, "MokListRT1", SHIM_LOCK_GUID,
           esl(EFI_CERT_X509_GUID, [keys["small"].der]) + esl(EFI_CERT_SHA256_GUID, [digest, digest[::-1]]))
    mok = read_mok_list(tmp_path)
    assert [c.serial for c in mok.certificates] == ["F1:E2:D3:C4:B5:A6:97:88", "0A:0B"]
    assert mok.sha256 == (digest, digest[::-1]) and len(mok.sources) == 2


def test_mokvar_table_is_preferred(tmp_path, keys):
    efivar(tmp_path, "MokListRT", SHIM_LOCK_GUID, esl(EFI_CERT_X509_GUID, [keys["other"].der]))
    raw = tmp_path / "firmware/efi/mok-variables/MokListRT"
    raw.parent.mkdir(parents=True)
    raw.write_bytes(esl(EFI_CERT_X509_GUID, [keys["enrolled"].der]))  # no attribute prefix
    mok = read_mok_list(tmp_path)
    assert [c.der for c in mok.certificates] == [keys["enrolled"].der] and mok.sources == (raw,)


def test_mok_keys_trusted(tmp_path):
    assert mok_keys_trusted(tmp_path) is None
    mokvars = tmp_path / "firmware/efi/mok-variables"
    mokvars.mkdir(parents=True)
    assert mok_keys_trusted(tmp_path) is False
    (mokvars / "MokListTrustedRT").write_bytes(b"\x01")
    assert mok_keys_trusted(tmp_path) is True


@pytest.mark.parametrize(
    "data",
    [
        b"\x00" * 10,  # header cut
        esl(EFI_CERT_X509_GUID, [b"x" * 40])[:-5],  # list longer than the data
        uuid.UUID(EFI_CERT_X509_GUID).bytes_le + struct.pack("<III", 28 + 32, 0, 0) + b"\0" * 32,  # SignatureSize 0
        uuid.UUID(EFI_CERT_X509_GUID).bytes_le + struct.pack("<III", 28 + 30, 0, 20) + b"\0" * 30,  # not divisible
        uuid.UUID(EFI_CERT_X509_GUID).bytes_le + struct.pack("<III", 10, 0, 20),  # size < header
    ],
)
def test_garbage_signature_lists(data):
    with pytest.raises(TrustDataError) as e:
        parse_signature_lists(data, "MokListRT")
    assert e.value.code == "bad_signature_list" and "MokListRT" in e.value.message


def test_garbage_certificate_in_a_mok_list(tmp_path):
    efivar(tmp_path, "MokListRT", SHIM_LOCK_GUID, esl(EFI_CERT_X509_GUID, [b"\x30\x03\x02\x01\x01"]))
    with pytest.raises(TrustDataError) as e:
        read_mok_list(tmp_path)
    assert e.value.code == "bad_certificate" and "MokListRT entry 0" in e.value.message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_signature_lists(data):
    for blob in (data, uuid.UUID(EFI_CERT_X509_GUID).bytes_le + data):
        try:
            key_list_from_entries("MokListRT", (), parse_signature_lists(blob))
        except TrustDataError as e:
            assert e.code in ("bad_signature_list", "bad_certificate")


# ---------------------------------------------------------------------------------------------
# Module key trust


def test_enrolled_untrusted_and_unsigned_modules(tmp_path, keys):
    efivar(tmp_path, "MokListRT", SHIM_LOCK_GUID, esl(EFI_CERT_X509_GUID, [keys["enrolled"].der]))
    enrolled = read_mok_list(tmp_path).certificates
    base = mb.build_module(mb.ModSpec(), tmp_path / "base.ko").read_bytes()
    paths = {}
    for label, data in (
        ("trusted", mb.sign_module(base, keys["enrolled"])),
        ("untrusted", mb.sign_module(base, keys["other"])),
        ("unsigned", base),
    ):
        paths[label] = tmp_path / f"{label}.ko.zst"
        paths[label].write_bytes(mb.compress(data, "zstd"))
    assert signing_certificate(read_module(paths["trusted"]).signature, enrolled) is not None
    assert signing_certificate(read_module(paths["untrusted"]).signature, enrolled) is None
    assert read_module(paths["unsigned"]).signature is None
    # same CN, different serial: still untrusted (the issuerAndSerialNumber must match)
    assert read_module(paths["untrusted"]).signature.signer == enrolled[0].issuer_cn


@pytest.mark.slow
def test_skid_signed_module_trust(tmp_path, keys):
    base = mb.build_module(mb.ModSpec(), tmp_path / "base.ko")
    key = keys["enrolled"]
    subprocess.run(
        [str(mb.sign_file_binary()), "-k", "sha256", str(key.key_pem), str(key.cert_der), str(base)],
        check=True, capture_output=True,
    )
    sig = read_module(base).signature
    assert signing_certificate(sig, [read_certificate(key.cert_der)]) is not None
    assert signing_certificate(sig, [read_certificate(keys["other"].cert_der)]) is None


# ---------------------------------------------------------------------------------------------
# Lockdown, sig_enforce, kernel config, enforcement


@pytest.mark.parametrize(
    "text, level",
    [("[none] integrity confidentiality\n", "none"), ("none [integrity] confidentiality\n", "integrity"),
     ("none integrity [confidentiality]\n", "confidentiality")],
)
def test_lockdown(tmp_path, text, level):
    path = tmp_path / "lockdown"
    path.write_text(text)
    assert read_lockdown(path) == level


def test_lockdown_absent_and_garbage(tmp_path):
    assert read_lockdown(tmp_path / "lockdown") is None
    (tmp_path / "lockdown").write_text("none integrity\n")
    with pytest.raises(TrustDataError) as e:
        read_lockdown(tmp_path / "lockdown")
    assert e.value.code == "bad_lockdown"


def test_sig_enforce(tmp_path):
    path = tmp_path / "sig_enforce"
    assert read_sig_enforce(path) is None
    path.write_text("Y\n")
    assert read_sig_enforce(path) is True
    path.write_text("N\n")
    assert read_sig_enforce(path) is False
    path.write_text("maybe\n")
    with pytest.raises(TrustDataError):
        read_sig_enforce(path)


@pytest.fixture(scope="module")
def debian_config_bytes() -> bytes:
    return Path(mb.real_kernels()[0].config).read_bytes()


@pytest.fixture(scope="module")
def debian_config(debian_config_bytes) -> dict[str, str]:
    return parse_kernel_config(debian_config_bytes)


@pytest.mark.slow
def test_real_debian_config(debian_config):
    """formats.md 6.4 VERIFIED values of Debian 12's /boot/config-6.1.0-*-amd64."""
    assert debian_config["CONFIG_MODULE_SIG"] == "y"
    assert debian_config["CONFIG_MODULE_SIG_FORCE"] == "n"
    assert debian_config["CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT"] == "y"
    assert debian_config["CONFIG_MODULE_SIG_HASH"] == "sha256"  # quotes removed


WHOLE = b"CONFIG_MODULES=y\nCONFIG_MODULE_SIG=y\nCONFIG_CRYPTO=y\n"


def test_parse_kernel_config():
    cfg = parse_kernel_config(b'CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="x y"\n# comment\nCONFIG_D=0x10\n' + WHOLE)
    assert cfg == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": "x y", "CONFIG_D": "0x10",
                   "CONFIG_MODULES": "y", "CONFIG_MODULE_SIG": "y", "CONFIG_CRYPTO": "y"}
    # no modules: nothing to sign, so no CONFIG_MODULE_SIG line is owed
    assert parse_kernel_config(b"# CONFIG_MODULES is not set\nCONFIG_CRYPTO=y\n")["CONFIG_MODULES"] == "n"


@pytest.mark.parametrize("data, says", [
    (b"", "no CONFIG_MODULES line"),
    (b"\x00" * 4096, "no CONFIG_MODULES line"),
    (b"<html>not found</html>\n", "no CONFIG_MODULES line"),
    (WHOLE[:-3], "no newline"),
    (b"CONFIG_MODULES=y\nCONFIG_CRYPTO=y\n", "without a CONFIG_MODULE_SIG line"),
    (b"CONFIG_MODULES=y\nCONFIG_MODULE_SIG=y\n", "no CONFIG_CRYPTO line"),
])
def test_a_config_kconfig_did_not_write_whole_is_an_error(data, says):
    """Read as a smaller config, it would turn the options it lost off: lockdown, forced signatures."""
    with pytest.raises(KconfigError, match=says):
        parse_kernel_config(data)


@pytest.mark.slow
def test_every_cut_of_a_real_config_that_loses_a_deciding_option_is_an_error(debian_config_bytes, debian_config):
    """Debian's real config cut at 400 places (every 97th byte offset and every 29th line end):
    whenever the cut loses an option the signature verdict reads, the file is refused."""
    deciding = ("CONFIG_MODULE_SIG", "CONFIG_MODULE_SIG_FORCE", "CONFIG_SECURITY_LOCKDOWN_LSM",
                "CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT", "CONFIG_LOCK_DOWN_KERNEL_FORCE_NONE")
    assert all(k in debian_config for k in deciding)
    data = debian_config_bytes
    ends = [i + 1 for i, b in enumerate(data) if b == 0x0A]
    cuts = sorted(set(range(1, len(data), max(1, len(data) // 200))) | set(ends[::max(1, len(ends) // 200)]))
    refused = 0
    for cut in cuts:
        try:
            got = parse_kernel_config(data[:cut])
        except KconfigError:
            refused += 1
            continue
        assert all(got.get(k) == debian_config[k] for k in deciding), f"cut at {cut} read as whole"
    assert refused > len(cuts) * 0.9, (refused, len(cuts))


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig_enforce, lockdown, secure_boot, expected",
    [
        (False, "none", False, False),  # Debian, no SB: unsigned modules load (taint E)
        (False, "none", True, True),  # SB raises lockdown to integrity at next boot
        (False, "integrity", None, True),
        (True, "none", False, True),
        (False, "none", None, None),  # SB unknown and it would matter
        (None, "none", False, None),
        (False, None, False, None),  # lockdown LSM built, level unknown
    ],
)
def test_signature_enforced_on_debian(debian_config, sig_enforce, lockdown, secure_boot, expected):
    assert signature_enforced(debian_config, sig_enforce, lockdown, secure_boot) is expected


def test_signature_enforced_config_variants():
    base = {"CONFIG_MODULE_SIG": "y", "CONFIG_SECURITY_LOCKDOWN_LSM": "y"}
    assert signature_enforced({**base, "CONFIG_MODULE_SIG_FORCE": "y"}, False, "none", False) is True
    assert signature_enforced({**base, "CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY": "y"}, False, None, None) is True
    assert signature_enforced({"CONFIG_MODULE_SIG": "y"}, False, None, None) is False  # no lockdown LSM
    assert signature_enforced({"CONFIG_MODULE_SIG": "n"}, True, "integrity", True) is False  # never checked
    assert signature_enforced(None, False, "none", False) is None
    assert signature_enforced(None, True, None, None) is True
