"""Host trust facts from files: Secure Boot, shim's MOK lists, certificates, lockdown, enforcement.

Functions take already-resolved paths (the host's /sys under --path.rootfs, a config file's
text, ...) and never touch anything else.  Layouts and sources: shared/design/formats.md 6.
Malformed data raises :class:`TrustDataError`; absent data is ``None`` ("cannot know"), never a
guess.
"""

from __future__ import annotations

import hashlib
import re
import struct
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import pem
from asn1crypto import x509 as asn1x509

from .modfile import ModuleSignature, format_key_id, name_cn_like_kmod

EFI_GLOBAL_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
SHIM_LOCK_GUID = "605dab50-e046-4300-abb6-3dd810dd8b23"
EFI_CERT_X509_GUID = "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"
EFI_CERT_SHA256_GUID = "c1c41626-504c-4092-aca9-41f936934328"
EFI_CERT_X509_SHA256_GUID = "3bd2a492-96c0-4079-b420-fcf98ef103ed"

MAX_VAR_BYTES = 1024 * 1024  # MokListRT of a few dozen certificates is tens of KiB
MAX_CERT_BYTES = 1024 * 1024
MAX_CONFIG_BYTES = 16 * 1024 * 1024
_ESL_HEADER = struct.Struct("<16sIII")  # SignatureType, ListSize, HeaderSize, SignatureSize

# arch/x86 boot_params.secure_boot (offset 0x1EC), enum efi_secureboot_mode
_BOOT_PARAMS_SB_OFFSET = 0x1EC
_KERNEL_SB_MODES = {0: "unset", 1: "unknown", 2: "disabled", 3: "enabled"}


class TrustDataError(Exception):
    """Malformed trust data.  ``code``: unreadable, bad_efivar, bad_signature_list,
    bad_certificate, bad_lockdown, bad_sig_enforce, too_large."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _read_bounded(path: Path, limit: int) -> bytes | None:
    """File bytes, None when absent; bigger than ``limit`` is an error (never truncated)."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise TrustDataError("unreadable", f"{path}: {e.strerror or e}") from e
    if len(data) > limit:
        raise TrustDataError("too_large", f"{path}: more than {limit} bytes")
    return data


# ---------------------------------------------------------------------------------------------
# EFI variables and Secure Boot


@dataclass(frozen=True)
class EfiVariable:
    """An efivarfs file: 4-byte little-endian attribute mask, then the variable's data."""

    attributes: int
    data: bytes


def efivar_path(efivars_dir: Path, name: str, guid: str) -> Path:
    return efivars_dir / f"{name}-{guid}"


def read_efivar(path: Path) -> EfiVariable | None:
    """Read one efivarfs file; None when absent or zero-length (an uncommitted variable)."""
    raw = _read_bounded(path, MAX_VAR_BYTES + 4)
    if not raw:
        return None
    if len(raw) < 4:
        raise TrustDataError("bad_efivar", f"{path}: {len(raw)} bytes, shorter than the attributes")
    return EfiVariable(struct.unpack_from("<I", raw)[0], raw[4:])


def _small_int(var: EfiVariable | None) -> int | None:
    """mokutil's reading of SecureBoot/SetupMode: a 1-, 2- or 4-byte little-endian value."""
    if var is None or len(var.data) not in (1, 2, 4):
        return None
    return int.from_bytes(var.data, "little")


@dataclass(frozen=True)
class SecureBootState:
    """Secure Boot as the firmware variables and the kernel's boot-time view tell it.

    ``enabled`` follows mokutil: on iff SecureBoot==1 and SetupMode==0, off iff SecureBoot==0 or
    SetupMode==1 (a missing SecureBoot variable is off, a missing SetupMode counts as 0 as in
    the kernel's efi_get_secureboot_mode()).  When efivars cannot tell, the kernel's own view
    from boot_params is used (``source`` says which).  Non-EFI hosts: supported=False,
    enabled=False.
    """

    supported: bool
    enabled: bool | None
    setup_mode: bool | None = None
    shim_validation_disabled: bool | None = None
    kernel_view: str | None = None
    source: str | None = None
    detail: str = ""


def kernel_secure_boot_view(boot_params_data: Path) -> str | None:
    """x86 boot_params.secure_boot: unset / unknown / disabled / enabled (None if unreadable)."""
    raw = _read_bounded(boot_params_data, 64 * 1024)
    if raw is None or len(raw) <= _BOOT_PARAMS_SB_OFFSET:
        return None
    return _KERNEL_SB_MODES.get(raw[_BOOT_PARAMS_SB_OFFSET], "unknown")


def secure_boot_state(sysfs: Path) -> SecureBootState:
    """Secure Boot facts from <sysfs>/firmware/efi/efivars and <sysfs>/kernel/boot_params."""
    efi = sysfs / "firmware" / "efi"
    kernel_view = kernel_secure_boot_view(sysfs / "kernel" / "boot_params" / "data")
    if not efi.is_dir():
        return SecureBootState(False, False, kernel_view=kernel_view, source="no_efi",
                               detail="not an EFI boot: Secure Boot is not supported")
    efivars = efi / "efivars"
    if not efivars.is_dir() or not any(efivars.iterdir()):
        enabled = {"enabled": True, "disabled": False}.get(kernel_view or "")
        return SecureBootState(True, enabled, kernel_view=kernel_view,
                               source="boot_params" if enabled is not None else None,
                               detail="efivarfs is not mounted")
    sb_var = read_efivar(efivar_path(efivars, "SecureBoot", EFI_GLOBAL_GUID))
    setup_var = read_efivar(efivar_path(efivars, "SetupMode", EFI_GLOBAL_GUID))
    secure_boot = 0 if sb_var is None else _small_int(sb_var)
    setup_mode = 0 if setup_var is None else _small_int(setup_var)
    mok_sb = read_efivar(efivar_path(efivars, "MokSBStateRT", SHIM_LOCK_GUID))
    if secure_boot == 1 and setup_mode == 0:
        enabled, detail = True, "SecureBoot enabled"
    elif secure_boot == 0 or setup_mode == 1:
        enabled = False
        detail = "Platform is in Setup Mode" if setup_mode == 1 else "SecureBoot disabled"
    else:
        enabled, detail = None, "cannot determine: SecureBoot/SetupMode have unexpected sizes or values"
    return SecureBootState(
        True,
        enabled,
        setup_mode=None if setup_mode is None else setup_mode == 1,
        shim_validation_disabled=mok_sb is not None,
        kernel_view=kernel_view,
        source="efivars" if enabled is not None else None,
        detail=detail,
    )


# ---------------------------------------------------------------------------------------------
# Certificates


@dataclass(frozen=True)
class Certificate:
    """An X.509 certificate's identity as the module-signing world uses it.

    ``serial`` is in modinfo's sig_key format; ``issuer_cn``/``subject_cn`` use kmod's name
    rule (first CN, else the last attribute) so they compare equal to a module's ``signer``;
    ``skid`` is lowercase hex (as /proc/keys shows it); ``sha256`` is of the DER.
    """

    subject_cn: str
    issuer_cn: str
    serial: str
    skid: str | None
    sha256: str
    der: bytes = field(repr=False)


def load_certificate(data: bytes, origin: str = "certificate") -> Certificate:
    """Parse a DER or PEM X.509 certificate."""
    try:
        if pem.detect(data):
            type_name, _, data = pem.unarmor(data)
            if type_name != "CERTIFICATE":
                raise ValueError(f"PEM block is {type_name}, not CERTIFICATE")
        cert = asn1x509.Certificate.load(data)
        cert.native  # full parse now, so garbage fails here and not later
        tbs = cert["tbs_certificate"]
        skid = cert.key_identifier
        return Certificate(
            subject_cn=name_cn_like_kmod(tbs["subject"]),
            issuer_cn=name_cn_like_kmod(tbs["issuer"]),
            serial=format_key_id(tbs["serial_number"].native),
            skid=skid.hex() if skid is not None else None,
            sha256=hashlib.sha256(cert.dump()).hexdigest(),
            der=cert.dump(),
        )
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError, RecursionError) as e:
        # asn1crypto raises AttributeError for a REAL where a certificate field has ANY type
        raise TrustDataError("bad_certificate", f"{origin}: not an X.509 certificate: {e}") from None


def read_certificate(path: Path) -> Certificate | None:
    """A DER/PEM certificate file (/var/lib/dkms/mok.pub, .../MOK.der); None when absent."""
    raw = _read_bounded(path, MAX_CERT_BYTES)
    return None if raw is None else load_certificate(raw, str(path))


def key_trusted(sig: ModuleSignature, trusted_certs: Iterable[Certificate]) -> bool:
    """Whether the module's signing key is one of ``trusted_certs``: signer == issuer CN and
    key id == serial (what the PKCS#7 issuerAndSerialNumber names), or the SKID for
    `sign-file -k` signatures."""
    for cert in trusted_certs:
        if sig.skid is not None:
            if cert.skid == sig.skid:
                return True
        elif sig.signer == cert.issuer_cn and sig.key_id == cert.serial:
            return True
    return False


# ---------------------------------------------------------------------------------------------
# EFI_SIGNATURE_LIST / MOK lists


@dataclass(frozen=True)
class SignatureEntry:
    """One EFI_SIGNATURE_DATA: its list's type GUID, the owner GUID and the payload."""

    type_guid: str
    owner: str
    data: bytes = field(repr=False)


def parse_signature_lists(data: bytes, origin: str = "signature list") -> tuple[SignatureEntry, ...]:
    """Parse back-to-back EFI_SIGNATURE_LISTs (mokutil's signature.h layout)."""
    entries = []
    off = 0
    while off < len(data):
        if len(data) - off < _ESL_HEADER.size:
            raise TrustDataError("bad_signature_list", f"{origin}: header cut at offset {off}")
        type_raw, list_size, header_size, sig_size = _ESL_HEADER.unpack_from(data, off)
        body = _ESL_HEADER.size + header_size
        if list_size < body or off + list_size > len(data):
            raise TrustDataError(
                "bad_signature_list",
                f"{origin}: list at offset {off} claims {list_size} bytes "
                f"({len(data) - off} left, header {header_size})",
            )
        if sig_size <= 16 or (list_size - body) % sig_size:
            raise TrustDataError(
                "bad_signature_list",
                f"{origin}: list at offset {off} has SignatureSize {sig_size} that does not "
                f"divide its {list_size - body} bytes of entries",
            )
        type_guid = str(uuid.UUID(bytes_le=type_raw))
        for pos in range(off + body, off + list_size, sig_size):
            owner = str(uuid.UUID(bytes_le=data[pos : pos + 16]))
            entries.append(SignatureEntry(type_guid, owner, data[pos + 16 : pos + sig_size]))
        off += list_size
    return tuple(entries)


@dataclass(frozen=True)
class KeyList:
    """A MOK list: X.509 certificates, SHA-256 hashes and any other entries, with its source."""

    name: str
    sources: tuple[Path, ...]
    certificates: tuple[Certificate, ...] = ()
    sha256: tuple[bytes, ...] = ()
    other: tuple[SignatureEntry, ...] = ()


def key_list_from_entries(name: str, sources: tuple[Path, ...], entries: Iterable[SignatureEntry]) -> KeyList:
    """Sort parsed entries into certificates / hashes / other."""
    certs, hashes, other = [], [], []
    for i, entry in enumerate(entries):
        if entry.type_guid == EFI_CERT_X509_GUID:
            certs.append(load_certificate(entry.data, f"{name} entry {i}"))
        elif entry.type_guid == EFI_CERT_SHA256_GUID and len(entry.data) == 32:
            hashes.append(entry.data)
        else:
            other.append(entry)
    return KeyList(name, sources, tuple(certs), tuple(hashes), tuple(other))


def read_mok_list(sysfs: Path, name: str = "MokListRT") -> KeyList | None:
    """MokListRT / MokListXRT from the kernel's mokvar table (<sysfs>/firmware/efi/mok-variables,
    raw) or else efivarfs (<name>, <name>1, <name>2, ... each with attributes).  None when
    neither has the variable."""
    efi = sysfs / "firmware" / "efi"
    raw = _read_bounded(efi / "mok-variables" / name, MAX_VAR_BYTES)
    if raw is not None:
        source = efi / "mok-variables" / name
        return key_list_from_entries(name, (source,), parse_signature_lists(raw, str(source)))
    sources, entries = [], []
    for i in range(0, 64):
        path = efivar_path(efi / "efivars", f"{name}{i or ''}", SHIM_LOCK_GUID)
        var = read_efivar(path)
        if var is None:
            break
        sources.append(path)
        entries.extend(parse_signature_lists(var.data, str(path)))
    if not sources:
        return None
    return key_list_from_entries(name, tuple(sources), entries)


def mok_keys_trusted(sysfs: Path) -> bool | None:
    """Whether shim asked the kernel to trust MOK keys for the .machine keyring: the kernel
    (6.1 load_uefi.c uefi_check_trust_mok_keys) looks only in the mokvar table.  None when the
    mokvar table is not visible (no EFI, older shim, or not readable)."""
    mokvars = sysfs / "firmware" / "efi" / "mok-variables"
    try:
        names = {p.name for p in mokvars.iterdir()}
    except FileNotFoundError:
        return None
    except OSError as e:
        raise TrustDataError("unreadable", f"{mokvars}: {e.strerror or e}") from e
    return "MokListTrustedRT" in names


# ---------------------------------------------------------------------------------------------
# Lockdown, sig_enforce, kernel config, enforcement


def read_lockdown(path: Path) -> str | None:
    """Active level from securityfs `lockdown` (`[none] integrity confidentiality`); None when
    absent (lockdown LSM not built or securityfs not mounted)."""
    raw = _read_bounded(path, 4096)
    if raw is None:
        return None
    m = re.search(r"\[([a-z]+)\]", raw.decode("ascii", "replace"))
    if not m:
        raise TrustDataError("bad_lockdown", f"{path}: no [active] level in {raw[:80]!r}")
    return m.group(1)


def read_sig_enforce(path: Path) -> bool | None:
    """`module.sig_enforce` (Y/N); None when absent (kernel without CONFIG_MODULE_SIG)."""
    raw = _read_bounded(path, 64)
    if raw is None:
        return None
    value = raw.strip()
    if value in (b"Y", b"1"):
        return True
    if value in (b"N", b"0"):
        return False
    raise TrustDataError("bad_sig_enforce", f"{path}: {raw[:20]!r} is not Y/N")


def parse_kernel_config(text: str) -> dict[str, str]:
    """`/boot/config-K` as {CONFIG_X: value}; `# CONFIG_X is not set` becomes "n"."""
    config = {}
    for line in text.splitlines():
        line = line.strip()
        m = re.fullmatch(r"# (CONFIG_\w+) is not set", line)
        if m:
            config[m.group(1)] = "n"
            continue
        if line.startswith("CONFIG_") and "=" in line:
            key, value = line.split("=", 1)
            config[key] = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    return config


def read_kernel_config(path: Path) -> dict[str, str] | None:
    """parse_kernel_config of a file; None when absent."""
    raw = _read_bounded(path, MAX_CONFIG_BYTES)
    return None if raw is None else parse_kernel_config(raw.decode("utf-8", "replace"))


@dataclass(frozen=True)
class ModuleSigConfig:
    """The config options that decide module-signature checking."""

    module_sig: bool
    sig_force: bool
    sig_all: bool
    sig_hash: str | None
    lockdown_lsm: bool
    lockdown_in_efi_secure_boot: bool
    lockdown_forced: str | None  # "integrity" / "confidentiality" when built in as the minimum


def module_sig_config(config: Mapping[str, str]) -> ModuleSigConfig:
    on = lambda key: config.get(key) == "y"  # noqa: E731
    forced = None
    if on("CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY"):
        forced = "confidentiality"
    elif on("CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY"):
        forced = "integrity"
    return ModuleSigConfig(
        module_sig=on("CONFIG_MODULE_SIG"),
        sig_force=on("CONFIG_MODULE_SIG_FORCE"),
        sig_all=on("CONFIG_MODULE_SIG_ALL"),
        sig_hash=config.get("CONFIG_MODULE_SIG_HASH"),
        lockdown_lsm=on("CONFIG_SECURITY_LOCKDOWN_LSM"),
        lockdown_in_efi_secure_boot=on("CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT"),
        lockdown_forced=forced,
    )


def signature_enforced(
    config: Mapping[str, str] | None,
    sig_enforce: bool | None,
    lockdown: str | None,
    secure_boot: bool | None,
) -> bool | None:
    """Will an unsigned module (or one signed by an untrusted key) be refused?

    formats.md 6.4: yes iff sig_enforce=Y, or CONFIG_MODULE_SIG_FORCE=y, or lockdown is
    integrity/confidentiality (forced by config, or raised at boot by Secure Boot with
    CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT).  No CONFIG_MODULE_SIG means signatures are never
    checked.  Any input may be None (unknown); the answer is None when an unknown input could
    change it.
    """
    cfg = module_sig_config(config) if config is not None else None
    if cfg is not None and not cfg.module_sig:
        return False
    if sig_enforce or lockdown in ("integrity", "confidentiality"):
        return True
    if cfg is not None and (
        cfg.sig_force
        or cfg.lockdown_forced
        or (cfg.lockdown_in_efi_secure_boot and secure_boot is True)
    ):
        return True
    if cfg is None or sig_enforce is None:
        return None
    if lockdown is None and cfg.lockdown_lsm:
        return None
    if secure_boot is None and cfg.lockdown_in_efi_secure_boot:
        return None
    return False
