"""Comparable facts: the same shape from the exporter's metrics and from the real tools' outputs.

`facts_from_metrics` is the one place that knows the exporter's metric and label names; when
they change, only it changes.  Normalisations (why two spellings count as one fact):
  * kernel module names: '-' and '_' are the same name to the kernel, modprobe and modinfo;
  * signing key ids: modinfo prints `36:EC:...`, an exporter may print `36ec...`;
  * package states: `half-configured` and `half_configured` are one dpkg state;
  * module paths: /lib/modules and /usr/lib/modules are one directory (merged /usr).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, fields

from prometheus_client.parser import text_string_to_metric_families

from .reference import Reference, module_name

FactSet = frozenset[tuple[str, ...]]


@dataclass(frozen=True)
class Facts:
    """One host's facts.  None means the exporter does not expose that kind of fact at all."""

    module_states: FactSet | None   # (module, version, kernel, arch, state): one per `dkms status` line
    module_flags: FactSet | None    # (module, version, kernel, arch, flag): the line's (WARNING! ...) notes
    held: FactSet | None            # (package,)
    unconfigured: FactSet | None    # (package, state): what `dpkg --audit` lists
    signatures: FactSet | None      # (module, kernel, signer, key_id, hash_algo) of signed DKMS module files
    in_initramfs: FactSet | None    # (module, kernel) where the kernel's initramfs holds the module
    secure_boot: FactSet | None     # {("enabled",)} / {("disabled",)} / {("unsupported",)}
    unregistered: FactSet | None    # (module, version): a /usr/src/M-V/dkms.conf `dkms status` does not list
    early_boot: FactSet | None      # (module, kernel): in the running kernel's initramfs, so needed early in K
    symbol_problems: FactSet | None  # (module, kernel, reason): depmod -e -E against K's Module.symvers
    file_missing: FactSet | None    # (module, kernel): dkms status says installed for K, no file for K on disk
    not_in_depmod: FactSet | None   # (module, kernel): a DKMS file for K that modprobe does not resolve to
    initramfs_stale: FactSet | None  # (module, kernel): K's initramfs holds another build than the disk
    missing_from_initramfs: FactSet | None  # (module, kernel): needed early, resolvable, absent from K's image


FACT_KINDS = tuple(f.name for f in fields(Facts))


def norm_module(name: str) -> str:
    return name.replace("-", "_")


def norm_key_id(key_id: str) -> str:
    return key_id.replace(":", "").replace(" ", "").lower()


def norm_state(state: str) -> str:
    return state.replace("_", "-").lower()


# ---------------------------------------------------------------- exporter side

class Samples:
    """Samples of a metrics text by sample name, and which metric names the text declares."""

    def __init__(self, text: str) -> None:
        self.by_name: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        self.declared: set[str] = set()
        for family in text_string_to_metric_families(text):
            self.declared.add(family.name)
            if family.type == "info":
                self.declared.add(family.name + "_info")
            for s in family.samples:
                self.declared.add(s.name)
                self.by_name[s.name].append((s.labels, s.value))

    def ones(self, name: str, *labels: str) -> FactSet | None:
        """Label tuples of the samples of `name` whose value is 1; None when `name` is not declared."""
        if name not in self.declared:
            return None
        return frozenset(tuple(lbl.get(k, "") for k in labels) for lbl, v in self.by_name[name] if v == 1)

    def value(self, name: str) -> float | None:
        values = [v for _, v in self.by_name.get(name, [])]
        return values[0] if len(values) == 1 else None


# The exporter's metric for each fact kind, and the labels read from it (in Facts tuple order).
METRIC_OF = {
    "module_states": ("dkms_module_state", ("module", "version", "kernel", "arch", "state")),
    "module_flags": ("dkms_module_state_flag", ("module", "version", "kernel", "arch", "flag")),
    "held": ("dkms_package_held", ("package",)),
    "unconfigured": ("dkms_package_unconfigured", ("package", "state")),
    "signatures": ("dkms_module_signature_info", ("module", "kernel", "signer", "key_id", "hash_algo")),
    "in_initramfs": ("dkms_module_in_initramfs", ("module", "kernel")),
    "secure_boot": ("dkms_secure_boot_enabled", ()),
    "unregistered": ("dkms_module_unregistered", ("module", "version")),
    "early_boot": ("dkms_module_early_boot", ("module", "kernel")),
}
# Fact kinds read from dkms_module_problem{kernel,module,dkms,reason}: the reasons of each.
PROBLEM_METRIC = "dkms_module_problem"
PROBLEM_KINDS = {
    "symbol_problems": ("symbol_version_mismatch", "unknown_symbol"),
    "file_missing": ("file_missing",),
    "not_in_depmod": ("not_in_depmod",),
    "initramfs_stale": ("initramfs_stale",),
    "missing_from_initramfs": ("missing_from_initramfs",),
}
NEXT_BOOT_READY = "dkms_next_boot_ready"


def facts_from_metrics(text: str) -> Facts:
    """The exporter's facts from one `metrics` output (Prometheus text).  With METRIC_OF, the only
    place that knows metric names: adjust here when they change."""
    s = Samples(text)
    got = {kind: s.ones(name, *labels) for kind, (name, labels) in METRIC_OF.items() if labels}
    problems = s.ones(PROBLEM_METRIC, "module", "kernel", "reason")
    unconf, sigs, initrd = got["unconfigured"], got["signatures"], got["in_initramfs"]
    secure_boot: FactSet | None = None
    sb_name = METRIC_OF["secure_boot"][0]
    if sb_name in s.declared:
        v = s.value(sb_name)
        secure_boot = frozenset({("unsupported",) if v is None else ("enabled",) if v == 1 else ("disabled",)})
    return Facts(
        module_states=got["module_states"],
        module_flags=got["module_flags"],
        held=got["held"],
        unconfigured=None if unconf is None else frozenset((p, norm_state(st)) for p, st in unconf),
        signatures=None if sigs is None else frozenset(
            (norm_module(m), k, signer, norm_key_id(key), algo.lower()) for m, k, signer, key, algo in sigs),
        in_initramfs=None if initrd is None else frozenset((norm_module(m), k) for m, k in initrd),
        secure_boot=secure_boot,
        unregistered=got["unregistered"],
        early_boot=None if got["early_boot"] is None else frozenset(
            (norm_module(m), k) for m, k in got["early_boot"]),
        **{kind: _problems(problems, reasons) for kind, reasons in PROBLEM_KINDS.items()},
    )


def _problems(problems: FactSet | None, reasons: tuple[str, ...]) -> FactSet | None:
    """(module, kernel[, reason]) of the problem samples with one of `reasons` (with the reason
    when a kind has several)."""
    if problems is None:
        return None
    return frozenset((norm_module(m), k, r) if len(reasons) > 1 else (norm_module(m), k)
                     for m, k, r in problems if r in reasons)


def next_boot_ready(text: str) -> float | None:
    """The value of the host verdict metric; None when absent (undecidable)."""
    return Samples(text).value(NEXT_BOOT_READY)


def metric_name(kind: str) -> str:
    return PROBLEM_METRIC if kind in PROBLEM_KINDS else METRIC_OF[kind][0]


def metric_lines(text: str, kind: str) -> str:
    """The exporter's sample lines behind one fact kind, for failure messages."""
    name = metric_name(kind)
    return "\n".join(line for line in text.splitlines() if line.startswith((name + "{", name + " ")))


# ---------------------------------------------------------------- reference side

def facts_from_reference(ref: Reference, initramfs_universe: FactSet = frozenset()) -> Facts:
    """The real tools' facts.  `initramfs_universe` adds (module, kernel) pairs to judge besides the
    DKMS modules (those the exporter reports), so every claim the exporter makes is checked too.

    The early-boot kinds need "which modules does K need": here, every module `dkms status` lists
    and every module file DKMS installed (all are AUTOINSTALL, so docs/readiness.md needs them for
    every kernel).  The files count because one DKMS package may build several modules under
    other names: zfs-dkms's `zfs/2.1.11` line stands for spl, znvpair, ... and zfs."""
    dkms_names = {f.name for f in ref.module_files} | {
        name for listing in ref.initramfs.values() for name, path in listing.items() if "/updates/dkms/" in path}
    pairs = {(m, k) for m in dkms_names for k in ref.initramfs} | set(initramfs_universe)
    needed = {norm_module(line.module) for line in ref.dkms_status} | {f.name for f in ref.module_files}
    running_image = ref.initramfs.get(ref.running_kernel, {})
    early = {m for m, path in running_image.items() if "/updates/dkms/" in path} & needed
    registered = {(line.module, line.version) for line in ref.dkms_status}
    on_disk = {(f.name, f.kernel): f.path for f in ref.module_files}

    def resolves(m: str, k: str) -> bool:
        file = on_disk.get((m, k))
        got = ref.resolved.get((k, m))
        return file is not None and got is not None and _lib(got) == _lib(file)

    return Facts(
        module_states=frozenset((ln.module, ln.version, ln.kernel, ln.arch, ln.state) for ln in ref.dkms_status),
        module_flags=frozenset((ln.module, ln.version, ln.kernel, ln.arch, flag)
                               for ln in ref.dkms_status for flag in ln.flags),
        held=frozenset((p,) for p in ref.holds),
        unconfigured=frozenset((p, norm_state(st)) for p, st in ref.audit),
        signatures=frozenset((f.name, f.kernel, f.signer, norm_key_id(f.sig_key), f.sig_hashalgo.lower())
                             for f in ref.module_files if f.signer or f.sig_key),
        in_initramfs=frozenset((m, k) for m, k in pairs if m in ref.initramfs.get(k, {})),
        secure_boot=frozenset({(ref.secure_boot,)}),
        unregistered=frozenset((src.module, src.version) for src in ref.sources
                               if (src.module, src.version) not in registered),
        early_boot=frozenset((m, k) for m in early for k in ref.kernels),
        symbol_problems=frozenset((module_name(path), k, reason) for k, warnings in ref.symbol_problems.items()
                                  for path, reason, _ in warnings if "/updates/dkms/" in path),
        file_missing=frozenset((norm_module(line.module), line.kernel) for line in ref.dkms_status
                               if line.state == "installed" and (norm_module(line.module), line.kernel) not in on_disk),
        not_in_depmod=frozenset((m, k) for m, k in on_disk if not resolves(m, k)),
        initramfs_stale=frozenset((c.name, c.kernel) for c in ref.initramfs_copies if c.name in early and c.differs),
        missing_from_initramfs=frozenset((m, k) for m in early for k in ref.kernels
                                         if resolves(m, k) and k in ref.initramfs and m not in ref.initramfs[k]),
    )


def _lib(path: str) -> str:
    """/usr/lib/modules/... and /lib/modules/... are one file on a merged-/usr system."""
    return path.removeprefix("/usr")


def describe_difference(kind: str, exporter: FactSet, reference: FactSet) -> str:
    """Both sides of a disagreement, and what only one side has."""
    def lines(facts: FactSet) -> str:
        return "\n".join("    " + " | ".join(f) for f in sorted(facts)) or "    (none)"
    return (f"{kind}: the exporter and the real tools disagree\n"
            f"  exporter:\n{lines(exporter)}\n  real tools:\n{lines(reference)}\n"
            f"  only in exporter:\n{lines(exporter - reference)}\n"
            f"  only in real tools:\n{lines(reference - exporter)}")
