"""--collector.secureboot: will the next boot refuse unsigned or foreign-key modules, and which
keys will it trust?

Firmware variables (efivarfs, the kernel's mokvar table), lockdown and sig_enforce as the running
kernel shows them, and the module-signing certificates DKMS and shim-signed keep on disk.  Every
file is read through the host reader (bounded, non-blocking); an absent file is ``None`` ("cannot
know"), a malformed one a TrustDataError recorded as this collector's read error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

from ..facts.secureboot import SecureBootState, TrustFacts
from ..formats.efi import (DB_GUID, EFI_GLOBAL_GUID, MAX_VAR_BYTES, SHIM_LOCK_GUID, EfiVariable, KeyList,
                           kernel_secure_boot_mode, key_list_from_entries, one_byte, parse_efivar,
                           parse_signature_lists)
from ..formats.errors import TrustDataError
from ..formats.sysfs import parse_boot_params_secure_boot, parse_lockdown, parse_sig_enforce
from ..formats.x509 import CODEC as X509_CODEC, Certificate, load_certificate
from ..host.context import Context, Unreadable
from ..host.reader import FileTooLarge, read_optional
from . import register

# DKMS's key, Ubuntu's shim-signed MOK, and akmods' (kmodtool's kmodgenca writes it; akmods signs with it)
SIGNING_CERTS = ("/var/lib/dkms/mok.pub", "/var/lib/shim-signed/mok/MOK.der", "/etc/pki/akmods/certs/public_key.der")
MAX_CERT_BYTES = 1024 * 1024
T = TypeVar("T")
CertLoader = Callable[[bytes, str], Certificate]


@register("secureboot", TrustFacts, readiness=True)
def collect_secureboot(ctx: Context) -> TrustFacts:
    sysfs = ctx.fs.sysfs
    try:
        sb = secure_boot_state(sysfs)
    except TrustDataError as exc:
        ctx.error(str(sysfs / "firmware/efi"), exc)
        sb = SecureBootState(True, None, detail=str(exc))
    lockdown = _guard(ctx, read_lockdown, sysfs / "kernel/security/lockdown")
    sig_enforce = _guard(ctx, read_sig_enforce, sysfs / "module/module/parameters/sig_enforce")
    try:
        cmdline = ctx.load_local(ctx.fs.proc("cmdline"), lambda b: b.decode("utf-8", "replace"),
                                 limit=65536) or ""
    except Unreadable:
        cmdline = ""
    keys_known = True
    mok = db = dbx = mokx = None
    if sb.supported:
        load = _certificates_by_content(ctx)
        try:
            mok = read_mok_list(sysfs, "MokListRT", load)
        except TrustDataError as exc:
            ctx.error(str(sysfs / "firmware/efi"), exc)
            keys_known = False
        try:
            db = read_db(sysfs, "db", load)
        except TrustDataError as exc:
            ctx.error(str(sysfs / "firmware/efi/efivars"), exc)
            keys_known = False
        # revocations: unreadable ones leave keys_known alone (a revocation the exporter cannot
        # read is an error in the log, not a reason to call every signature untrusted)
        try:
            dbx = read_db(sysfs, "dbx", load)
        except TrustDataError as exc:
            ctx.error(str(sysfs / "firmware/efi/efivars"), exc)
        try:
            mokx = read_mok_list(sysfs, "MokListXRT", load)
        except TrustDataError as exc:
            ctx.error(str(sysfs / "firmware/efi"), exc)
    certs = []
    for path in SIGNING_CERTS:
        try:
            cert = ctx.load(path, lambda b, p=path: load_certificate(b, p), limit=MAX_CERT_BYTES, purpose="cert",
                            persist=X509_CODEC)
        except Unreadable:
            continue
        if cert is not None:
            certs.append((path, cert))
    trusted_rt = _guard(ctx, mok_keys_trusted, sysfs) if sb.supported else None
    return TrustFacts(sb, lockdown, sig_enforce, cmdline.strip(), mok, db, keys_known, tuple(certs), trusted_rt,
                      dbx, mokx)


def _certificates_by_content(ctx: Context) -> CertLoader:
    """load_certificate remembered by the certificate's bytes, in memory and in the persistent
    cache: efivarfs files have no identity to cache by (they are read every scrape), but the
    certificates in them change only when a key is enrolled; parsing each (ASN.1, and the
    import of asn1crypto itself) was most of the collector's cost in a warm scrape and in
    every new process (a timer's textfile run)."""
    def load(der: bytes, origin: str) -> Certificate:
        return ctx.by_content(der, "efi-cert", lambda: load_certificate(der, origin), persist=X509_CODEC)
    return load


def _guard(ctx: Context, read: Callable[[Path], T], path: Path) -> T | None:
    try:
        return read(path)
    except TrustDataError as exc:
        ctx.error(str(path), exc)
        return None


def _read(path: Path, limit: int) -> bytes | None:
    """The host reader's bytes, None when absent; every failure a TrustDataError."""
    try:
        return read_optional(path, limit)
    except FileTooLarge:
        raise TrustDataError("too_large", f"{path}: more than {limit} bytes") from None
    except OSError as e:
        raise TrustDataError("unreadable", f"{path}: {e.strerror or e}") from e


def efivar_path(efivars_dir: Path, name: str, guid: str) -> Path:
    return efivars_dir / f"{name}-{guid}"


def read_efivar(path: Path) -> EfiVariable | None:
    """One efivarfs file; None when absent or zero-length (an uncommitted variable)."""
    raw = _read(path, MAX_VAR_BYTES + 4)
    return None if raw is None else parse_efivar(raw, str(path))


def kernel_secure_boot_view(boot_params_data: Path) -> str | None:
    """x86 boot_params.secure_boot: unset / unknown / disabled / enabled (None if unreadable)."""
    raw = _read(boot_params_data, 64 * 1024)
    return None if raw is None else parse_boot_params_secure_boot(raw)


def secure_boot_state(sysfs: Path) -> SecureBootState:
    """Secure Boot facts from <sysfs>/firmware/efi/efivars and <sysfs>/kernel/boot_params."""
    efi = sysfs / "firmware" / "efi"
    kernel_view = kernel_secure_boot_view(sysfs / "kernel" / "boot_params" / "data")
    if not efi.is_dir():
        return SecureBootState(False, False, kernel_view=kernel_view, source="no_efi",
                               detail="not an EFI boot: Secure Boot is not supported")
    efivars = efi / "efivars"
    if efivars.exists() and not efivars.is_dir():
        raise TrustDataError("unreadable", f"{efivars}: not a directory (efivarfs mounts a directory there)")
    if not efivars.is_dir() or not any(efivars.iterdir()):
        enabled = {"enabled": True, "disabled": False}.get(kernel_view or "")
        return SecureBootState(True, enabled, kernel_view=kernel_view,
                               source="boot_params" if enabled is not None else None,
                               detail="efivarfs is not mounted")
    sb_var = read_efivar(efivar_path(efivars, "SecureBoot", EFI_GLOBAL_GUID))
    setup_var = read_efivar(efivar_path(efivars, "SetupMode", EFI_GLOBAL_GUID))
    mok_sb = read_efivar(efivar_path(efivars, "MokSBStateRT", SHIM_LOCK_GUID))
    enabled, detail = kernel_secure_boot_mode(sb_var, setup_var)
    setup_mode = one_byte(setup_var)
    return SecureBootState(
        True,
        enabled,
        setup_mode=setup_mode == 1,
        shim_validation_disabled=mok_sb is not None,
        kernel_view=kernel_view,
        source="efivars",
        detail=detail,
    )


def read_certificate(path: Path) -> Certificate | None:
    """A DER/PEM certificate file (/var/lib/dkms/mok.pub, .../MOK.der); None when absent."""
    raw = _read(path, MAX_CERT_BYTES)
    return None if raw is None else load_certificate(raw, str(path))


def read_mok_list(sysfs: Path, name: str = "MokListRT", load: CertLoader = load_certificate) -> KeyList | None:
    """MokListRT / MokListXRT from the kernel's mokvar table (<sysfs>/firmware/efi/mok-variables,
    raw) or else efivarfs (<name>, <name>1, <name>2, ... each with attributes).  None when
    neither has the variable."""
    efi = sysfs / "firmware" / "efi"
    raw = _read(efi / "mok-variables" / name, MAX_VAR_BYTES)
    if raw is not None:
        source = efi / "mok-variables" / name
        return key_list_from_entries(name, (source,), parse_signature_lists(raw, str(source)), load)
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
    return key_list_from_entries(name, tuple(sources), entries, load)


def read_db(sysfs: Path, name: str = "db", load: CertLoader = load_certificate) -> KeyList | None:
    """UEFI db (what the kernel loads into the .platform keyring) or dbx (into .blacklist);
    None when absent."""
    path = sysfs / "firmware/efi/efivars" / f"{name}-{DB_GUID}"
    var = read_efivar(path)
    if var is None:
        return None
    return key_list_from_entries(name, (path,), parse_signature_lists(var.data, str(path)), load)


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


def read_lockdown(path: Path) -> str | None:
    """Active level from securityfs `lockdown`; None when absent (no lockdown LSM, or securityfs
    not mounted)."""
    raw = _read(path, 4096)
    return None if raw is None else parse_lockdown(raw, str(path))


def read_sig_enforce(path: Path) -> bool | None:
    """`module.sig_enforce` (Y/N); None when absent (kernel without CONFIG_MODULE_SIG)."""
    raw = _read(path, 64)
    return None if raw is None else parse_sig_enforce(raw, str(path))
