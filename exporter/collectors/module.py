"""--collector.module: the out-of-tree module files of every installed kernel, read the way the
kernel's loader would judge them, and what each kernel expects (vermagic, exported CRCs,
its own signing key).

Files are parsed with exporter.formats.module (ELF .modinfo, __versions, symbols, the appended
PKCS#7 signature), cached by file identity: an unchanged module costs one stat per scrape.
"""

from __future__ import annotations

import os
import pathlib

from ..facts.kernel import MODULES_ROOT, Kernel, KernelFacts
from ..facts.loaded import LoadedFacts
from ..facts.module import KernelModuleFacts, ModuleFacts
from ..facts.os import OsFacts
from ..facts.secureboot import TrustFacts, module_trusted_certificates
from ..formats import symvers
from ..formats.depmod import Need, modname_of_path, module_needs
from ..formats.module import DEFAULT_MAX, ModuleFile, ModuleFileError, ModuleSignature, parse_module_stream
from ..formats.jsoncodec import Codec
from ..formats.symvers import ExportTable, SymversError
from ..formats.vmlinux import VmlinuxError, builtin_certificates
from ..formats.modsig import SigCheck, matches, policy_rejection, verify
from ..formats.x509 import CODEC as X509_CODEC, Certificate, load_certificate
from ..formats.errors import TrustDataError
from ..host.context import Context, DirEntries, Unreadable
from ..host.parallel import parse_side_by_side
from ..host.reader import open_regular, read_bounded
from . import register

MAX_REFERENCE_CANDIDATES = 5
MODULE_PURPOSE = "module"
# parsed module files as the persistent cache (--cache.dir) keeps them
MODULE_CODEC = Codec("module", (ModuleFile, ModuleSignature), errors={ModuleFileError: ("code", "message")})
# one verification of a module's signature with one certificate, kept by the module's identity
SIGCHECK_CODEC = Codec("sigcheck", (SigCheck,))
# the keys DKMS, Ubuntu's shim-signed and akmods sign with (their certificates, as the
# secureboot collector also reads them): the usual signers of out-of-tree modules
SIGNER_CERTS = ("/var/lib/dkms/mok.pub", "/var/lib/shim-signed/mok/MOK.der", "/etc/pki/akmods/certs/public_key.der")
MAX_CERT_BYTES = 1024 * 1024
KEYS_CODEC = Codec("builtin-keys", (Certificate,))
"""K's built-in certificates, kept on disk by the image's identity: reading them decompresses the
whole vmlinuz (seconds, and liblzma's 32 MiB dictionary), once per kernel install instead of once
per process."""


@register("module", ModuleFacts, after=("kernel", "loaded"), uses=("os", "secureboot"), readiness=True)
def collect_modules(ctx: Context) -> ModuleFacts:
    kernels: KernelFacts | None = ctx.previous.get("kernel")
    if kernels is None:
        raise RuntimeError("the kernel collector did not run: no module files to read")
    loaded: LoadedFacts | None = ctx.previous.get("loaded")
    wanted_loaded = set(loaded.out_of_tree) if loaded else set()
    loaded_names = {m.name for m in loaded.modules} if loaded else set()
    wanted = {k.release: _module_rels(k, wanted_loaded) for k in kernels.kernels}
    parsed = _read_all(ctx, [f"{MODULES_ROOT}/{k}/{rel}" for k, rels in wanted.items() for rel in sorted(rels)])
    files = {k.release: _module_files(ctx, k, wanted[k.release], parsed) for k in kernels.kernels}
    out = {}
    for k in kernels.kernels:
        users = [p for p in files[k.release].values() if isinstance(p, ModuleFile)] + _weak_candidates(kernels, k, files)
        out[k.release] = _kernel_modules(ctx, k, files[k.release], users, loaded_names)
    return ModuleFacts(out)


PARSE_WORKERS = 2
"""Module files parsed side by side when several are not cached (a cold scrape, a DKMS rebuild
for every kernel): their decompression (liblzma, zstd) and digests run outside the interpreter
lock, which made the 72 compressed files of the benchmark's big host 0.39 -> ~0.3 s.  A warm
scrape starts no thread."""


def _read_all(ctx: Context, paths: list[str]) -> dict[str, ModuleFile | ModuleFileError | None]:
    """read_module_file for each of ``paths``: in PARSE_WORKERS threads when several are not in
    the in-memory cache, else in order.  Each file is read once either way, and a file two paths
    lead to (a weak-updates link) by the first of them, so the cache's counters are those of
    the serial order whatever the machine's cores; read errors are recorded in ``paths`` order."""
    first: dict[str, str] = {}
    for p in paths:
        first.setdefault(ctx.same_file_key(p), p)
    lead = list(first.values())
    uncached = sum(1 for p in lead if not ctx.cached(p, MODULE_PURPOSE))
    out = dict(zip(lead, parse_side_by_side(ctx, read_module_file, lead, min(PARSE_WORKERS, uncached))))
    return {p: out[p] if p in out else read_module_file(ctx, p) for p in paths}


def _module_rels(k: Kernel, wanted_loaded: set[str]) -> set[str]:
    """K's out-of-tree module files (and loaded ones K indexes elsewhere), relative to its tree."""
    rels = {rel for paths in k.out_of_tree.values() for rel in paths}
    if k.modules_dep is not None:  # loaded out-of-tree modules that live elsewhere (vendor packages)
        rels.update(k.modules_dep.paths[m] for m in wanted_loaded if m in k.modules_dep.paths)
    return rels


def _module_files(ctx: Context, k: Kernel, rels: set[str],
                  parsed_at: dict[str, ModuleFile | ModuleFileError | None]) -> dict[str, ModuleFile | ModuleFileError]:
    """K's module files at ``rels``, as _read_all parsed them."""
    base = f"{MODULES_ROOT}/{k.release}"
    listed = {rel for paths in k.out_of_tree.values() for rel in paths}
    files: dict[str, ModuleFile | ModuleFileError] = {}
    for rel in sorted(rels):
        parsed = parsed_at[f"{base}/{rel}"]
        if parsed is not None:
            files[rel] = parsed
        elif rel in listed and not ctx.exists(f"{base}/{rel}"):
            # the kernel collector listed it moments ago: unread, it must not count as a module
            # with no problems (the tree changed during the scrape; the next one sees it whole)
            ctx.error(f"{base}/{rel}", "listed, then gone when read: the tree changed during the scrape")
    return files


def _weak_candidates(kernels: KernelFacts, k: Kernel, files: dict[str, dict]) -> list[ModuleFile]:
    """Other kernels' kmod files the verdict checks against K's exports (weak-modules, see
    verdict.checks.weak_modules_problem): K's export slice must answer for them too."""
    if not kernels.weak_modules:
        return []
    return [p for other in kernels.kernels if other.release != k.release
            for rel, p in files.get(other.release, {}).items()
            if isinstance(p, ModuleFile) and rel.startswith(kernels.kmp_dirs) and not rel.startswith("updates/dkms/")]


def _kernel_modules(ctx: Context, k: Kernel, files: dict[str, ModuleFile | ModuleFileError], users: list[ModuleFile],
                    loaded_names: set[str] = frozenset()) -> KernelModuleFacts:
    base = f"{MODULES_ROOT}/{k.release}"
    vermagic, vsource, signer = _reference(ctx, k)
    exports, esource = _exports(ctx, k, users)
    needs = _needs(k, files, exports)
    present = _present(ctx, k, needs, loaded_names)
    keys, keys_error = None, ""
    checks: dict[tuple[str, str], SigCheck] = {}
    if any(isinstance(p, ModuleFile) and p.signature is not None for p in files.values()):
        enrolled = enrolled_signers(ctx, k, files)
        if enrolled is None:
            keys, keys_error = builtin_keys(ctx, k)
        checks = signature_checks(ctx, base, files, (*(keys or ()), *signer_certificates(ctx), *(enrolled or ())))
    return KernelModuleFacts(vermagic, vsource, exports, esource, signer, files, needs, present, keys, keys_error,
                             checks)


def signature_checks(ctx: Context, base: str, files: dict[str, ModuleFile | ModuleFileError],
                     candidates: tuple[Certificate, ...]) -> dict[tuple[str, str], SigCheck]:
    """Each signed module verified with every candidate certificate its signer names (K's own
    keys, the signing keys on disk), kept by the module file's identity in the persistent cache:
    a cold run on an unchanged host verifies nothing, and never imports `cryptography`.  The
    verdict looks a result up by (file, certificate SHA-256) and verifies itself on a miss."""
    out: dict[tuple[str, str], SigCheck] = {}
    for rel, parsed in files.items():
        sig = parsed.signature if isinstance(parsed, ModuleFile) else None
        if sig is None or policy_rejection(sig) is not None:
            continue
        for cert in candidates:
            if not matches(sig, cert) or (rel, cert.sha256) in out:
                continue
            try:
                found = ctx.compute(f"{base}/{rel}", f"sigcheck-{cert.sha256[:32]}",
                                    lambda _p, _st, s=sig, c=cert: verify(s, c), persist=SIGCHECK_CODEC)
            except Unreadable:
                continue
            if found is not None:
                out[(rel, cert.sha256)] = found
    return out


def signer_certificates(ctx: Context) -> tuple[Certificate, ...]:
    """The signing certificates on disk that parse (a bad one is the secureboot collector's
    error to report, not this one's)."""
    certs = []
    for path in SIGNER_CERTS:
        try:
            cert = ctx.compute(path, "signer-cert", _certificate_or_none, persist=X509_CODEC)
        except Unreadable:
            continue
        if cert is not None:
            certs.append(cert)
    return tuple(certs)


def _certificate_or_none(path, _st) -> Certificate | None:
    try:
        return load_certificate(read_bounded(path, MAX_CERT_BYTES), str(path))
    except (OSError, ValueError, TrustDataError):
        return None


def enrolled_signers(ctx: Context, k: Kernel, files: dict[str, ModuleFile | ModuleFileError]
                     ) -> tuple[Certificate, ...] | None:
    """The enrolled certificates K verifies modules with (MokListRT, db: facts.secureboot), when
    they name the signer of every signed file of K that the kernel would look a key up for; else
    None, and K's built-in certificates must be read.

    Then the verdict finds the same certificate with or without K's image: a signer is looked up
    by issuer and serial (or SKID), and a built-in certificate with the same identifier as an
    enrolled one would be a deliberate collision, where the kernel's pick between its keyrings is
    not defined either.  That spares what a DKMS host under Secure Boot pays after each kernel
    install: decompressing the whole vmlinuz (~0.7 s, and liblzma's 32 MiB dictionary for
    Debian's).  Without the secureboot or os collector's facts, or with unreadable key lists,
    the image is read as before."""
    trust: TrustFacts | None = ctx.previous.get("secureboot")
    found: OsFacts | None = ctx.previous.get("os")
    if trust is None or not trust.keys_known or found is None:
        return None
    trusted = module_trusted_certificates(trust, k.config or None, found.family)
    for parsed in files.values():
        sig = parsed.signature if isinstance(parsed, ModuleFile) else None
        if sig is not None and policy_rejection(sig) is None and not any(matches(sig, c) for c in trusted):
            return None
    return trusted


def builtin_keys(ctx: Context, k: Kernel) -> tuple[tuple[Certificate, ...] | None, str]:
    """The certificates built into K's image (formats.vmlinux), read only when a module file of K
    is signed: decompressing a vmlinuz costs seconds once, then nothing (cached by the image's
    identity).  (None, why) when the image has none this reader can find or cannot be read."""
    if not k.image:
        return None, "no kernel image"
    extra = int(k.config.get("CONFIG_SYSTEM_EXTRA_CERTIFICATE_SIZE", "0") or 0) \
        if k.config.get("CONFIG_SYSTEM_EXTRA_CERTIFICATE") == "y" else 0
    try:
        found = ctx.compute(k.image, "builtin-keys", lambda path, st: _read_keys(path, st, extra), persist=KEYS_CODEC)
    except Unreadable:
        return None, f"{k.image} could not be read"
    if found is None:
        return None, f"{k.image} is gone"
    return found


def _read_keys(path, st, extra: int) -> tuple[tuple[Certificate, ...] | None, str]:
    with open_regular(path) as fh:
        try:
            return builtin_certificates(fh, st.st_size, extra).certificates, ""
        except (VmlinuxError, TrustDataError) as exc:
            return None, f"{os.path.basename(path)}: {exc}"


def _needs(k: Kernel, files: dict[str, ModuleFile | ModuleFileError],
           exports: ExportTable | None) -> dict[str, tuple[Need, ...]]:
    """What each parsed module needs loaded first for K (formats.depmod.module_needs)."""
    if k.modules_dep is None:
        return {}
    renamed = _renamed(k, files)   # once per kernel: per module it made this quadratic in K's modules
    return {rel: module_needs(modname_of_path(rel), rel, parsed.depends, parsed.undefined, k.modules_dep,
                              exports, k.builtin, renamed)
            for rel, parsed in files.items() if isinstance(parsed, ModuleFile)}


def _renamed(k: Kernel, files: dict[str, ModuleFile | ModuleFileError]) -> dict[str, str]:
    """Kernel name (.modinfo name=) -> file, for the indexed module files whose file name says
    otherwise (DKMS's DEST_MODULE_NAME: nvidia-current-modeset.ko is the kernel's nvidia_modeset)."""
    dep = k.modules_dep
    out = {}
    for rel, parsed in files.items():
        if isinstance(parsed, ModuleFile) and parsed.name and dep is not None:
            name, indexed = parsed.name.replace("-", "_"), modname_of_path(rel)
            if name != indexed and dep.paths.get(indexed) == rel:
                out.setdefault(name, rel)
    return out


def _present(ctx: Context, k: Kernel, needs: dict[str, tuple[Need, ...]], loaded: set[str]) -> dict[str, bool]:
    """Does K's tree hold the files those needs and the modules loaded now resolve to?  One
    stat each: modules.dep may name a file deleted since depmod ran (modprobe then fails)."""
    dep = k.modules_dep
    if dep is None:
        return {}
    rels = {n.rel for ns in needs.values() for n in ns if n.rel}
    rels.update(dep.paths[m] for m in loaded if m in dep.paths)
    base = f"{MODULES_ROOT}/{k.release}"
    out: dict[str, bool] = {}
    listings: dict[str, DirEntries | None] = {}
    # one cached listing per directory (one stat a warm scrape), not one stat per file:
    # thousands of modules are loaded on a big host, and this runs for every kernel
    for rel in sorted(rels):
        directory, _, name = rel.rpartition("/")
        if directory not in listings:
            listings[directory] = ctx.dir_entries(f"{base}/{directory}" if directory else base)
        entries = listings[directory]
        if entries is None:
            out[rel] = False
        elif name in entries.links:
            out[rel] = ctx.exists(f"{base}/{rel}")   # a link: resolved inside the root
        else:
            out[rel] = name in entries.files
    return out


def read_module_file(ctx: Context, hostpath: str) -> ModuleFile | ModuleFileError | None:
    """A parsed module, or the ModuleFileError that says why it is not one (a fact about the
    file, cached like a parse); None when the file vanished or could not be read (recorded)."""
    try:
        return ctx.compute(hostpath, MODULE_PURPOSE, _parse_or_error, persist=MODULE_CODEC)
    except Unreadable:
        return None


def read_module(path: pathlib.Path, max_bytes: int = DEFAULT_MAX) -> ModuleFile:
    """Open and parse one module file, streamed: never held whole, decompressed or not
    (exporter.formats.modview), so a tens-of-MiB vendor module costs a few MiB of memory."""
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            return parse_module_stream(fh, size, max_bytes)
    except OSError as e:
        raise ModuleFileError("unreadable", f"{path}: {e.strerror or e}") from e
    except ModuleFileError as e:
        raise ModuleFileError(e.code, f"{path}: {e.message}") from None


def _parse_or_error(path, _st) -> ModuleFile | ModuleFileError:
    try:
        return read_module(path, DEFAULT_MAX)
    except ModuleFileError as exc:
        if exc.code == "unreadable":
            raise OSError(exc.message) from None
        return exc


def _reference(ctx: Context, k: Kernel) -> tuple[str | None, str, ModuleSignature | None]:
    """The kernel's vermagic and build key, from one of its own (in-tree) modules."""
    if k.modules_dep is None:
        return None, "", None
    for rel in k.modules_dep.first_in_tree(MAX_REFERENCE_CANDIDATES):
        parsed = read_module_file(ctx, f"{MODULES_ROOT}/{k.release}/{rel}")
        if isinstance(parsed, ModuleFile) and parsed.vermagic:
            return parsed.vermagic, f"{MODULES_ROOT}/{k.release}/{rel}", parsed.signature
    return None, "", None


def _exports(ctx: Context, k: Kernel, users: list[ModuleFile]) -> tuple[ExportTable | None, str]:
    """Exported symbols with CRCs: Module.symvers from the headers, or the symvers file
    Fedora/RHEL ship with the kernel. System.map carries no CRCs (scripts/mksysmap drops them).

    Kept as a slice (formats.symvers.ExportTable): the exports of the symbols ``users`` (the
    module files checked against K) import, by the file's identity.  A warm scrape checks, once
    per module object, that the slice still answers for it; a new or rebuilt module that uses
    a symbol it lacks has the file read again (as on a cold scrape), never judged from less."""
    candidates = []
    if k.headers_dir:
        candidates.append(f"{k.headers_dir}/Module.symvers")
    candidates += [f"{MODULES_ROOT}/{k.release}/build/Module.symvers",
                   f"/boot/symvers-{k.release}.gz", f"/boot/symvers-{k.release}.xz",
                   f"{MODULES_ROOT}/{k.release}/symvers.gz", f"{MODULES_ROOT}/{k.release}/symvers.xz"]
    for path in dict.fromkeys(candidates):
        try:
            exports = _load_slice(ctx, path, users)
            if exports and not _covers(exports, users):
                ctx.forget(path, SYMVERS_PURPOSE)
                exports = _load_slice(ctx, path, users)
        except Unreadable:
            return None, "none"
        if exports:
            return exports, path
    return None, "none"


SYMVERS_PURPOSE = "symvers"


def _load_slice(ctx: Context, path: str, users: list[ModuleFile]) -> ExportTable | None:
    """The slice of ``path`` for ``users``; the wanted set is only built when the file is parsed
    (a warm scrape finds the slice by the file's identity)."""
    return ctx.load(path, lambda data: _parse_symvers(data, frozenset(s for m in users for s in m.checked_symbols)),
                    limit=symvers.MAX_BYTES,
                    purpose=SYMVERS_PURPOSE, persist=symvers.CODEC)


def _covers(table: ExportTable, users: list[ModuleFile]) -> bool:
    """Does the slice answer for every user?  Remembered per module object in the table's memo,
    so a warm scrape costs a lookup per module, not a walk over its symbols."""
    memo = table.memo
    for m in users:
        hit = memo.get(("covers", id(m)))
        if hit is None or hit[0] is not m:
            hit = memo[("covers", id(m))] = (m, table.covers(m.checked_symbols))   # m kept: its id is not reused
        if not hit[1]:
            return False
    return True


def _parse_symvers(data: bytes, wanted: frozenset[str] | None = None) -> ExportTable:
    """Exports of a symvers file (a slice with ``wanted``); a damaged one or a bomb is
    ValueError (DecompressError is one), which the context records as this file being unreadable."""
    try:
        return symvers.parse_symvers_file(data, wanted=wanted)
    except SymversError as exc:
        raise ValueError(str(exc)) from None
