"""Facts -> verdicts: for each installed kernel, whether every module it needs (expected.py)
works for it (checks.py), and for the host, whether its boot targets are ready.

The model is docs/readiness.md: boot targets are the next-boot kernel and the newest one; a
collector readiness depends on that failed makes the verdict "unknown", never "ready".
"""

from __future__ import annotations

from dataclasses import replace

from ..config import Config
from ..facts import HostFacts
from ..facts.akmods import AkmodsFacts
from ..facts.bootloader import BootFacts
from ..facts.dkms import DkmsFacts
from ..facts.initramfs import InitramfsFacts
from ..facts.kernel import Kernel, KernelFacts
from ..facts.loaded import LoadedFacts
from ..facts.module import ModuleFacts
from ..facts.secureboot import TrustFacts
from .checks import Evidence, assess_module
from .expected import early_boot_modules, early_boot_unknown, expected_modules
from .fixes import Fixes, fixes_for
from .model import KernelVerdict, ModuleVerdict, Problem, Readiness
from .trust import enforcement_unknown_because

__all__ = ["KernelVerdict", "ModuleVerdict", "Problem", "Readiness", "assess"]


def assess(facts: HostFacts, config: Config) -> Readiness:
    kernels = facts.get(KernelFacts)
    failed = facts.failed()
    if kernels is None:
        return Readiness((), (), None, "", "unknown", 0, ("kernel facts unavailable",))
    boot = facts.get(BootFacts)
    fix = fixes_for(facts)
    next_boot = boot.next_boot if boot else None
    notes: list[str] = []
    if boot is None or next_boot is None:
        notes.append("next boot kernel unknown" + (f": {boot.detail}" if boot and boot.detail else "")
                     + "; assuming the newest kernel")
    elif kernels.get(next_boot) is None:
        notes.append(f"the bootloader's entry boots {next_boot}, which is not installed")
    targets = tuple(dict.fromkeys(k for k in (next_boot, kernels.newest) if k and kernels.get(k)))
    verdicts = tuple(_assess_kernel(k, kernels, facts, config, targets, next_boot, failed, fix)
                     for k in kernels.kernels)
    target_verdicts = [v for v in verdicts if v.target]
    if next_boot and kernels.get(next_boot) is None:
        overall = "not_ready"
    elif not target_verdicts:
        overall = "unknown"
    elif any(v.verdict == "unknown" for v in target_verdicts):
        overall = "unknown"
    elif all(v.verdict == "ready" for v in target_verdicts):
        overall = "ready"
    else:
        overall = "not_ready"
    rollback = sum(1 for v in verdicts if not v.target and v.verdict == "ready")
    return Readiness(verdicts, targets, next_boot, boot.entry if boot else "", overall, rollback, tuple(notes))


def _assess_kernel(kernel: Kernel, kernels: KernelFacts, facts: HostFacts, config: Config,
                   targets: tuple[str, ...], next_boot: str | None, failed: list[str], fix: Fixes) -> KernelVerdict:
    early = early_boot_modules(facts, config)
    expected = expected_modules(kernel, kernels, facts.get(DkmsFacts), config, facts.get(LoadedFacts), early,
                                facts.get(AkmodsFacts))
    evidence = Evidence.of(kernel, facts, fix, early)
    needed = sorted(expected.items())
    modules = tuple(assess_module(kernel, name, source, why, evidence) for name, (source, why) in needed)
    lost = _loaded_missing(kernel, facts, config, frozenset(expected), early)
    kernel_problems = _kernel_problems(kernel, kernels, facts.get(InitramfsFacts), fix, lost)
    unknown = _unknown_because(kernel, kernels, facts, evidence, needed, modules, failed)
    if any(p.severity == "error" for p in kernel_problems) or any(not m.working for m in modules):
        verdict = "unknown" if failed else "not_ready"
    else:
        verdict = "unknown" if unknown else "ready"
    return KernelVerdict(kernel.release, kernel.release == kernels.running, kernel.release == kernels.newest,
                         kernel.release == next_boot, kernel.release in targets, verdict, modules,
                         tuple(kernel_problems), tuple(unknown),
                         tuple((name, "error" if at_boot else "warning") for name, _, at_boot in lost))


def _unknown_because(kernel: Kernel, kernels: KernelFacts, facts: HostFacts, evidence: Evidence,
                     needed: list, modules: tuple[ModuleVerdict, ...], failed: list[str]) -> list[str]:
    """Why K's verdict cannot be told (docs/readiness.md, "Verdicts"): a readiness collector
    failed, the running kernel's image cannot be listed (early boot unknown), K's own image is
    not read (lzop) while K needs early-boot modules, or enforcement is unknown and a module
    depends on it."""
    unknown = [f"collector {n} failed" for n in failed]
    early_unknown = early_boot_unknown(facts)
    if early_unknown is not None and kernel.release != kernels.running:
        unknown.append(early_unknown)
    image = evidence.image
    if image is not None and image.error is not None and not image.damaged and any(m.early_boot for m in modules):
        unknown.append(f"{image.path} is not read ({image.error.detail}): whether it holds the early-boot "
                       "modules is not checked")
    return unknown + _enforcement_unknown(kernel, facts, evidence, needed, modules)


def _enforcement_unknown(kernel: Kernel, facts: HostFacts, evidence: Evidence, needed: list,
                         modules: tuple[ModuleVerdict, ...]) -> list[str]:
    """When whether K enforces signatures is unknown, the modules that work only if it does not
    (unsigned, or signed by a key K would not trust) make K unknown, not ready: the same
    modules judged with enforcement on are the ones that depend on the answer."""
    trust = facts.get(TrustFacts)
    if evidence.enforced is not None or trust is None:
        return []
    strict = replace(evidence, enforced=True)
    depends = [m.module for m, (name, (source, why)) in zip(modules, needed)
               if m.working and not assess_module(kernel, name, source, why, strict).working]
    if not depends:
        return []
    why = enforcement_unknown_because(trust, kernel.config or None)
    return [f"whether {kernel.release} enforces module signatures is unknown ({why}), and "
            f"{', '.join(depends)} {'loads' if len(depends) == 1 else 'load'} only if it does not"]


def _loaded_missing(kernel: Kernel, facts: HostFacts, config: Config, expected: frozenset[str],
                    early: frozenset[str]) -> list[tuple[str, str, bool]]:
    """(module, where K's index had it, needed at boot) for each module loaded now that K lacks:
    neither built in (modules.builtin) nor a file that exists where K's modules.dep puts it.
    Modules the checks already judge (needed out-of-tree ones, required_modules) are left to
    them.  Needed at boot: the running kernel's initramfs holds it, or modules-load.d,
    /etc/modules or /etc/initramfs-tools/modules names it, or early_boot_modules does."""
    loaded, modules = facts.get(LoadedFacts), facts.get(ModuleFacts)
    dep = kernel.modules_dep
    mf = modules.kernels.get(kernel.release) if modules else None
    if loaded is None or dep is None or mf is None:
        return []
    kernels, initramfs = facts.get(KernelFacts), facts.get(InitramfsFacts)
    running = initramfs.images.get(kernels.running or "") if initramfs and kernels else None
    in_image = running.listing.modules if running is not None and running.listing is not None else frozenset()
    boot = loaded.boot_listed | in_image | early | set(config.required_modules)
    out = []
    for m in sorted({m.name for m in loaded.modules if not m.out_of_tree} - expected):
        if kernel.builtin is not None and m in kernel.builtin:
            continue
        rel = dep.paths.get(m)
        if rel is not None and mf.present.get(rel) is not False:
            continue
        out.append((m, rel or "", m in boot))
    return out


def _kernel_problems(kernel: Kernel, kernels: KernelFacts, initramfs: InitramfsFacts | None,
                     fix: Fixes, lost: list[tuple[str, str, bool]] = ()) -> list[Problem]:
    """Problems of the kernel itself: no headers (a warning: needed to rebuild, not to boot), an
    initramfs that is missing or unreadable, and each module loaded now that K lacks (an error
    when the host loads it at boot, else a warning: the next boot goes on without it)."""
    k = kernel.release
    out = []
    if not kernel.headers:
        out.append(Problem("headers_missing", f"no usable /lib/modules/{k}/build", fix("headers_missing", k),
                           severity="warning"))
    images = initramfs.images if initramfs else {}
    image, running = images.get(k), images.get(kernels.running or "")
    if image is not None and not image.present and running is not None and running.present:
        out.append(Problem("initramfs_missing", f"{k} has no initramfs image while the running kernel has one",
                           fix("initramfs_missing", k)))
    if image is not None and image.damaged:
        out.append(Problem("initramfs_unreadable", f"{image.path}: {image.error}", fix("initramfs_unreadable", k)))
    for name, rel, at_boot in lost:
        where = f"modules.dep lists {rel} but the file is gone" if rel else f"{k} has no {name}.ko"
        when = "; the host loads it at boot" if at_boot else ""
        out.append(Problem("loaded_module_missing", f"{name} is loaded now, but {where}{when}",
                           fix("loaded_module_missing", k, module=name,
                               fallback="intree" if not rel or rel.startswith("kernel/") else ""),
                           severity="error" if at_boot else "warning"))
    return out
