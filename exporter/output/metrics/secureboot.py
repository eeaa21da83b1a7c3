"""Metrics of --collector.secureboot: Secure Boot, shim, lockdown, MOK and signing certificates."""

from __future__ import annotations

from ...facts.secureboot import TrustFacts
from ...scrape import Scrape
from .families import Families


def section(out: Families, scrape: Scrape) -> None:
    t = scrape.facts.get(TrustFacts)
    if t is None:
        return
    sb = t.secure_boot
    out.gauge("dkms_secure_boot_supported", "1 on an EFI boot (Secure Boot possible), 0 on BIOS/non-EFI.") \
        .add_metric([], 1 if sb.supported else 0)
    enabled = out.gauge("dkms_secure_boot_enabled", "1 when Secure Boot is on (SecureBoot=1 and SetupMode=0, "
                        "as mokutil --sb-state); absent on non-EFI hosts or when undecidable.")
    if sb.supported and sb.enabled is not None:
        enabled.add_metric([], 1 if sb.enabled else 0)
    setup = out.gauge("dkms_secure_boot_setup_mode", "1 when the firmware is in Setup Mode.")
    if sb.setup_mode is not None:
        setup.add_metric([], 1 if sb.setup_mode else 0)
    shim = out.gauge("dkms_shim_validation_disabled", "1 when shim's validation is disabled (MokSBStateRT, "
                     "`mokutil --disable-validation`): the kernel then does not lock down.")
    if sb.supported and sb.shim_validation_disabled is not None:
        shim.add_metric([], 1 if sb.shim_validation_disabled else 0)
    lock = out.gauge("dkms_kernel_lockdown", "1, labeled by the running kernel's active lockdown mode "
                     "(none, integrity, confidentiality).", ["mode"])
    if t.lockdown:
        lock.add_metric([t.lockdown], 1)
    enforce = out.gauge("dkms_module_sig_enforce", "The running kernel's module.sig_enforce (1 = Y).")
    if t.sig_enforce is not None:
        enforce.add_metric([], 1 if t.sig_enforce else 0)
    mok = out.gauge("dkms_mok_certificates", "X.509 certificates enrolled in MokListRT (shim's machine owner "
                    "keys); absent when the list could not be read.")
    if sb.supported and t.keys_known:
        mok.add_metric([], len(t.mok.certificates) if t.mok else 0)
    enrolled = out.gauge("dkms_signing_certificate_enrolled", "For each module-signing certificate on disk "
                         "(/var/lib/dkms/mok.pub, /var/lib/shim-signed/mok/MOK.der): 1 when it is enrolled "
                         "(MokListRT or db), 0 when not. Absent when the key lists could not be read.",
                         ["path", "signer", "key_id"])
    if sb.supported and t.keys_known:
        for path, cert in t.signing_certs:
            enrolled.add_metric([path, cert.issuer_cn, cert.serial], 1 if t.enrolled(cert) else 0)
