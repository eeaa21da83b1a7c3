"""Which modules a kernel needs (docs/readiness.md, "Modules a kernel K needs").

1. DKMS modules installed for the running kernel; 2. DKMS modules DKMS means to build for K
(AUTOINSTALL), minus those BUILD_EXCLUSIVE_* keeps away from K; 3. the running kernel's modules
in extra/ and weak-updates/ (kmod packages, akmods' kmods, vendor installers); 4. what akmods
builds for every kernel; 5. out-of-tree modules loaded now (taint O); early-boot modules; and the
operator's required_modules, minus ignored_modules.
"""

from __future__ import annotations

import re

from ..config import Config, modname
from ..facts import HostFacts
from ..facts.akmods import AkmodEntry, AkmodsFacts
from ..facts.dkms import AUTOINSTALL_YES_NO_FROM, BUILD_EXCLUSIVE_RANGE_FROM, DkmsEntry, DkmsFacts, at_least
from ..facts.initramfs import InitramfsFacts
from ..facts.kernel import Kernel, KernelFacts
from ..facts.loaded import LoadedFacts
from ..formats.dkmsconf import DkmsConfError, evaluate_conf
from ..formats.versions import compare, release_key


def early_boot_modules(facts: HostFacts, config: Config) -> frozenset[str]:
    """Out-of-tree modules in the running kernel's initramfs, plus the ones the operator names."""
    names = set(config.early_boot_modules)
    kernels, initramfs = facts.get(KernelFacts), facts.get(InitramfsFacts)
    images = initramfs.images if initramfs else {}
    running = kernels.get(kernels.running) if kernels and kernels.running else None
    image = images.get(kernels.running) if kernels and kernels.running else None
    if running is not None and image is not None and image.listing is not None:
        names |= image.listing.modules & set(running.out_of_tree)
    return frozenset(names)


def early_boot_unknown(facts: HostFacts) -> str | None:
    """Why early_boot_modules cannot be told, or None: the running kernel's initramfs is there
    but cannot be listed (cut short by a full /boot while being rewritten, damaged, of a
    compression the exporter cannot read), so which out-of-tree modules the host loads before
    its root file system is unknown, and "the new initramfs has them all" cannot be judged."""
    kernels, initramfs = facts.get(KernelFacts), facts.get(InitramfsFacts)
    if not kernels or not kernels.running or not initramfs:
        return None
    image = initramfs.images.get(kernels.running)
    if image is None or not image.present or image.error is None:
        return None
    return (f"the running kernel's initramfs {image.path} cannot be listed ({image.error}): "
            "which modules early boot needs is unknown")


Source = DkmsEntry | AkmodEntry | None
# where the running kernel keeps modules no DKMS tree describes (RHEL: kmod packages, weak-modules)
PACKAGED_DIRS = ("extra/", "weak-updates/")


def expected_modules(kernel: Kernel, kernels: KernelFacts, dkms: DkmsFacts | None, config: Config,
                     loaded: LoadedFacts | None = None, early_boot: frozenset[str] = frozenset(),
                     akmods: AkmodsFacts | None = None) -> dict[str, tuple[Source, tuple[str, ...]]]:
    """modname -> (the DKMS entry or akmod that should provide it, or None; why it is expected)."""
    expected: dict[str, tuple[Source, list[str]]] = {}

    def want(name: str, entry: Source, why: str) -> None:
        current = expected.get(name)
        if current is None:
            expected[name] = (entry, [why])
        else:
            if why not in current[1]:
                current[1].append(why)
            if current[0] is None and entry is not None:
                expected[name] = (entry, current[1])

    arch = kernels.arch
    excluded: set[str] = set()   # DKMS says these are not meant for this kernel: never "needed"
    if dkms is not None:
        for module, entries in _by_module(dkms).items():
            provider = _provider_for(entries, kernel.release, arch, dkms)
            if provider is None:
                continue
            if _excluded(provider, kernel, arch, dkms):
                excluded.update(dest_modnames(provider, kernel.release, arch, dkms))
                continue
            running_install = kernels.running and any(
                (b := e.build_for(kernels.running, arch)) is not None and b.state == "installed" for e in entries)
            if running_install:
                for name in dest_modnames(provider, kernel.release, arch, dkms):
                    want(name, provider, "installed_for_running_kernel")
            if _autoinstall(provider, kernel.release, arch, dkms):
                for name in dest_modnames(provider, kernel.release, arch, dkms):
                    want(name, provider, "autoinstall")
    running = kernels.get(kernels.running) if kernels.running else None
    for name, paths in sorted(running.out_of_tree.items()) if running else ():
        if name not in excluded and any(p.startswith(PACKAGED_DIRS + kernels.kmp_dirs) and
                                        not p.startswith("updates/dkms/") for p in paths):
            want(name, None, "installed_for_running_kernel")
    for akmod in akmods.entries if akmods else ():
        for name in akmod_modnames(akmod, kernels):
            want(name, akmod, "akmods")
    for name in (loaded.out_of_tree if loaded else ()):
        if name not in excluded:
            want(name, None, "loaded_out_of_tree")
    for name in sorted(early_boot - excluded):
        want(name, None, "early_boot")
    for name in sorted(config.required_modules):
        want(name, None, "required_by_config")
    for name in config.ignored_modules:
        expected.pop(name, None)
    return {k: (v[0], tuple(v[1])) for k, v in expected.items()}


def akmod_modnames(akmod: AkmodEntry, kernels: KernelFacts) -> list[str]:
    """The modules an akmod's kmods hold: whatever any kernel has under extra/NAME/ (akmods
    installs kmod-NAME-K there); before its first build, the akmod's own name."""
    prefix = f"extra/{akmod.name}/"
    names = sorted({name for k in kernels.kernels for name, paths in k.out_of_tree.items()
                    if any(p.startswith(prefix) for p in paths)})
    return names or [modname(akmod.name)]


def _by_module(dkms: DkmsFacts) -> dict[str, list[DkmsEntry]]:
    groups: dict[str, list[DkmsEntry]] = {}
    for e in dkms.entries:
        groups.setdefault(e.module, []).append(e)
    return groups


def _provider_for(entries: list[DkmsEntry], kernel: str, arch: str, dkms: DkmsFacts) -> DkmsEntry | None:
    """The version that counts for a kernel: installed for it, else built, else the newest."""
    usable = [e for e in entries if e.state != "broken"]
    for state in ("installed", "built"):
        for e in sorted(usable, key=lambda e: release_key(e.version), reverse=True):
            b = e.build_for(kernel, arch)
            if b is not None and b.state == state:
                return e
    return max(usable, key=lambda e: release_key(e.version)) if usable else None


def _conf(entry: DkmsEntry, kernel: str, arch: str, dkms: DkmsFacts):
    if entry.conf_text is None:
        return None
    try:
        return evaluate_conf(entry.conf_text, kernel, arch, dkms.tree, dkms.install_tree,
                             entry.module, entry.version)
    except DkmsConfError:
        return None


def dest_modnames(entry: DkmsEntry, kernel: str, arch: str, dkms: DkmsFacts) -> list[str]:
    conf = _conf(entry, kernel, arch, dkms)
    names = conf.dest_module_names() if conf else []
    conditional = conf.conditional_module_names() if conf else set()
    builds = [b for b in entry.builds if b.kernel == kernel and b.arch == arch]
    if conditional and builds:
        # modules the conf adds under a condition (lttng's, after sourcing the kernel config):
        # dkms's build for K says which it built; without a build, every one is a best guess
        built = {n for b in builds for n, _ in b.files}
        names = [n for n in names if n not in conditional or n in built]
    if not names:  # no usable dkms.conf: what any build of it produced
        names = sorted({n for b in entry.builds for n, _ in b.files})
    if not names:
        names = [entry.module]
    return [modname(n) for n in names]


def _autoinstall(entry: DkmsEntry, kernel: str, arch: str, dkms: DkmsFacts) -> bool:
    conf = _conf(entry, kernel, arch, dkms)
    if conf is None:
        return False
    value = conf.get("AUTOINSTALL")
    if at_least(dkms.dkms_version, AUTOINSTALL_YES_NO_FROM):
        return value.lower() == "yes"  # "no" empties it; any other value fails read_conf
    return bool(value)  # dkms < 3.1.7: any non-empty AUTOINSTALL means yes


def _excluded(entry: DkmsEntry, kernel: Kernel, arch: str, dkms: DkmsFacts) -> bool:
    """BUILD_EXCLUSIVE_* says this module is not meant for this kernel (dkms exits 77)."""
    conf = _conf(entry, kernel.release, arch, dkms)
    if conf is None:
        return False
    pattern = conf.get("BUILD_EXCLUSIVE_KERNEL")
    if pattern and "BUILD_EXCLUSIVE_KERNEL" not in conf.dynamic and not _bash_match(pattern, kernel.release):
        return True
    pattern = conf.get("BUILD_EXCLUSIVE_ARCH")
    if pattern and not _bash_match(pattern, arch):
        return True
    if dkms.dkms_version is not None and not at_least(dkms.dkms_version, BUILD_EXCLUSIVE_RANGE_FROM):
        return False  # dkms 3.0.10 knows no BUILD_EXCLUSIVE_KERNEL_MIN/_MAX/_CONFIG (unknown: applied)
    low, high = conf.get("BUILD_EXCLUSIVE_KERNEL_MIN"), conf.get("BUILD_EXCLUSIVE_KERNEL_MAX")
    if low and compare(kernel.release, low) < 0:
        return True
    if high and compare(kernel.release, high) > 0:
        return True
    options = conf.get("BUILD_EXCLUSIVE_CONFIG")
    if options and kernel.config:
        for option in options.split():
            negate = option.startswith("!")
            enabled = kernel.config.get(option.lstrip("!")) in ("y", "m")
            if enabled == negate:
                return True
    return False


def _bash_match(pattern: str, value: str) -> bool:
    """``[[ value =~ pattern ]]`` (POSIX ERE, unanchored)."""
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return True  # a pattern we cannot evaluate never excludes
