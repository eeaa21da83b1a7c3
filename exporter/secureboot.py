"""Host trust, from firmware variables and kernel knobs: will the next boot refuse unsigned
or foreign-key modules, and which keys will it trust?

Readers live in exporter.trust; this collector runs them under the host's sysfs/procfs and
adds the signing certificates DKMS and shim-signed keep on disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .context import Context, Unreadable
from .trust import (Certificate, KeyList, SecureBootState, TrustDataError, key_list_from_entries,
                    load_certificate, parse_signature_lists, read_efivar, read_lockdown, read_mok_list,
                    read_sig_enforce, secure_boot_state, signature_enforced)

DB_GUID = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
SIGNING_CERTS = ("/var/lib/dkms/mok.pub", "/var/lib/shim-signed/mok/MOK.der")
_CMD_SIG_ENFORCE = re.compile(r"(?:^|\s)module\.sig_enforce(?:=(\S+))?(?:\s|$)")
_CMD_LOCKDOWN = re.compile(r"(?:^|\s)lockdown=(integrity|confidentiality|none)(?:\s|$)")


@dataclass(frozen=True)
class TrustFacts:
    secure_boot: SecureBootState
    lockdown: str | None            # the running kernel's active lockdown level
    sig_enforce: bool | None        # the running kernel's module.sig_enforce
    cmdline: str
    mok: KeyList | None             # MokListRT (None: not enrolled / no variable)
    db: KeyList | None              # UEFI db (the .platform keyring)
    keys_known: bool                # False when a key list exists but could not be read
    signing_certs: tuple[tuple[str, Certificate], ...]

    @property
    def secure_boot_effective(self) -> bool | None:
        """Secure Boot as the kernel will see it: shim's MokSBStateRT turns it off."""
        sb = self.secure_boot.enabled
        if sb and self.secure_boot.shim_validation_disabled:
            return False
        return sb

    @property
    def trusted_certificates(self) -> tuple[Certificate, ...]:
        return tuple((self.mok.certificates if self.mok else ()) + (self.db.certificates if self.db else ()))

    def enrolled(self, cert: Certificate) -> bool:
        return any(c.sha256 == cert.sha256 for c in self.trusted_certificates)

    def enforced_for(self, config: dict[str, str] | None, running: bool) -> bool | None:
        """Will this kernel refuse unsigned/untrusted modules after the next boot?"""
        if running:
            return signature_enforced(config, self.sig_enforce, self.lockdown, self.secure_boot_effective)
        m = _CMD_SIG_ENFORCE.search(self.cmdline)
        sig_enforce = bool(m) and (m.group(1) or "1").lower() in ("1", "y", "yes", "on")
        lock = _CMD_LOCKDOWN.search(self.cmdline)
        # a fresh boot starts at lockdown=none unless the command line, the config or Secure Boot raise it
        return signature_enforced(config, sig_enforce, lock.group(1) if lock else "none", self.secure_boot_effective)


def collect_secureboot(ctx: Context) -> TrustFacts:
    sysfs = ctx.fs.sysfs
    try:
        sb = secure_boot_state(sysfs)
    except TrustDataError as exc:
        ctx.error(str(sysfs / "firmware/efi"), exc)
        sb = SecureBootState(True, None, detail=str(exc))
    lockdown = _guard(ctx, lambda: read_lockdown(sysfs / "kernel/security/lockdown"), "kernel/security/lockdown")
    sig_enforce = _guard(ctx, lambda: read_sig_enforce(sysfs / "module/module/parameters/sig_enforce"),
                         "module/module/parameters/sig_enforce")
    try:
        cmdline = ctx.load_local(ctx.fs.proc("cmdline"), lambda b: b.decode("utf-8", "replace"),
                                 limit=65536) or ""
    except Unreadable:
        cmdline = ""
    keys_known = True
    mok = db = None
    if sb.supported:
        try:
            mok = read_mok_list(sysfs, "MokListRT")
        except TrustDataError as exc:
            ctx.error(str(sysfs / "firmware/efi"), exc)
            keys_known = False
        try:
            db = _read_db(sysfs)
        except TrustDataError as exc:
            ctx.error(str(sysfs / "firmware/efi/efivars"), exc)
            keys_known = False
    certs = []
    for path in SIGNING_CERTS:
        try:
            cert = ctx.load(path, lambda b, p=path: load_certificate(b, p), limit=1 << 20, purpose="cert")
        except Unreadable:
            continue
        if cert is not None:
            certs.append((path, cert))
    return TrustFacts(sb, lockdown, sig_enforce, cmdline.strip(), mok, db, keys_known, tuple(certs))


def _guard(ctx: Context, fn, what: str):
    try:
        return fn()
    except TrustDataError as exc:
        ctx.error(str(ctx.fs.sysfs / what), exc)
        return None


def _read_db(sysfs) -> KeyList | None:
    path = sysfs / "firmware/efi/efivars" / f"db-{DB_GUID}"
    var = read_efivar(path)
    if var is None:
        return None
    return key_list_from_entries("db", (path,), parse_signature_lists(var.data, str(path)))
