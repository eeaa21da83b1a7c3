"""The command that fixes each problem, as an operator would type it on the host, in the words
of the host's distribution (exporter.distro)."""

from __future__ import annotations

from ..distro import Distro, for_family
from ..facts import HostFacts
from ..facts.os import OsFacts
from ..facts.packages import PackageFacts

# Problem reasons: one stable label value each (docs/metrics.md, docs/runbooks.md).
REASONS = {
    "not_built": "DKMS (or akmods) has no build of the module for this kernel",
    "build_failed": "the DKMS (or akmods) build for this kernel failed",
    "built_not_installed": "DKMS built the module for this kernel but did not install it",
    "file_missing": "no module file for this kernel where DKMS or depmod says it is",
    "weak_update_missing": "another kernel's kmod fits this kernel's symbol versions, but weak-modules has not linked it",
    "kabi_mismatch": "only another kernel has the module, and its symbol versions do not fit this kernel (weak-modules will not link it)",
    "not_in_depmod": "the module file exists but depmod does not resolve the module to it",
    "headers_missing": "no kernel headers for this kernel (DKMS cannot rebuild)",
    "module_unreadable": "the module file is not a loadable kernel module (truncated, corrupt, too large)",
    "vermagic_mismatch": "the module's version magic does not match the kernel's",
    "symbol_version_mismatch": "the module was built against other symbol CRCs than the kernel exports",
    "unknown_symbol": "the module needs a symbol the kernel does not export to it",
    "unsigned": "the kernel enforces module signatures and the module is unsigned",
    "untrusted_key": "the module is signed by a key the machine does not trust",
    "signature_revoked": "the module is signed by a certificate revoked in dbx or MokListXRT (the kernel refuses it)",
    "signature_invalid": "the module's signature does not verify (it changed after signing, or the kernel refuses its form)",
    "dependency_missing": "a module this one needs loaded first (depends=, or the exporter of a symbol it imports) is absent for the kernel",
    "loaded_module_missing": "a module loaded now is absent for the kernel (an error when the host loads it at boot, else a warning)",
    "blacklisted": "modprobe.d blacklists the module (warning: it loads only when asked for)",
    "missing_from_initramfs": "the module is needed in early boot but the kernel's initramfs lacks it",
    "initramfs_stale": "the kernel's initramfs is older than the installed module file",
    "initramfs_missing": "the kernel has no initramfs image while the running kernel has one",
    "initramfs_unreadable": "the kernel's initramfs image is truncated or corrupt (the boot would fail)",
}


class Fixes:
    """Fix commands for one host: DKMS's own commands are the same everywhere; installing headers
    or a compiler, rebuilding an initramfs and signing keys are the distribution's."""

    def __init__(self, distro: Distro, holds: dict[str, str] | None = None,
                 installed: frozenset[str] = frozenset()) -> None:
        self.distro = distro
        self.holds = holds or {}             # held package name -> the file holding it
        self.installed = installed           # installed package names (rpm: and NEVRAs)

    def install_headers(self, kernel: str) -> str:
        """The distribution's headers install, after releasing a hold on that package (a dnf
        versionlock on kernel-devel keeps every newer one out, so `dnf install` alone fails)."""
        d = self.distro
        name = d.headers_package_name(kernel)
        release = d.release_hold(name, self.holds[name]) if name in self.holds else ""
        return f"{release} && {d.install_headers(kernel)}" if release else d.install_headers(kernel)

    def __call__(self, reason: str, kernel: str, dkms: str = "", module: str = "", *, headers: bool = True,
                 cause: str = "", akmod: str = "", package: str = "", fallback: str = "") -> str:
        d = self.distro
        if reason in ("missing_from_initramfs", "initramfs_stale", "initramfs_unreadable"):
            return d.update_initramfs(kernel)
        if reason == "initramfs_missing":
            return d.create_initramfs(kernel)
        install_headers = self.install_headers(kernel)
        if akmod and reason in ("not_built", "build_failed"):
            rebuild = d.rebuild_akmod(kernel, akmod)
            if not headers or cause == "headers_missing":
                return f"{install_headers} && {rebuild}"
            if cause == "compiler_missing":
                return f"{d.install_build_tools()} && {rebuild}"
            if cause == "kernel_api_mismatch":
                return f"upgrade akmod-{akmod} to a version that supports {kernel}, then {rebuild}"
            return rebuild
        if reason in ("dependency_missing", "loaded_module_missing"):
            # package: the out-of-tree package that ships the missing module, when the
            # package database knows it; module: the missing module; fallback "intree" when
            # it is one of the kernel's own modules (its package is the distribution's)
            if fallback == "intree":
                return d.install_kernel_modules(kernel, self.installed)
            if package:
                return f"reinstall {package} (it ships {module} for {kernel}), then depmod -a {kernel}"
            return (f"install {module} for {kernel} (the DKMS module or package that provides it: "
                    f"dkms install NAME/VERSION -k {kernel}), then depmod -a {kernel}")
        if reason == "weak_update_missing":
            return d.add_weak_modules(kernel)
        if reason == "kabi_mismatch":
            return d.install_kmod_for(kernel, package or f"the kmod package that ships {module}", fallback)
        rebuild = f"dkms install {dkms} -k {kernel}" if dkms else f"dkms autoinstall -k {kernel}"
        if reason == "headers_missing":
            return install_headers
        if reason == "not_built":
            return f"{install_headers} && {rebuild}" if not headers else rebuild
        if reason == "build_failed":
            if cause == "headers_missing" or not headers:
                return f"{install_headers} && {rebuild}"
            if cause == "compiler_missing":
                return f"{d.install_build_tools()} && {rebuild}"
            if cause == "kernel_api_mismatch":
                return f"upgrade the package that ships {dkms or module} to a version that supports {kernel}, then {rebuild}"
            return f"read /var/lib/dkms/{dkms}/build/make.log, then {rebuild}" if dkms else rebuild
        if reason == "built_not_installed":
            return rebuild
        if reason == "file_missing":
            return f"dkms install --force {dkms} -k {kernel}" if dkms else \
                f"reinstall the package that ships {module} for {kernel}"
        if reason == "not_in_depmod":
            return f"depmod -a {kernel}"
        rebuild_force = f"dkms install --force {dkms} -k {kernel}" if dkms else \
            f"reinstall the package that ships {module} for {kernel}"
        if reason in ("module_unreadable", "vermagic_mismatch", "symbol_version_mismatch", "signature_invalid"):
            return rebuild_force if headers else f"{install_headers} && {rebuild_force}"
        if reason == "unknown_symbol":
            return f"upgrade the package that ships {dkms or module} to a version built for {kernel}, then {rebuild}"
        if reason == "unsigned":
            return f"{d.sign_module()}, or let DKMS sign it: {rebuild_force}"
        if reason == "signature_revoked":
            if akmod:
                return f"{d.new_akmods_key()}, then {d.rebuild_akmod(kernel, akmod)}, then {d.enrol_akmods_key()}"
            if dkms:
                return f"{d.new_dkms_key()}, then {rebuild_force} (DKMS makes a new key), then {d.enrol_dkms_key()}"
            return (f"re-sign {module} with a key whose certificate is not revoked and enrol that certificate "
                    "(mokutil --import CERT.der, then MokManager at the next boot)")
        if reason == "untrusted_key":
            if akmod:
                return d.enrol_akmods_key()
            if dkms:
                return d.enrol_dkms_key()
            return (f"enrol the certificate of the key that signed {module} (mokutil --import CERT.der, then "
                    "MokManager at the next boot), or re-sign it with an enrolled key")
        return ""


def fixes_for(facts: HostFacts) -> Fixes:
    """The fix vocabulary of the host the facts are from (its os collector's family, and the
    package holds a fix has to lift first)."""
    found = facts.get(OsFacts)
    packages = facts.get(PackageFacts)
    holds = {p.name: p.held_by for p in packages.held if p.held_by} if packages else {}
    installed = frozenset(n for p in packages.packages if p.state == "installed"
                          for n in (p.name, p.nevra) if n) if packages else frozenset()
    return Fixes(for_family(found.family if found else None), holds, installed)
