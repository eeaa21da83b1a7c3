"""Parsers for what the real tools printed inside a scenario tree (scenarios.sh collect_reference).

They know the exact formats of bookworm's tools (dkms 3.0.10 do_status, dpkg's enquiry.c audit
headings, kmod 30's modinfo -F, modprobe --show-depends / --dump-modversions and depmod -e
warnings, initramfs-tools' lsinitramfs, mokutil 0.6) and raise
ReferenceFormatError on anything else, so a changed tool output fails loudly instead of turning
into an empty, "agreeing" fact set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


class ReferenceFormatError(ValueError):
    """A real tool printed something these parsers do not recognise."""


# ---------------------------------------------------------------- dkms status

@dataclass(frozen=True)
class DkmsStatusLine:
    """One line of `dkms status`; kernel and arch are "" on module-level lines (`m/v: added`)."""

    module: str
    version: str
    kernel: str
    arch: str
    state: str
    flags: tuple[str, ...] = ()


# module_status_built_extra: the parenthesised notes appended to built/installed lines, in dkms
# 3.0.10's words (Debian 12) and in the words of 3.1.3 and later (Debian 13's 3.2.2).
DKMS_STATUS_FLAGS = {
    "original_module exists": "original_module_exists",
    "Original modules exist": "original_module_exists",
    "WARNING! Missing some built modules!": "missing_built_modules",
    "Built modules are missing in the kernel modules folder": "missing_built_modules",
    "WARNING! Diff between built and installed module!": "built_installed_differ",
    "Differences between built and installed modules": "built_installed_differ",
}
_MODULE_LEVEL = re.compile(r"(?P<module>[^/,:\s]+)/(?P<version>[^,:\s]+): (?P<state>added|broken)")
_KERNEL_LEVEL = re.compile(
    r"(?P<module>[^/,:\s]+)/(?P<version>[^,:\s]+), (?P<kernel>[^,\s]+), (?P<arch>[^,:\s]+): "
    r"(?P<state>built|installed)(?P<notes>(?: \([^()]*\))*)")
_NOTE = re.compile(r" \(([^()]*)\)")


def parse_dkms_status(text: str) -> list[DkmsStatusLine]:
    """Lines of `dkms status` (dkms 3.x `m/v, k, a: state (notes)` format), in printed order."""
    lines: list[DkmsStatusLine] = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        if m := _MODULE_LEVEL.fullmatch(raw):
            lines.append(DkmsStatusLine(m["module"], m["version"], "", "", m["state"]))
        elif m := _KERNEL_LEVEL.fullmatch(raw):
            flags = []
            for note in _NOTE.findall(m["notes"]):
                if note not in DKMS_STATUS_FLAGS:
                    raise ReferenceFormatError(f"dkms status: unknown note ({note}) in {raw!r}")
                flags.append(DKMS_STATUS_FLAGS[note])
            lines.append(DkmsStatusLine(m["module"], m["version"], m["kernel"], m["arch"], m["state"],
                                        tuple(flags)))
        else:
            raise ReferenceFormatError(f"dkms status: unrecognised line {raw!r}")
    return lines


# ---------------------------------------------------------------- modinfo

MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


def module_name(path: str) -> str:
    """Kernel module name of a module file: basename without .ko[.xz|.zst|.gz], '-' read as '_'."""
    base = path.rsplit("/", 1)[-1]
    for suffix in sorted(MODULE_SUFFIXES, key=len, reverse=True):
        if base.endswith(suffix):
            return base[: -len(suffix)].replace("-", "_")
    raise ReferenceFormatError(f"not a kernel module file name: {path!r}")


def kernel_of(path: str) -> str:
    """Kernel release K of /lib/modules/K/... or /usr/lib/modules/K/..."""
    m = re.match(r"(?:/usr)?/lib/modules/([^/]+)/", path)
    if m is None:
        raise ReferenceFormatError(f"module file outside /lib/modules: {path!r}")
    return m[1]


@dataclass(frozen=True)
class ModuleFile:
    """What `modinfo -F` printed for one DKMS module file; signer etc. are "" when unsigned."""

    path: str
    kernel: str
    name: str
    vermagic: str
    signer: str
    sig_key: str
    sig_hashalgo: str


MODINFO_FIELDS = ("vermagic", "signer", "sig_key", "sig_hashalgo")


def parse_modinfo_tsv(text: str) -> list[ModuleFile]:
    """Rows `path TAB field TAB value` (one `modinfo -F field path` each) grouped per file."""
    per_file: dict[str, dict[str, str]] = {}
    for raw in text.splitlines():
        parts = raw.split("\t")
        if len(parts) != 3 or parts[1] not in MODINFO_FIELDS:
            raise ReferenceFormatError(f"modinfo.tsv: bad row {raw!r}")
        path, fld, value = parts
        per_file.setdefault(path, {})[fld] = value.strip()
    files = []
    for path, fields in per_file.items():
        if set(fields) != set(MODINFO_FIELDS):
            raise ReferenceFormatError(f"modinfo.tsv: {path} lacks {set(MODINFO_FIELDS) - set(fields)}")
        files.append(ModuleFile(path, kernel_of(path), module_name(path), **fields))
    return files


# ---------------------------------------------------------------- lsinitramfs

def parse_lsinitramfs(text: str) -> dict[str, str]:
    """Kernel module name -> path for every module file lsinitramfs lists (paths, one a line)."""
    modules: dict[str, str] = {}
    for raw in text.splitlines():
        path = raw.strip()
        if not path:
            continue
        if path.startswith("/") or "\t" in path:
            raise ReferenceFormatError(f"lsinitramfs: unexpected line {raw!r}")
        if path.endswith(MODULE_SUFFIXES):
            modules[module_name(path)] = path
    return modules


# ---------------------------------------------------------------- dpkg --audit

# dpkg src/main/enquiry.c badstatinfos: the first line of each heading, and the state name the
# exporter's docs/metrics.md uses for it.
DPKG_AUDIT_HEADINGS = {
    "The following packages are in a mess due to serious problems during": "reinstreq",
    "The following packages have been unpacked but not yet configured.": "unpacked",
    "The following packages are only half configured, probably due to problems": "half-configured",
    "The following packages are only half installed, due to problems during": "half-installed",
    "The following packages are awaiting processing of triggers that they": "triggers-awaited",
    "The following packages have been triggered, but the trigger processing": "triggers-pending",
    "The following packages are missing the list control file in the": "missing-list",
    "The following packages are missing the md5sums control file in the": "missing-md5sums",
    "The following packages do not have an architecture:": "no-arch",
    "The following packages have an illegal architecture:": "illegal-arch",
    "The following packages have an unknown foreign architecture, which will": "unknown-arch",
}
_DPKG_LOCKED = "Another process has locked the database for writing, and might currently be"


def parse_dpkg_audit(text: str) -> list[tuple[str, str]]:
    """(package, state) for every package `dpkg --audit` lists, in printed order."""
    found: list[tuple[str, str]] = []
    state: str | None = None
    in_heading = False
    for raw in text.splitlines():
        if not raw.strip():
            state, in_heading = None, False
        elif raw in DPKG_AUDIT_HEADINGS:
            state, in_heading = DPKG_AUDIT_HEADINGS[raw], True
        elif raw.startswith(" ") and state is not None:
            # describebriefly: " %-20s %.*s" -- the name, then the short description.
            found.append((raw.split()[0], state))
            in_heading = False
        elif in_heading or raw.startswith((_DPKG_LOCKED, "modifying it, some")):
            continue  # the heading's further lines, or the lock notice
        else:
            raise ReferenceFormatError(f"dpkg --audit: unrecognised line {raw!r}")
    return found


# ---------------------------------------------------------------- apt-mark, mokutil

def parse_showhold(text: str) -> frozenset[str]:
    """Package names `apt-mark showhold` prints, one a line."""
    names = [line.strip() for line in text.splitlines() if line.strip()]
    for name in names:
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.\-]+(:[a-z0-9\-]+)?", name):
            raise ReferenceFormatError(f"apt-mark showhold: not a package name: {name!r}")
    return frozenset(names)


def parse_sb_state(stdout: str, stderr: str) -> str:
    """`mokutil --sb-state` as enabled / disabled / unsupported (no EFI variables)."""
    if "EFI variables are not supported on this system" in stderr + stdout:
        return "unsupported"
    first = stdout.splitlines()[0] if stdout.strip() else ""
    if first == "SecureBoot enabled":
        return "enabled"
    if first == "SecureBoot disabled":
        return "disabled"
    raise ReferenceFormatError(f"mokutil --sb-state: unrecognised output {stdout!r} / {stderr!r}")


def parse_enrolled_sha1(stdout: str) -> frozenset[str]:
    """SHA-1 fingerprints (lower hex, no colons) of the keys `mokutil --list-enrolled` prints."""
    return frozenset(m.replace(":", "").lower()
                     for m in re.findall(r"^SHA1 Fingerprint: ([0-9a-fA-F:]+)$", stdout, re.MULTILINE))


# ---------------------------------------------------------------- DKMS source trees

@dataclass(frozen=True)
class DkmsSource:
    """A /usr/src/M-V/dkms.conf: what bash read from it (as dkms sources it) and its package."""

    conf: str
    module: str
    version: str
    package: str          # dpkg-query -S owner, "" when no package owns it
    package_status: str   # dpkg-query ${db:Status-Abbrev} without blanks: "ii" when installed


def parse_dkms_sources(text: str) -> list[DkmsSource]:
    """Rows `conf TAB PACKAGE_NAME TAB PACKAGE_VERSION TAB owner TAB status` (collect_reference)."""
    out = []
    for raw in text.splitlines():
        parts = raw.split("\t")
        if len(parts) != 5 or not parts[0].startswith("/usr/src/") or not parts[0].endswith("/dkms.conf"):
            raise ReferenceFormatError(f"dkms-sources.tsv: bad row {raw!r}")
        out.append(DkmsSource(*parts))
    return out


# ---------------------------------------------------------------- modprobe --show-depends

_NOT_FOUND = re.compile(r"modprobe: FATAL: Module (\S+) not found in directory (\S+)")


def parse_show_depends(stdout: str, stderr: str, rc: str) -> str | None:
    """The module's own file in `modprobe -S K --show-depends NAME` (its last `insmod` line; the
    ones before are its dependencies), or None when modprobe says it is not found."""
    if rc.strip() != "0":
        if _NOT_FOUND.search(stderr) and not stdout.strip():
            return None
        raise ReferenceFormatError(f"modprobe --show-depends: exit {rc.strip()}: {stderr!r}")
    own = None
    for raw in stdout.splitlines():
        verb, _, rest = raw.strip().partition(" ")
        if verb == "insmod" and rest.strip():
            own = rest.split()[0]
        elif verb not in ("builtin", "softdep", ""):
            raise ReferenceFormatError(f"modprobe --show-depends: unrecognised line {raw!r}")
    if own is None:
        raise ReferenceFormatError(f"modprobe --show-depends: no insmod line in {stdout!r}")
    return own


# ---------------------------------------------------------------- depmod -e -E, --dump-modversions

_DEPMOD_WARNING = re.compile(
    r"depmod: WARNING: (?P<path>\S+) (?:(?P<disagrees>disagrees about version of symbol)"
    r"|(?P<unknown>needs unknown symbol)) (?P<symbol>\S+)")
SYMBOL_PROBLEM_OF = {"disagrees": "symbol_version_mismatch", "unknown": "unknown_symbol"}


def parse_depmod_symbols(stderr: str, rc: str) -> list[tuple[str, str, str]]:
    """(path, reason, symbol) for every warning of `depmod -n -e -E Module.symvers K`; reason is
    symbol_version_mismatch ("disagrees about version of symbol") or unknown_symbol."""
    if rc.strip() != "0":
        raise ReferenceFormatError(f"depmod -e -E: exit {rc.strip()}: {stderr[-500:]!r}")
    out = []
    for raw in stderr.splitlines():
        if not raw.strip():
            continue
        m = _DEPMOD_WARNING.fullmatch(raw.strip())
        if m is None:
            raise ReferenceFormatError(f"depmod -e -E: unrecognised line {raw!r}")
        out.append((m["path"], SYMBOL_PROBLEM_OF["disagrees" if m["disagrees"] else "unknown"], m["symbol"]))
    return out


def parse_modversions_tsv(text: str) -> dict[str, dict[str, int]]:
    """path -> symbol -> CRC, from rows `path TAB symbol TAB 0xcrc` (modprobe --dump-modversions)."""
    out: dict[str, dict[str, int]] = {}
    for raw in text.splitlines():
        parts = raw.split("\t")
        if len(parts) != 3 or not parts[2].startswith("0x"):
            raise ReferenceFormatError(f"modversions.tsv: bad row {raw!r}")
        out.setdefault(parts[0], {})[parts[1]] = int(parts[2], 16)
    return out


# ---------------------------------------------------------------- what an initramfs holds

@dataclass(frozen=True)
class InitramfsCopy:
    """A DKMS module file inside K's initramfs (unmkinitramfs) against the file on disk."""

    kernel: str
    path: str               # /usr/lib/modules/K/updates/dkms/NAME.ko as the image lists it
    image_sha256: str
    disk_sha256: str        # "" when the disk file is gone
    image_mtime: float
    disk_mtime: float | None

    @property
    def name(self) -> str:
        return module_name(self.path)

    @property
    def differs(self) -> bool:
        """The image holds another build than the file on disk."""
        return self.image_sha256 != self.disk_sha256


def parse_initramfs_copies(text: str) -> list[InitramfsCopy]:
    out = []
    for raw in text.splitlines():
        parts = raw.split("\t")
        if len(parts) != 6 or not re.fullmatch(r"[0-9a-f]{64}", parts[2]):
            raise ReferenceFormatError(f"initramfs-copies.tsv: bad row {raw!r}")
        k, path, img, disk, img_t, disk_t = parts
        out.append(InitramfsCopy(k, path, img, "" if disk == "-" else disk, float(img_t),
                                 None if disk_t == "-" else float(disk_t)))
    return out


# ---------------------------------------------------------------- one scenario's reference

@dataclass(frozen=True)
class Reference:
    """Everything the real tools said about one scenario tree."""

    name: str
    dir: Path
    tree: Path
    env: dict[str, str]
    kernels: frozenset[str]
    dkms_status: list[DkmsStatusLine]
    module_files: list[ModuleFile]
    initramfs: dict[str, dict[str, str]]  # kernel -> module name -> path
    audit: list[tuple[str, str]]
    holds: frozenset[str]
    secure_boot: str
    enrolled_sha1: frozenset[str]
    sources: list[DkmsSource]
    resolved: dict[tuple[str, str], str | None]            # (kernel, module) -> modprobe's file
    symbol_problems: dict[str, list[tuple[str, str, str]]]  # kernel with headers -> depmod -e warnings
    modversions: dict[str, dict[str, int]]                 # module file -> symbol -> CRC
    initramfs_copies: list[InitramfsCopy]
    raw: dict[str, str] = field(repr=False)

    @property
    def new_kernel(self) -> str:
        return self.env["NEW_KERNEL"]

    @property
    def old_kernel(self) -> str:
        return self.env["OLD_KERNEL"]

    @property
    def running_kernel(self) -> str:
        return self.env["RUNNING_KERNEL"]

    def module_file(self, name: str, kernel: str) -> ModuleFile | None:
        return next((f for f in self.module_files if f.name == name and f.kernel == kernel), None)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def _env(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def load_reference(scenario_dir: Path) -> Reference:
    """Parse scenarios/NAME/ref/* into a Reference (raises ReferenceFormatError on odd output)."""
    ref = scenario_dir / "ref"
    raw = {p.relative_to(ref).as_posix(): _read(p) for p in ref.rglob("*") if p.is_file()}
    for tool in ("dkms-status.txt", "dpkg-audit.txt", "apt-mark-showhold.txt", "dkms-sources.tsv"):
        if raw.get(tool + ".rc", "").strip() != "0":
            raise ReferenceFormatError(f"{tool[:-4]} failed in {scenario_dir.name} "
                                       f"(exit {raw.get(tool + '.rc', '?').strip()}): {raw.get(tool + '.stderr')}")
    initramfs = {}
    for name, text in raw.items():
        if name.startswith("lsinitramfs/") and name.endswith(".txt"):
            kernel = name[len("lsinitramfs/"):-len(".txt")]
            if raw.get(name + ".rc", "").strip() != "0":
                raise ReferenceFormatError(f"lsinitramfs failed for {kernel}: {raw.get(name + '.stderr')}")
            initramfs[kernel] = parse_lsinitramfs(text)
    kernels = frozenset(raw["kernels.txt"].split())
    resolved = {}
    for kernel in kernels:
        for name, text in raw.items():
            if name.startswith(f"modprobe/{kernel}-") and name.endswith(".txt"):
                module = name[len(f"modprobe/{kernel}-"):-len(".txt")]
                resolved[(kernel, module)] = parse_show_depends(text, raw.get(name + ".stderr", ""),
                                                                raw.get(name + ".rc", ""))
    symbol_problems = {}
    for name, text in raw.items():
        if name.startswith("depmod-e/") and name.endswith(".txt.stderr"):
            kernel = name[len("depmod-e/"):-len(".txt.stderr")]
            symbol_problems[kernel] = parse_depmod_symbols(text, raw.get(f"depmod-e/{kernel}.txt.rc", ""))
    return Reference(
        name=scenario_dir.name,
        dir=scenario_dir,
        tree=scenario_dir / "tree",
        env=_env(raw["scenario.env"]),
        kernels=kernels,
        dkms_status=parse_dkms_status(raw["dkms-status.txt"]),
        module_files=parse_modinfo_tsv(raw["modinfo.tsv"]),
        initramfs=initramfs,
        audit=parse_dpkg_audit(raw["dpkg-audit.txt"]),
        holds=parse_showhold(raw["apt-mark-showhold.txt"]),
        secure_boot=parse_sb_state(raw["mokutil-sb-state.txt"], raw["mokutil-sb-state.txt.stderr"]),
        enrolled_sha1=parse_enrolled_sha1(raw["mokutil-list-enrolled.txt"]),
        sources=parse_dkms_sources(raw["dkms-sources.tsv"]),
        resolved=resolved,
        symbol_problems=symbol_problems,
        modversions=parse_modversions_tsv(raw["modversions.tsv"]),
        initramfs_copies=parse_initramfs_copies(raw["initramfs-copies.tsv"]),
        raw=raw,
    )
