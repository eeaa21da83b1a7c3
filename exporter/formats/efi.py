"""EFI variables as efivarfs and the kernel's mokvar table show them, and EFI_SIGNATURE_LISTs.

Pure parsers of bytes: an efivarfs file is a 4-byte attribute mask then the data; db, dbx,
MokListRT, MokListXRT hold back-to-back EFI_SIGNATURE_LISTs (UEFI spec 2.10 section 32.4.1,
mokutil's signature.h).  Malformed data raises :class:`TrustDataError`.  Layouts and their
sources: docs/formats.md, "EFI variables and signature lists".
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TrustDataError
from .x509 import Certificate, load_certificate

EFI_GLOBAL_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"


SHIM_LOCK_GUID = "605dab50-e046-4300-abb6-3dd810dd8b23"


EFI_CERT_X509_GUID = "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"


EFI_CERT_SHA256_GUID = "c1c41626-504c-4092-aca9-41f936934328"


EFI_CERT_X509_SHA256_GUID = "3bd2a492-96c0-4079-b420-fcf98ef103ed"
DB_GUID = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"          # EFI_IMAGE_SECURITY_DATABASE_GUID: db, dbx
LOADER_GUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"      # systemd-boot's LoaderEntry* variables

MAX_VAR_BYTES = 1024 * 1024  # MokListRT of a few dozen certificates is tens of KiB


_ESL_HEADER = struct.Struct("<16sIII")  # SignatureType, ListSize, HeaderSize, SignatureSize



@dataclass(frozen=True)
class EfiVariable:
    """An efivarfs file: 4-byte little-endian attribute mask, then the variable's data."""

    attributes: int
    data: bytes


def parse_efivar(raw: bytes, origin: str = "efivar") -> EfiVariable | None:
    """One efivarfs file's bytes; None when zero-length (a variable being written or deleted)."""
    if not raw:
        return None
    if len(raw) < 4:
        raise TrustDataError("bad_efivar", f"{origin}: {len(raw)} bytes, shorter than the attributes")
    return EfiVariable(struct.unpack_from("<I", raw)[0], raw[4:])


def efi_string(raw: bytes | None) -> str | None:
    """A UTF-16LE string variable (LoaderEntryDefault, ...) after its 4 attribute bytes."""
    if not raw or len(raw) < 6:
        return None
    return raw[4:].decode("utf-16-le", "replace").rstrip("\0") or None


def one_byte(var: EfiVariable | None) -> int | None:
    """The value of a one-byte variable (SecureBoot, SetupMode), as the kernel reads it into a
    u8: None when absent or of another size (GetVariable answers EFI_BUFFER_TOO_SMALL)."""
    if var is None or len(var.data) != 1:
        return None
    return var.data[0]


def kernel_secure_boot_mode(secure_boot: EfiVariable | None,
                            setup_mode: EfiVariable | None) -> tuple[bool, str]:
    """Secure Boot as the kernel's EFI stub decides it from the same variables (include/linux/efi.h,
    efi_get_secureboot_mode): each is read into one byte, so a SecureBoot of any other size is an
    error there ("Could not determine UEFI Secure Boot status"), and the kernel boots without
    Secure Boot lockdown; a SetupMode it cannot read counts as 0; any non-zero SecureBoot is on."""
    if secure_boot is None:
        return False, "SecureBoot disabled (no SecureBoot variable)"
    value = one_byte(secure_boot)
    if value is None:
        return False, (f"SecureBoot holds {len(secure_boot.data)} bytes, not 1: the kernel cannot determine "
                       "Secure Boot and boots without its lockdown")
    if one_byte(setup_mode) == 1:
        return False, "Platform is in Setup Mode"
    if value == 0:
        return False, "SecureBoot disabled"
    return True, "SecureBoot enabled"


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


def key_list_from_entries(name: str, sources: tuple[Path, ...], entries: Iterable[SignatureEntry],
                          load: Callable[[bytes, str], Certificate] = load_certificate) -> KeyList:
    """Sort parsed entries into certificates / hashes / other; ``load(der, origin)`` parses a
    certificate (the collector passes one that remembers them by their bytes)."""
    certs, hashes, other = [], [], []
    for i, entry in enumerate(entries):
        if entry.type_guid == EFI_CERT_X509_GUID:
            certs.append(load(entry.data, f"{name} entry {i}"))
        elif entry.type_guid == EFI_CERT_SHA256_GUID and len(entry.data) == 32:
            hashes.append(entry.data)
        else:
            other.append(entry)
    return KeyList(name, sources, tuple(certs), tuple(hashes), tuple(other))
