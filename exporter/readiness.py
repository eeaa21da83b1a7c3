"""Facts -> verdicts: whether each module a kernel needs (exporter.expected) works for it.

The model is docs/readiness.md.  Each check is a small function returning Problems, in the
order the kernel would hit them: DKMS state, the file and depmod, the loader's own checks
(vermagic, CRCs, signature and key), then the initramfs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import Config
from .depmod import modname_of_path
from .dkmstree import DkmsEntry
from .expected import early_boot_modules, expected_modules
from .facts import READINESS_DEPENDS_ON, HostFacts
from .initramfs_images import KernelImage
from .kernels import OUT_OF_TREE_DIRS, Kernel
from .modfile import ModuleFile, ModuleFileError, ModuleSignature
from .modules import KernelModuleFacts
from .remedies import fix
from .symvers import check_versions, vermagic_matches
from .trust import Certificate, key_trusted


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


def assess(facts: HostFacts, config: Config) -> Readiness:
    kernels = facts.kernels
    failed = facts.failed(READINESS_DEPENDS_ON)
    if kernels is None:
        return Readiness((), (), None, "", "unknown", 0, ("kernel facts unavailable",))
    boot = facts.boot
    next_boot = boot.next_boot if boot else None
    notes: list[str] = []
    if boot is None or next_boot is None:
        notes.append("next boot kernel unknown" + (f": {boot.detail}" if boot and boot.detail else "")
                     + "; assuming the newest kernel")
    elif kernels.get(next_boot) is None:
        notes.append(f"the bootloader's entry boots {next_boot}, which is not installed")
    targets = tuple(dict.fromkeys(k for k in (next_boot, kernels.newest) if k and kernels.get(k)))
    verdicts = tuple(_assess_kernel(k, facts, config, targets, next_boot, failed) for k in kernels.kernels)
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


def _assess_kernel(kernel: Kernel, facts: HostFacts, config: Config, targets: tuple[str, ...],
                   next_boot: str | None, failed: list[str]) -> KernelVerdict:
    kernels = facts.kernels
    early = early_boot_modules(facts, config)
    expected = expected_modules(kernel, kernels, facts.dkms, config, facts.loaded, early)
    evidence = _Evidence.of(kernel, facts, early)
    modules = tuple(_assess_module(kernel, name, source, why, evidence)
                    for name, (source, why) in sorted(expected.items()))
    kernel_problems = _kernel_problems(kernel, facts)
    if failed:
        verdict = "unknown"
    elif any(not m.working for m in modules) or any(p.severity == "error" for p in kernel_problems):
        verdict = "not_ready"
    else:
        verdict = "ready"
    return KernelVerdict(kernel.release, kernel.release == kernels.running, kernel.release == kernels.newest,
                         kernel.release == next_boot, kernel.release in targets, verdict, modules,
                         tuple(kernel_problems), tuple(f"collector {n} failed" for n in failed))


def _kernel_problems(kernel: Kernel, facts: HostFacts) -> list[Problem]:
    k = kernel.release
    out = []
    if not kernel.headers:
        out.append(Problem("headers_missing", f"no usable /lib/modules/{k}/build", fix("headers_missing", k),
                           severity="warning"))
    images = facts.initramfs.images if facts.initramfs else {}
    image, running = images.get(k), images.get(facts.kernels.running or "")
    if image is not None and not image.present and running is not None and running.present:
        out.append(Problem("initramfs_missing", f"{k} has no initramfs image while the running kernel has one",
                           fix("initramfs_missing", k)))
    if image is not None and image.error is not None:
        out.append(Problem("initramfs_unreadable", f"{image.path}: {image.error}", fix("initramfs_unreadable", k)))
    return out


@dataclass(frozen=True)
class _Evidence:
    """What the module-truth checks need to know about one kernel."""
    modules: KernelModuleFacts | None
    enforced: bool | None               # will this kernel refuse unsigned / untrusted modules
    trusted: tuple[Certificate, ...]
    trust_known: bool
    builtin: ModuleSignature | None
    blacklisted: frozenset[str]
    early_boot: frozenset[str] = frozenset()
    image: KernelImage | None = None

    @staticmethod
    def of(kernel: Kernel, facts: HostFacts, early_boot: frozenset[str] = frozenset()) -> "_Evidence":
        mf = facts.modules.kernels.get(kernel.release) if facts.modules else None
        trust = facts.trust
        enforced = None
        if trust is not None:
            enforced = trust.enforced_for(kernel.config or None, kernel.release == facts.kernels.running)
        return _Evidence(mf, enforced, trust.trusted_certificates if trust else (),
                         bool(trust and trust.keys_known), mf.builtin_signer if mf else None,
                         facts.loaded.blacklisted if facts.loaded else frozenset(), early_boot,
                         facts.initramfs.images.get(kernel.release) if facts.initramfs else None)


# --- does one module work for one kernel ----------------------------------------------

def _assess_module(kernel: Kernel, name: str, entry: DkmsEntry | None, why: tuple[str, ...],
                   evidence: _Evidence) -> ModuleVerdict:
    arch_builds = [b for b in (entry.builds if entry else ()) if b.kernel == kernel.release]
    build = next((b for b in arch_builds if b.state == "installed"), None) or \
        next(iter(arch_builds), None)
    state = build.state if build else ("" if entry is None else
                                       "build_failed" if _failure_for(entry, kernel) else "added")
    file = _module_file(kernel, name)
    problem = _dkms_problem(kernel, name, entry, build) if entry is not None else None
    if problem is None:
        problem = _file_problem(kernel, name, entry, file)
    problems: list[Problem] = [problem] if problem else []
    signature, signed = None, None
    if problem is None and file is not None:
        parsed = evidence.modules.files.get(file.split(f"/lib/modules/{kernel.release}/", 1)[1]) \
            if evidence.modules else None
        if isinstance(parsed, ModuleFile):
            signature, signed = parsed.signature, parsed.signature is not None
        problems += module_truth_problems(kernel, name, entry, file, parsed, evidence)
    early = name in evidence.early_boot
    in_image = None
    image = evidence.image
    if image is not None and image.listing is not None:
        in_image = name in image.listing.modules
    if early and not any(p.severity == "error" for p in problems):
        problems += initramfs_problems(kernel, name, file, evidence)
    if name in evidence.blacklisted:
        problems.append(Problem("blacklisted", f"modprobe.d blacklists {name}: it will not load automatically",
                                f"remove 'blacklist {name}' from /etc/modprobe.d", severity="warning"))
    return ModuleVerdict(kernel.release, name, f"{entry.module}/{entry.version}" if entry else "",
                         why, state, file, tuple(problems), signature, signed, early, in_image)


def initramfs_problems(kernel: Kernel, name: str, file: str | None, ev: _Evidence) -> list[Problem]:
    """An early-boot module must be in the kernel's initramfs, and that image must be newer."""
    image = ev.image
    if image is None or image.listing is None:
        return []  # no image (a kernel problem) or unreadable (the verdict is unknown)
    k = kernel.release
    if name not in image.listing.modules:
        return [Problem("missing_from_initramfs", f"{name} is needed in early boot but {image.path} lacks it",
                        fix("missing_from_initramfs", k))]
    rel = file.split(f"/lib/modules/{k}/", 1)[1] if file else ""
    module_mtime = kernel.mtimes.get(rel)
    if module_mtime is not None and image.mtime is not None and image.mtime < module_mtime:
        return [Problem("initramfs_stale", f"{image.path} is older than {file}: it holds an earlier build",
                        fix("initramfs_stale", k))]
    return []


def module_truth_problems(kernel: Kernel, name: str, entry: DkmsEntry | None, file: str,
                          parsed: ModuleFile | ModuleFileError | None, ev: _Evidence) -> list[Problem]:
    """Will the kernel's loader accept this file? vermagic, symbol CRCs, signature and key."""
    ident = f"{entry.module}/{entry.version}" if entry else ""
    k = kernel.release
    if parsed is None:
        return []  # unreadable: recorded as a collector error, so the verdict is already unknown
    if isinstance(parsed, ModuleFileError):
        return [Problem("module_unreadable", f"{file}: {parsed}", fix("module_unreadable", k, ident, name))]
    out: list[Problem] = []
    kmf = ev.modules
    if kmf is not None and kmf.vermagic and not vermagic_matches(parsed.vermagic, kmf.vermagic,
                                                                 parsed.has_versions):
        out.append(Problem("vermagic_mismatch", f"version magic '{parsed.vermagic}' should be '{kmf.vermagic}'",
                           fix("vermagic_mismatch", k, ident, name)))
    if kmf is not None and kmf.exports:
        vc = check_versions(parsed, kmf.exports)
        if vc.mismatches:
            syms = ", ".join(s for s, _, _ in vc.mismatches[:3])
            more = f" and {len(vc.mismatches) - 3} more" if len(vc.mismatches) > 3 else ""
            out.append(Problem("symbol_version_mismatch", f"disagrees about version of symbol {syms}{more}",
                               fix("symbol_version_mismatch", k, ident, name)))
        unknown = list(vc.unknown) + list(vc.gpl_only) + [f"{s} (namespace {ns} not imported)"
                                                          for s, ns in vc.missing_namespaces]
        if unknown:
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            out.append(Problem("unknown_symbol", f"Unknown symbol {', '.join(unknown[:3])}{more}",
                               fix("unknown_symbol", k, ident, name)))
    if ev.enforced:
        sig = parsed.signature
        if sig is None:
            out.append(Problem("unsigned", f"{k} enforces module signatures and {file} is unsigned",
                               fix("unsigned", k, ident, name)))
        elif ev.trust_known and not _key_trusted(sig, ev):
            out.append(Problem("untrusted_key", f"signed by '{sig.signer}' (key {sig.key_id}), which is not "
                               "enrolled (MokListRT, db) nor the kernel's own key",
                               fix("untrusted_key", k, ident, name)))
    return out


def _key_trusted(sig: ModuleSignature, ev: _Evidence) -> bool:
    if ev.builtin is not None and sig.signer == ev.builtin.signer and sig.key_id == ev.builtin.key_id:
        return True
    return key_trusted(sig, ev.trusted)


def _failure_for(entry: DkmsEntry, kernel: Kernel):
    f = entry.failure
    return f if f is not None and f.kernel == kernel.release else None


def _dkms_problem(kernel: Kernel, name: str, entry: DkmsEntry, build) -> Problem | None:
    ident = f"{entry.module}/{entry.version}"
    if build is not None and build.state == "installed":
        return None
    if build is not None:
        return Problem("built_not_installed", f"{ident} is built for {kernel.release} but not installed",
                       fix("built_not_installed", kernel.release, ident))
    failure = _failure_for(entry, kernel)
    if failure is not None:
        return Problem("build_failed", f"{failure.cause}: {failure.detail} (see {failure.log})",
                       fix("build_failed", kernel.release, ident, name, headers=kernel.headers,
                           cause=failure.cause))
    detail = f"no DKMS build of {ident} for {kernel.release}"
    if not kernel.headers:
        detail += f": headers for {kernel.release} are not installed"
    return Problem("not_built", detail, fix("not_built", kernel.release, ident, headers=kernel.headers))


def _module_file(kernel: Kernel, name: str) -> str | None:
    """Where the module lives for this kernel: out-of-tree dirs first (dkms's updates/dkms)."""
    base = f"/lib/modules/{kernel.release}"
    candidates = kernel.out_of_tree.get(name, ())
    preferred = sorted(candidates, key=lambda p: (not p.startswith("updates/dkms/"), p))
    if preferred:
        return f"{base}/{preferred[0]}"
    dep = kernel.modules_dep
    if dep is not None and name in dep.paths:
        if dep.paths[name].split("/", 1)[0] in OUT_OF_TREE_DIRS:
            return None  # the kernel collector walked that dir: modules.dep names a file that is gone
        return f"{base}/{dep.paths[name]}"
    return None


def _file_problem(kernel: Kernel, name: str, entry: DkmsEntry | None, file: str | None) -> Problem | None:
    ident = f"{entry.module}/{entry.version}" if entry else ""
    if file is None:
        return Problem("file_missing", f"no {name}.ko* for {kernel.release} under /lib/modules/{kernel.release}",
                       fix("file_missing", kernel.release, ident, name))
    dep = kernel.modules_dep
    if dep is None:
        return Problem("not_in_depmod", f"/lib/modules/{kernel.release}/modules.dep is missing",
                       fix("not_in_depmod", kernel.release))
    resolved = dep.paths.get(name)
    rel = file.split(f"/lib/modules/{kernel.release}/", 1)[1]
    if resolved is None:
        return Problem("not_in_depmod", f"modules.dep of {kernel.release} does not list {name}",
                       fix("not_in_depmod", kernel.release))
    if resolved != rel and modname_of_path(resolved) == name and rel in kernel.out_of_tree.get(name, ()):
        return Problem("not_in_depmod", f"depmod resolves {name} to {resolved}, not {rel}",
                       fix("not_in_depmod", kernel.release))
    return None
