"""Metrics of --collector.module: signatures of the module files, enforcement, symbol CRC sources, loaded out-of-tree modules."""

from __future__ import annotations

from ...facts.kernel import KernelFacts
from ...facts.loaded import LoadedFacts
from ...facts.module import ModuleFacts
from ...facts.secureboot import TrustFacts
from ...scrape import Scrape
from ...verdict.trust import enforced_for
from .families import Families


def section(out: Families, scrape: Scrape) -> None:
    r = scrape.readiness
    signed = out.gauge("dkms_module_signed", "1 when the module file a kernel would load carries a "
                       "signature, 0 when it does not (absent when the file could not be read).",
                       ["kernel", "module", "dkms"])
    info = out.gauge("dkms_module_signature_info", "1 for a signed module, labeled with what `modinfo` "
                     "prints: signer, sig_key (key_id) and sig_hashalgo.",
                     ["kernel", "module", "signer", "key_id", "hash_algo"])
    for kv in r.kernels:
        for m in kv.modules:
            if m.signed is not None:
                signed.add_metric([kv.kernel, m.module, m.dkms], 1 if m.signed else 0)
            if m.signature is not None:
                s = m.signature
                info.add_metric([kv.kernel, m.module, s.signer, s.key_id, s.hash_algo], 1)
    facts = scrape.facts
    enforced = out.gauge("dkms_kernel_signature_enforced", "1 when the kernel will refuse unsigned modules "
                         "and modules signed by untrusted keys after the next boot (module.sig_enforce, "
                         "CONFIG_MODULE_SIG_FORCE, or lockdown raised by Secure Boot); absent when unknown.",
                         ["kernel"])
    source = out.gauge("dkms_kernel_symbol_versions_source", "1, labeled by where the kernel's exported "
                       "symbol CRCs were read from (module_symvers, symvers_file) or none: without them "
                       "symbol_version_mismatch and unknown_symbol cannot be checked.", ["kernel", "source"])
    kernels = facts.get(KernelFacts)
    trust = facts.get(TrustFacts)
    mods = facts.get(ModuleFacts)
    for k in (kernels.kernels if kernels else ()):
        if trust is not None:
            value = enforced_for(trust, k.config or None, k.release == kernels.running)
            if value is not None:
                enforced.add_metric([k.release], 1 if value else 0)
        if mods is not None and k.release in mods.kernels:
            src = mods.kernels[k.release].exports_source
            kind = "none" if src == "none" else "module_symvers" if src.endswith("Module.symvers") else "symvers_file"
            source.add_metric([k.release, kind], 1)
    loaded = facts.get(LoadedFacts)
    oot = out.gauge("dkms_loaded_out_of_tree_module", "1 for each out-of-tree module loaded now (taint O): "
                    "each must keep working after the reboot.", ["module", "taint"])
    for m in (loaded.modules if loaded else ()):
        if m.out_of_tree:
            oot.add_metric([m.name, m.taint], 1)
