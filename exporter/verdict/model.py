"""The verdict's vocabulary: a Problem, and the verdicts per module, per kernel and per host."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..formats.module import ModuleSignature


@dataclass(frozen=True)
class Problem:
    reason: str
    detail: str
    fix: str
    severity: str = "error"        # "warning" problems (blacklisted) do not stop a module working


@dataclass(frozen=True)
class ModuleVerdict:
    kernel: str
    module: str                    # kernel module name (modname: '_' not '-')
    dkms: str                      # "name/version" of the DKMS module that provides it, or ""
    expected_because: tuple[str, ...]
    state: str                     # DKMS state for this kernel, or "" when not DKMS-managed
    file: str | None               # host path of the module file for this kernel
    problems: tuple[Problem, ...]

    signature: ModuleSignature | None = None   # of the module file for this kernel, when read
    signed: bool | None = None                 # None: the file could not be read
    early_boot: bool = False                   # needed in the initramfs
    in_initramfs: bool | None = None           # None: no readable image for this kernel
    provider: str = ""                         # a non-DKMS builder of it: "akmods:NAME/VERSION"

    @property
    def working(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


@dataclass(frozen=True)
class KernelVerdict:
    kernel: str
    running: bool
    newest: bool
    next_boot: bool
    target: bool
    verdict: str                   # ready | not_ready | unknown
    modules: tuple[ModuleVerdict, ...]
    kernel_problems: tuple[Problem, ...]
    unknown_because: tuple[str, ...] = ()
    loaded_missing: tuple[tuple[str, str], ...] = ()   # (module, severity): loaded now, absent for this kernel


@dataclass(frozen=True)
class Readiness:
    kernels: tuple[KernelVerdict, ...]
    targets: tuple[str, ...]
    next_boot: str | None
    next_boot_how: str
    verdict: str                   # for the boot targets: ready | not_ready | unknown
    rollback_ready: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def kernel(self, release: str) -> KernelVerdict | None:
        return next((k for k in self.kernels if k.kernel == release), None)
