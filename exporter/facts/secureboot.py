"""Facts of the secureboot collector: Secure Boot, shim's MOK lists, lockdown, signing keys, and
which of the enrolled keys a kernel verifies module signatures with (the module collector asks
before it decompresses a kernel image; the verdict decides with it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..formats.efi import KeyList
from ..formats.x509 import Certificate, key_flags


@dataclass(frozen=True)
class SecureBootState:
    """Secure Boot as the firmware variables and the kernel's boot-time view tell it.

    ``enabled`` is the kernel's reading of the variables (formats.efi.kernel_secure_boot_mode,
    after efi_get_secureboot_mode()): on iff SecureBoot is one non-zero byte and SetupMode is
    not the byte 1; a missing SecureBoot, or one the kernel cannot read, boots without Secure
    Boot lockdown.  Without efivarfs, the kernel's own view from boot_params is used (``source``
    says which).  Non-EFI hosts: supported=False, enabled=False.
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


PLATFORM_FALLBACK_FAMILIES = frozenset({"debian", "rhel", "suse"})
"""Distributions whose kernels carry "KEYS: Make use of platform keyring for module signature
verify" (Fedora's patch, carried by Debian, RHEL and SUSE; rejected upstream): a module whose
signer is in no trusted keyring is tried against .platform (UEFI db, and MOK when it is not in
.machine).  Upstream and Arch kernels do not: db never signs modules there."""


def module_trusted_certificates(trust: TrustFacts, config: Mapping[str, str] | None, family: str
                                ) -> tuple[Certificate, ...]:
    """The enrolled certificates (MokListRT, db) kernel K accepts module signatures from, besides
    its built-in ones (docs/readiness.md, "Keyrings a kernel verifies modules with").

    With the distribution fallback: all of them.  Without (upstream, Arch, unknown): MOK only
    through the .machine keyring, which K has with CONFIG_INTEGRITY_MACHINE_KEYRING (linked to
    .secondary_trusted_keys) and fills only when shim sets MokListTrustedRT; db never.  An
    unknown config counts as no .machine keyring: the gate must not trust a key K may refuse."""
    mok = trust.mok.certificates if trust.mok else ()
    db = trust.db.certificates if trust.db else ()
    if family in PLATFORM_FALLBACK_FAMILIES:
        return tuple(mok) + tuple(db)
    cfg = config or {}
    machine = cfg.get("CONFIG_INTEGRITY_MACHINE_KEYRING") == "y" and cfg.get("CONFIG_SECONDARY_TRUSTED_KEYRING") == "y"
    return tuple(c for c in mok if machine_admits(c, cfg)) if machine and trust.mok_trusted_rt else ()


def machine_admits(cert: Certificate, config: Mapping[str, str]) -> bool:
    """Whether K's .machine keyring takes this MOK certificate (6.4+): with
    CONFIG_INTEGRITY_CA_MACHINE_KEYRING, security/integrity/digsig.c gives .machine the
    restrict_link_by_ca() restriction (crypto/asymmetric_keys/restrict.c): basicConstraints CA
    and keyUsage keyCertSign, and with CONFIG_INTEGRITY_CA_MACHINE_KEYRING_MAX no
    digitalSignature.  A refused certificate goes to .platform instead (machine_keyring.c
    add_to_machine_keyring()), which upstream module verification does not consult."""
    if config.get("CONFIG_INTEGRITY_CA_MACHINE_KEYRING") != "y":
        return True
    flags = key_flags(cert)
    if not (flags.ca and flags.key_cert_sign):
        return False
    return not (config.get("CONFIG_INTEGRITY_CA_MACHINE_KEYRING_MAX") == "y" and flags.digital_signature)
