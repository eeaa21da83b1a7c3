"""Facts of the secureboot collector: Secure Boot, shim's MOK lists, lockdown, signing keys."""

from __future__ import annotations

from dataclasses import dataclass

from ..formats.efi import KeyList
from ..formats.x509 import Certificate


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
    mok_trusted_rt: bool | None = None   # shim's MokListTrustedRT in the mokvar table (.machine keyring)
    dbx: KeyList | None = None           # UEFI dbx: revocations the kernel loads into .blacklist
    mokx: KeyList | None = None          # MokListXRT: shim's revocations, loaded there under Secure Boot

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
