"""The kernel module loader's own checks of a module file against its target kernel.

Mirrors kernel/module/version.c and main.c of Linux 6.1: ``same_magic`` for vermagic,
``check_version`` for the CRCs in a module's ``__versions``, and symbol resolution for
"Unknown symbol".  Only what the files prove is claimed: a symbol that may come from a module
the kernel's Module.symvers does not describe is "undetermined", not "unknown".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..formats.module import ModuleFile
from ..formats.symvers import Export, ExportTable, module_name_of

MEMO_MAX = 4096
"""Per-table bound on remembered module checks: a table lives as long as its symvers file is
unchanged, and modules rewritten meanwhile leave stale entries behind; past the bound the memo
is cleared and rebuilt from what the next scrapes ask for."""

# kernel/module/main.c license_is_gpl_compatible() (6.1)
GPL_COMPATIBLE_LICENSES = frozenset(
    {"GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL"}
)


@dataclass(frozen=True)
class VersionCheck:
    """What the kernel's loader would say about a module's symbols.

    - ``mismatches``: (symbol, module crc, kernel crc): "disagrees about version of symbol".
    - ``unknown``: undefined symbols nobody exports ("Unknown symbol"), claimed only when every
      module in the module's ``depends`` is described by the Module.symvers given.
    - ``undetermined``: not exported by the kernel, but a ``depends`` module outside this
      Module.symvers (another out-of-tree module) may provide them.
    - ``gpl_only``: GPL-only exports used by a module whose license is not GPL-compatible.
    - ``missing_namespaces``: (symbol, namespace) used without MODULE_IMPORT_NS.
    - ``no_versions``: the kernel has CRCs but the module has no ``__versions``: the kernel
      refuses it without CONFIG_MODULE_FORCE_LOAD and loads it tainted (F) with it (Debian has
      it), so it is not part of ``ok``; the caller knows the target's config.
    """

    mismatches: tuple[tuple[str, int, int], ...] = ()
    unknown: tuple[str, ...] = ()
    undetermined: tuple[str, ...] = ()
    gpl_only: tuple[str, ...] = ()
    missing_namespaces: tuple[tuple[str, str], ...] = ()
    no_versions: bool = False

    @property
    def ok(self) -> bool:
        """True when the files prove nothing that stops the load (undetermined is not proof)."""
        return not (self.mismatches or self.unknown or self.gpl_only or self.missing_namespaces)


def vermagic_matches(module_vermagic: str | None, kernel_vermagic: str, has_versions: bool) -> bool:
    """The kernel's same_magic(): with __versions (on a MODVERSIONS kernel) only the part from
    the first space on is compared, so the release is ignored; otherwise the whole string.
    A module without vermagic is refused (needs force-load)."""
    if module_vermagic is None:
        return False
    if has_versions:
        return _from_first_space(module_vermagic) == _from_first_space(kernel_vermagic)
    return module_vermagic == kernel_vermagic


def _from_first_space(s: str) -> str:
    """C's `s + strcspn(s, " ")`."""
    i = s.find(" ")
    return s[i:] if i >= 0 else ""


def check_versions(module: ModuleFile, exports: Mapping[str, Export]) -> VersionCheck:
    """Check a module's symbols against a kernel's exports the way load_module() would.

    CRCs are compared for every ``__versions`` entry the kernel exports (that covers the
    undefined symbols and modpost's extra ``module_layout``); a symbol missing from
    ``__versions`` only draws a warning from the kernel, so it is not reported.

    Against an ExportTable (what the collectors give) the result is remembered per module
    object: both are cached by their files' identities, so a warm scrape of an unchanged host
    looks the answer up instead of walking the module's symbols again.
    """
    if not isinstance(exports, ExportTable):
        return _check_versions(module, exports, any(e.crc for e in exports.values()),
                               frozenset(module_name_of(e.module) for e in exports.values()))
    memo = exports.memo
    hit = memo.get(id(module))
    if hit is not None and hit[0] is module:
        return hit[1]
    if not exports.covers(module.checked_symbols):
        # a slice made for other modules (the collector keeps slices whole for its own): what it
        # lacks is not proof of "Unknown symbol"
        result = VersionCheck(undetermined=tuple(module.undefined),
                              no_versions=exports.has_crcs and not module.has_versions)
    else:
        result = _check_versions(module, exports, exports.has_crcs, exports.module_names)
    if len(memo) >= MEMO_MAX:
        memo.clear()
    memo[id(module)] = (module, result)      # the module is kept alive, so its id is not reused
    return result


def _check_versions(module: ModuleFile, exports: Mapping[str, Export], kernel_has_crcs: bool,
                    known_modules: frozenset[str]) -> VersionCheck:
    mismatches = tuple(
        (sym, crc, exports[sym].crc)
        for sym, crc in module.versions
        if kernel_has_crcs and sym in exports and exports[sym].crc != crc
    )
    used = [(sym, exports[sym]) for sym in module.undefined if sym in exports]
    missing = tuple(sym for sym in module.undefined if sym not in exports)
    outside = [d for d in module.depends if d.replace("-", "_") not in known_modules]
    gpl_compatible = (module.license or "") in GPL_COMPATIBLE_LICENSES
    imported = set(module.modinfo_values("import_ns"))
    # a weak reference the kernel resolves is checked as a strong one is (resolve_symbol:
    # CRC, then namespace); one it cannot see (a GPL-only export to a proprietary module) just
    # stays unresolved, which is allowed for a weak one
    found_weak = [(sym, exports[sym]) for sym in module.weak_undefined
                  if sym in exports and (gpl_compatible or not exports[sym].gpl_only)]
    return VersionCheck(
        mismatches=mismatches,
        unknown=() if outside else missing,
        undetermined=missing if outside else (),
        gpl_only=() if gpl_compatible else tuple(s for s, e in used if e.gpl_only),
        missing_namespaces=tuple(
            (s, e.namespace) for s, e in (*used, *found_weak) if e.namespace and e.namespace not in imported
        ),
        no_versions=kernel_has_crcs and not module.has_versions,
    )
