"""Does one module work for one kernel?  The checks, from building the module to booting with it.

1. DKMS or akmods state (``not_built``, ``build_failed``, ``built_not_installed``): one at most;
2. the file and depmod (``file_missing``, or for a kmod of another kernel that weak-modules
   would link, ``weak_update_missing`` / ``kabi_mismatch``; ``not_in_depmod``): one at most,
   only with a build;
3. the loader's own checks of the file (``module_unreadable``, ``vermagic_mismatch``,
   ``symbol_version_mismatch``, ``unknown_symbol``), then its signature (``unsigned``,
   ``signature_revoked``, ``untrusted_key``, ``signature_invalid``): all that apply.  The kernel's load_module() checks the signature first;
   every one of them is reported, so the order changes the listing, not the verdict;
4. early boot: the initramfs (``missing_from_initramfs``, ``initramfs_stale``), only when
   nothing so far is an error;
5. ``blacklisted`` (a warning: the module still loads when asked for).

docs/readiness.md lists them in this order; a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..facts import HostFacts
from ..facts.akmods import AkmodEntry
from ..facts.dkms import DkmsEntry
from ..facts.initramfs import InitramfsFacts, KernelImage
from ..facts.kernel import OUT_OF_TREE_DIRS, Kernel, KernelFacts
from ..facts.loaded import LoadedFacts
from ..facts.module import KernelModuleFacts, ModuleFacts
from ..facts.packages import PackageFacts
from ..facts.secureboot import TrustFacts, module_trusted_certificates
from ..formats.depmod import modname_of_path
from ..formats.module import XZ_CHECK_NAMES, ModuleFile, ModuleFileError, ModuleSignature
from ..formats.x509 import Certificate
from .fixes import Fixes
from .loader import check_versions, vermagic_matches
from .model import ModuleVerdict, Problem
from ..formats.modsig import SigCheck, matches, policy_rejection, verify
from .trust import enforced_for, revocation_certificates, signing_certificate

# the module-level reasons, in the order assess_module() reports them (docs/readiness.md); the
# first three exclude each other: no build (failed or never tried) comes before "not installed"
CHECK_ORDER = ("not_built", "build_failed", "built_not_installed", "file_missing", "weak_update_missing",
               "kabi_mismatch", "not_in_depmod",
               "module_unreadable", "vermagic_mismatch", "symbol_version_mismatch", "unknown_symbol",
               "unsigned", "signature_revoked", "untrusted_key", "signature_invalid", "dependency_missing", "missing_from_initramfs", "initramfs_stale", "blacklisted")


@dataclass(frozen=True)
class Evidence:
    """What the checks need to know about one kernel, gathered once per kernel and scrape."""
    modules: KernelModuleFacts | None
    enforced: bool | None               # will this kernel refuse unsigned / untrusted modules
    trusted: tuple[Certificate, ...]
    trust_known: bool
    builtin: ModuleSignature | None
    blacklisted: frozenset[str]
    fix: Fixes
    early_boot: frozenset[str] = frozenset()
    image: KernelImage | None = None
    kernels: KernelFacts | None = None
    all_modules: dict[str, KernelModuleFacts] | None = None   # every kernel's, for weak-modules' candidates
    module_packages: dict[str, str] | None = None             # module file path -> the package that ships it
    sig_checked: bool | None = None     # CONFIG_MODULE_SIG=y: the kernel checks every signature it finds
    unused: tuple[Certificate, ...] = ()  # enrolled (MokListRT, db), but not in a keyring K verifies modules with
    revoked: tuple[tuple[str, Certificate], ...] = ()   # (dbx / MokListXRT, certificate) in K's .blacklist

    @staticmethod
    def of(kernel: Kernel, facts: HostFacts, fix: Fixes, early_boot: frozenset[str] = frozenset()) -> "Evidence":
        modules, trust = facts.get(ModuleFacts), facts.get(TrustFacts)
        kernels, loaded, initramfs = facts.get(KernelFacts), facts.get(LoadedFacts), facts.get(InitramfsFacts)
        packages = facts.get(PackageFacts)
        mf = modules.kernels.get(kernel.release) if modules else None
        enforced = None
        if trust is not None:
            enforced = enforced_for(trust, kernel.config or None, kernels is not None and kernel.release == kernels.running)
        trusted = module_trusted_certificates(trust, kernel.config or None, fix.distro.family) if trust else ()
        return Evidence(mf, enforced, trusted,
                        bool(trust and trust.keys_known), mf.builtin_signer if mf else None,
                        loaded.blacklisted if loaded else frozenset(), fix, early_boot,
                        initramfs.images.get(kernel.release) if initramfs else None, kernels,
                        modules.kernels if modules else None,
                        {m.path.removeprefix("/usr"): m.package for m in packages.module_files} if packages else None,
                        kernel.config.get("CONFIG_MODULE_SIG") == "y" if kernel.config else None,
                        tuple(c for c in (trust.trusted_certificates if trust else ()) if c not in trusted),
                        revocation_certificates(trust, kernel.config or None) if trust else ())


def assess_module(kernel: Kernel, name: str, source: DkmsEntry | AkmodEntry | None, why: tuple[str, ...],
                   evidence: Evidence) -> ModuleVerdict:
    akmod = source if isinstance(source, AkmodEntry) else None
    entry = source if isinstance(source, DkmsEntry) else None
    arch_builds = [b for b in (entry.builds if entry else ()) if b.kernel == kernel.release]
    build = next((b for b in arch_builds if b.state == "installed"), None) or \
        next(iter(arch_builds), None)
    state = build.state if build else ("" if entry is None else
                                       "build_failed" if _failure_for(entry, kernel) else "added")
    file = _module_file(kernel, name)
    problem = _dkms_problem(kernel, name, entry, build, evidence.fix) if entry is not None else None
    if akmod is not None:
        problem = _akmod_problem(kernel, name, akmod, evidence.fix)
    if problem is None:
        problem = _file_problem(kernel, name, entry, file, evidence.fix)
        if problem is not None and problem.reason == "file_missing" and entry is None and akmod is None:
            problem = weak_modules_problem(kernel, name, evidence) or problem
    problems: list[Problem] = [problem] if problem else []
    signature, signed = None, None
    if problem is None and file is not None:
        parsed = evidence.modules.files.get(file.split(f"/lib/modules/{kernel.release}/", 1)[1]) \
            if evidence.modules else None
        if isinstance(parsed, ModuleFile):
            signature, signed = parsed.signature, parsed.signature is not None
        problems += module_truth_problems(kernel, name, entry, file, parsed, evidence,
                                          akmod.name if akmod else "")
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
                         why, state, file, tuple(problems), signature, signed, early, in_image,
                         f"akmods:{akmod.name}/{akmod.version}" if akmod else "")


def initramfs_problems(kernel: Kernel, name: str, file: str | None, ev: Evidence) -> list[Problem]:
    """An early-boot module must be in the kernel's initramfs, and that image must be newer."""
    image = ev.image
    if image is None or image.listing is None:
        return []  # no image (a kernel problem) or unreadable (the verdict is unknown)
    k = kernel.release
    if name not in image.listing.modules:
        return [Problem("missing_from_initramfs", f"{name} is needed in early boot but {image.path} lacks it",
                        ev.fix("missing_from_initramfs", k))]
    rel = file.split(f"/lib/modules/{k}/", 1)[1] if file else ""
    module_mtime = kernel.mtimes.get(rel)
    if module_mtime is not None and image.mtime is not None and image.mtime < module_mtime:
        return [Problem("initramfs_stale", f"{image.path} is older than {file}: it holds an earlier build",
                        ev.fix("initramfs_stale", k))]
    return []


def kernel_decompressor_refusal(parsed: ModuleFile, config: Mapping[str, str] | None) -> str | None:
    """Why K's own decompressor refuses a .ko.xz, or None.  With CONFIG_MODULE_DECOMPRESS and
    xz modules the kernel decompresses them itself: kmod (31+) hands the file over with
    MODULE_INIT_COMPRESSED_FILE and does not fall back to liblzma.  XZ Embedded verifies only the
    checks none and CRC32 (lib/xz dec_stream_header: any other is XZ_OPTIONS_ERROR, EINVAL; the
    oracle saw "decompression failed with status 6" for `xz --check=crc64` on Debian 13's 6.12),
    which is why kbuild and dkms 3.2 compress with --check=crc32 and dkms 3.0's `xz -f` did not."""
    if parsed.compression != "xz" or parsed.xz_check in (None, 0, 1) or not config:
        return None
    if config.get("CONFIG_MODULE_DECOMPRESS") != "y" or config.get("CONFIG_MODULE_COMPRESS_XZ") != "y":
        return None
    check = XZ_CHECK_NAMES.get(parsed.xz_check, f"ID {parsed.xz_check}")
    return (f"xz check {check}: the kernel decompresses .ko.xz itself (CONFIG_MODULE_DECOMPRESS) and verifies "
            "only none or CRC32 (\"decompression failed with status 6\"); recompress with xz --check=crc32")


def module_truth_problems(kernel: Kernel, name: str, entry: DkmsEntry | None, file: str,
                          parsed: ModuleFile | ModuleFileError | None, ev: Evidence, akmod: str = "") -> list[Problem]:
    """Will the kernel's loader accept this file? vermagic, symbol CRCs, signature and key."""
    ident = f"{entry.module}/{entry.version}" if entry else ""
    k = kernel.release
    if parsed is None:
        return []  # unreadable: recorded as a collector error, so the verdict is already unknown
    if isinstance(parsed, ModuleFileError):
        return [Problem("module_unreadable", f"{file}: {parsed}", ev.fix("module_unreadable", k, ident, name))]
    refusal = kernel_decompressor_refusal(parsed, kernel.config)
    if refusal:
        return [Problem("module_unreadable", f"{file}: {refusal}", ev.fix("module_unreadable", k, ident, name))]
    out: list[Problem] = []
    kmf = ev.modules
    if kmf is not None and kmf.vermagic and not vermagic_matches(parsed.vermagic, kmf.vermagic,
                                                                 parsed.has_versions):
        out.append(Problem("vermagic_mismatch", f"version magic '{parsed.vermagic}' should be '{kmf.vermagic}'",
                           ev.fix("vermagic_mismatch", k, ident, name)))
    if kmf is not None and kmf.exports:
        vc = check_versions(parsed, kmf.exports)
        if vc.mismatches:
            syms = ", ".join(s for s, _, _ in vc.mismatches[:3])
            more = f" and {len(vc.mismatches) - 3} more" if len(vc.mismatches) > 3 else ""
            out.append(Problem("symbol_version_mismatch", f"disagrees about version of symbol {syms}{more}",
                               ev.fix("symbol_version_mismatch", k, ident, name)))
        unknown = list(vc.unknown) + list(vc.gpl_only) + [f"{s} (namespace {ns} not imported)"
                                                          for s, ns in vc.missing_namespaces]
        if unknown:
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            out.append(Problem("unknown_symbol", f"Unknown symbol {', '.join(unknown[:3])}{more}",
                               ev.fix("unknown_symbol", k, ident, name)))
    sig = parsed.signature
    if ev.enforced and sig is None:
        out.append(Problem("unsigned", f"{k} enforces module signatures and {file} is unsigned",
                           ev.fix("unsigned", k, ident, name)))
    if sig is not None and (ev.sig_checked or ev.enforced):
        out += _signature_problems(k, name, ident, sig, ev, akmod, file)
    if kmf is not None:
        out += dependency_problems(k, name, file, kmf, ev)
    return out


def dependency_problems(k: str, name: str, file: str, kmf: KernelModuleFacts, ev: Evidence) -> list[Problem]:
    """The modules this one needs first (formats.depmod.module_needs) that K lacks: modprobe
    stops at a dependency whose file is gone ("could not insert"), and a module loaded without
    the exporter of a symbol gets "Unknown symbol" from simplify_symbols(), which runs after
    the signature check in load_module()."""
    rel = file.split(f"/lib/modules/{k}/", 1)[1]
    missing = kmf.missing_needs(rel)
    if not missing:
        return []
    described = kmf.exports.module_names if kmf.exports else frozenset()
    parts, fixes = [], []
    for need in missing:
        where = (f"modules.dep lists {need.rel} but the file is gone" if need.rel else
                 f"{k}'s depmod index has no {need.name}")
        parts.append(f"{need.name} ({need.why}): {where}")
        intree = need.rel.startswith("kernel/") if need.rel else (need.why.startswith("symbol ")
                                                                   or need.name in described)
        package = (ev.module_packages or {}).get(f"/lib/modules/{k}/{need.rel}", "") if need.rel else ""
        fixes.append(ev.fix("dependency_missing", k, module=need.name, package=package,
                            fallback="intree" if intree else ""))
    more = f" and {len(parts) - 3} more" if len(parts) > 3 else ""
    return [Problem("dependency_missing", f"{name} needs {'; '.join(parts[:3])}{more}",
                    " && ".join(dict.fromkeys(fixes)))]


def _signature_problems(k: str, name: str, ident: str, sig: ModuleSignature, ev: Evidence,
                        akmod: str, file: str = "") -> list[Problem]:
    """The kernel's module_sig_check() on a signed file: a message it refuses outright, an
    unknown key (fatal only when enforced), or a signature that fails with the key it found
    (fatal always: "all other errors are fatal ... even if signatures aren't required")."""
    invalid = lambda detail: [Problem("signature_invalid", detail,  # noqa: E731
                                      ev.fix("signature_invalid", k, ident, name))]
    refused = policy_rejection(sig)
    if refused is not None:
        return invalid(refused)
    check = lambda cert: _verified(ev, k, file, sig, cert)  # noqa: E731
    revoked = _revocation_problem(k, name, ident, sig, ev, check)
    if revoked is not None:
        return [revoked]
    builtin = ev.modules.builtin_keys if ev.modules is not None else None
    unreadable = builtin is None and ev.modules is not None and bool(ev.modules.builtin_keys_error)
    if unreadable and ev.builtin is not None and sig.signer == ev.builtin.signer and sig.key_id == ev.builtin.key_id:
        return []  # K's own build key, but its image's certificates could not be read: by name only
    cert = signing_certificate(sig, (*(builtin or ()), *ev.trusted))
    if cert is None:
        if ev.enforced and ev.trust_known and signing_certificate(sig, ev.unused) is not None:
            return [Problem("untrusted_key", f"signed by '{sig.signer}' (key {sig.key_id}), which is enrolled "
                            f"(MokListRT or db) but not in a keyring {k} verifies modules with: its kernel has no "
                            ".platform fallback, and MOK reaches .machine only with "
                            "CONFIG_INTEGRITY_MACHINE_KEYRING and shim's MokListTrustedRT (and, with "
                            "CONFIG_INTEGRITY_CA_MACHINE_KEYRING, only as a CA certificate with keyCertSign)",
                            ev.fix("untrusted_key", k, ident, name, akmod=akmod))]
        if ev.enforced and ev.trust_known:
            return [Problem("untrusted_key", f"signed by '{sig.signer}' (key {sig.key_id}), which is not "
                            "enrolled (MokListRT, db) nor the kernel's own key",
                            ev.fix("untrusted_key", k, ident, name, akmod=akmod))]
        return []
    result = check(cert)
    if result.ok:
        return []
    return invalid(f"signed by '{sig.signer}' (key {sig.key_id}, certificate sha256 {cert.sha256[:16]}…): "
                   f"{result.detail}")


def _verified(ev: Evidence, k: str, file: str, sig: ModuleSignature, cert: Certificate) -> SigCheck:
    """The module collector's verification of this file with this certificate (kept by the
    file's identity on disk), else verified here."""
    rel = file.split(f"/lib/modules/{k}/", 1)[-1]
    found = ev.modules.sigchecks.get((rel, cert.sha256)) if ev.modules is not None else None
    return found if found is not None else verify(sig, cert)


def _revocation_problem(k: str, name: str, ident: str, sig: ModuleSignature, ev: Evidence,
                        check: Callable[[Certificate], SigCheck]) -> Problem | None:
    """certs/system_keyring.c verify_pkcs7_message_sig(): after pkcs7_verify() and before any
    trusted keyring is searched, is_key_on_revocation_list() looks the signer up in .blacklist
    and, when its key verifies the signature, the load fails with EKEYREJECTED, fatal whatever
    the enforcement (and whether or not the key is also enrolled)."""
    for source, cert in ev.revoked:
        if matches(sig, cert) and check(cert).ok:
            return Problem("signature_revoked",
                           f"signed by '{sig.signer or sig.skid}' (key {sig.key_id or sig.skid}), whose certificate "
                           f"(sha256 {cert.sha256[:16]}…) is revoked in {source}: {k} loads it into its .blacklist "
                           "keyring and refuses the signature (EKEYREJECTED) even where signatures are not enforced",
                           ev.fix("signature_revoked", k, ident, name))
    return None


def _akmod_problem(kernel: Kernel, name: str, akmod: AkmodEntry, fix: Fixes) -> Problem | None:
    """akmods' kmod for K is under extra/NAME/; without it, its failed build, or no build yet."""
    k = kernel.release
    if any(p.startswith(f"extra/{akmod.name}/") for p in kernel.out_of_tree.get(name, ())):
        return None
    failure = akmod.failure_for(k)
    if failure is not None:
        return Problem("build_failed", f"{failure.cause}: {failure.detail} (see {failure.log})",
                       fix("build_failed", k, module=name, headers=kernel.headers, cause=failure.cause,
                           akmod=akmod.name))
    detail = f"akmods has no kmod of {akmod.name} {akmod.verrel} for {k} (no /lib/modules/{k}/extra/{akmod.name}/)"
    if not kernel.headers:
        detail += f": headers for {k} are not installed"
    return Problem("not_built", detail, fix("not_built", k, module=name, headers=kernel.headers, akmod=akmod.name))


def weak_modules_problem(kernel: Kernel, name: str, ev: Evidence) -> Problem | None:
    """A module K lacks that another kernel has in extra/ (a kmod package): weak-modules links it
    into K's weak-updates/ when its CRCs all match K's symvers (RHEL's weak-modules runs
    ``depmod -aeE symvers-K`` for that), and only then.  Decided with the loader's own CRC check;
    None when the host has no weak-modules, K's CRCs are unknown, or no other kernel has it."""
    kernels, mods = ev.kernels, ev.all_modules
    if kernels is None or mods is None or not kernels.weak_modules or ev.modules is None or not ev.modules.exports:
        return None
    candidates = [(k.release, rel) for k in kernels.kernels if k.release != kernel.release and _same_flavour(k, kernel, kernels)
                  for rel in k.out_of_tree.get(name, ()) if rel.startswith(kernels.kmp_dirs)
                  and not rel.startswith("updates/dkms/")]
    if not candidates:
        return None
    other, rel = candidates[-1]          # weak-modules links every kernel's in turn: the newest stays
    parsed = mods.get(other, KernelModuleFacts(None, "", None, "", None)).files.get(rel)
    if not isinstance(parsed, ModuleFile):
        return None
    path, k = f"/lib/modules/{other}/{rel}", kernel.release
    vc = check_versions(parsed, ev.modules.exports)
    if vc.ok and not vc.no_versions:
        return Problem("weak_update_missing", f"{path} (built for {other}) fits {k}'s symbol versions, but "
                       f"/lib/modules/{k}/weak-updates/ has no link to it", ev.fix("weak_update_missing", k, module=name))
    bad = [f"{s} (0x{m:08x}, {k} has 0x{c:08x})" for s, m, c in vc.mismatches] + [f"{s} (not exported)" for s in vc.unknown]
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    package = (ev.module_packages or {}).get(path, "")
    return Problem("kabi_mismatch", f"{path} (built for {other}) does not fit {k}: "
                   f"{', '.join(bad[:3]) or 'no symbol versions'}{more}; weak-modules will not link it",
                   ev.fix("kabi_mismatch", k, module=name, package=package, fallback=other))


def _same_flavour(other: Kernel, kernel: Kernel, kernels: KernelFacts) -> bool:
    """weak-modules2 links a KMP only into kernels of the flavour it was built for (-default into
    -default, never -azure); RHEL's weak-modules has no flavours in its releases' last part."""
    if "updates/" not in kernels.kmp_dirs:
        return True
    return other.release.rsplit("-", 1)[-1] == kernel.release.rsplit("-", 1)[-1]


def _failure_for(entry: DkmsEntry, kernel: Kernel):
    f = entry.failure
    return f if f is not None and f.kernel == kernel.release else None


def _dkms_problem(kernel: Kernel, name: str, entry: DkmsEntry, build, fix: Fixes) -> Problem | None:
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


def _file_problem(kernel: Kernel, name: str, entry: DkmsEntry | None, file: str | None,
                  fix: Fixes) -> Problem | None:
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
