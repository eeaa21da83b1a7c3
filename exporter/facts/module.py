"""Facts of the module collector: every out-of-tree module file of every kernel as the loader
would judge it, and what each kernel expects (vermagic, exported CRCs, its own signing key)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..formats.depmod import Need
from ..formats.modsig import SigCheck
from ..formats.module import ModuleFile, ModuleFileError, ModuleSignature
from ..formats.symvers import ExportTable
from ..formats.x509 import Certificate


@dataclass(frozen=True)
class KernelModuleFacts:
    vermagic: str | None            # what the kernel expects, from one of its in-tree modules
    vermagic_source: str            # host path of that module, or "" when unknown
    exports: ExportTable | None
    exports_source: str             # "Module.symvers" path, or "none"
    builtin_signer: ModuleSignature | None   # the key that signs the kernel's own modules
    files: dict[str, ModuleFile | ModuleFileError] = field(default_factory=dict)  # relpath -> parsed
    needs: dict[str, tuple[Need, ...]] = field(default_factory=dict)   # relpath of a parsed file -> what it needs
    present: dict[str, bool] = field(default_factory=dict)   # relpath in modules.dep -> the file exists (stat)
    # certificates built into K's image; None: not read (no signed file, or enrolled keys K
    # verifies with name every signer: collectors.module.enrolled_signers), or unreadable (the error)
    builtin_keys: tuple[Certificate, ...] | None = None
    builtin_keys_error: str = ""                         # why they could not be read, when they could not
    sigchecks: dict[tuple[str, str], SigCheck] = field(default_factory=dict)  # (relpath, cert sha256) -> verified

    def missing_needs(self, rel: str) -> list[Need]:
        """What the module at ``rel`` needs that K lacks: not in K's depmod index, or its file gone."""
        return [n for n in self.needs.get(rel, ()) if n.rel is None or self.present.get(n.rel) is False]


@dataclass(frozen=True)
class ModuleFacts:
    kernels: dict[str, KernelModuleFacts]
