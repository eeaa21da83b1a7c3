"""Will a kernel refuse a module's signature, and is its signer a key the kernel trusts?

The enforcement rule (module.sig_enforce, CONFIG_MODULE_SIG_FORCE, lockdown raised by Secure
Boot) and key matching, from the facts the secureboot and kernel collectors gathered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..facts.secureboot import TrustFacts
from ..formats.modsig import matches
from ..formats.module import ModuleSignature
from ..formats.x509 import Certificate

_CMD_SIG_ENFORCE = re.compile(r"(?:^|\s)module\.sig_enforce(?:=(\S+))?(?:\s|$)")
_CMD_LOCKDOWN = re.compile(r"(?:^|\s)lockdown=(integrity|confidentiality|none)(?:\s|$)")


def signing_certificate(sig: ModuleSignature, trusted_certs: Iterable[Certificate]) -> Certificate | None:
    """The certificate among ``trusted_certs`` the kernel would pick to verify ``sig``: by
    issuer and serial (the PKCS#7 issuerAndSerialNumber), or by SKID for `sign-file -k`
    signatures.  Finding it is not trusting the signature: exporter.formats.modsig.verify is."""
    return next((cert for cert in trusted_certs if matches(sig, cert)), None)


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

    docs/formats.md, "Module signature enforcement": yes iff sig_enforce=Y, or CONFIG_MODULE_SIG_FORCE=y, or lockdown is
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


def enforcement_unknown_because(trust: TrustFacts, config: Mapping[str, str] | None) -> str:
    """Why enforced_for() is None, in words: judged as a fresh boot, only a missing config or an
    unknown Secure Boot state leave it open."""
    if config is None:
        return "no config of the kernel was found (/boot/config-K, /lib/modules/K/config, build/.config)"
    detail = trust.secure_boot.detail
    return "whether Secure Boot is on cannot be told" + (f" ({detail})" if detail else "")


def enforced_for(trust: TrustFacts, config: dict[str, str] | None, running: bool) -> bool | None:
    """Will this kernel refuse unsigned/untrusted modules after the next boot?  The running
    kernel's own sig_enforce and lockdown answer for it when they can be read; otherwise (sysfs
    or securityfs not where the exporter looks) it is judged as a fresh boot, as any other."""
    if running:
        seen = signature_enforced(config, trust.sig_enforce, trust.lockdown, trust.secure_boot_effective)
        if seen is not None:
            return seen
    m = _CMD_SIG_ENFORCE.search(trust.cmdline)
    sig_enforce = bool(m) and (m.group(1) or "1").lower() in ("1", "y", "yes", "on")
    lock = _CMD_LOCKDOWN.search(trust.cmdline)
    # a fresh boot starts at lockdown=none unless the command line, the config or Secure Boot raise it
    return signature_enforced(config, sig_enforce, lock.group(1) if lock else "none", trust.secure_boot_effective)


def revocation_certificates(trust: TrustFacts, config: Mapping[str, str] | None
                            ) -> tuple[tuple[str, Certificate], ...]:
    """The certificates kernel K puts in its .blacklist keyring as revoked keys, each with the
    variable it comes from (docs/readiness.md, "Revocations").

    security/integrity/platform_certs (load_uefi.c, keyring_handler.c): EFI_CERT_X509 entries of
    ``dbx`` and, when Secure Boot is on ("the MOK/MOKx can not be trusted when secure boot is
    disabled"), of ``MokListXRT`` go to add_key_to_revocation_list(), which does something only
    with CONFIG_SYSTEM_REVOCATION_LIST (and load_uefi.c is built only with CONFIG_LOAD_UEFI_KEYS).
    An unknown config counts as having both: the gate must not pass a module K may refuse.

    Not here, by the kernel's own code: EFI_CERT_X509_SHA256 ("tbs:") entries are blacklisted
    with their EFI_TIME appended (parse_efi_signature_list() hands the handler the whole
    signature data, 48 bytes), so the description never equals a certificate's 32-byte TBS
    digest; EFI_CERT_SHA256 ("bin:") hashes are checked for EFI images and IMA, never by
    upstream module loading."""
    cfg = config or {}
    if config and (cfg.get("CONFIG_SYSTEM_REVOCATION_LIST") != "y" or cfg.get("CONFIG_LOAD_UEFI_KEYS") != "y"):
        return ()
    lists = [trust.dbx]
    if trust.secure_boot_effective is not False:
        lists.append(trust.mokx)
    return tuple((kl.name, cert) for kl in lists if kl is not None for cert in kl.certificates)
