"""The dpkg database: held packages and what ``dpkg --audit`` would list.

Parsed straight from /var/lib/dpkg/status (RFC-822 stanzas).  The audit rules follow
dpkg's src/main/enquiry.c ``audit_problems`` one for one, in the same order, so the
packages reported here are the ones ``dpkg --audit`` prints, under the same heading.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .linebreaks import has_other_line_breaks

# dpkg's status order (lib/dpkg/dpkg-db.h enum pkgstatus): audit_infofile/audit_arch only
# look at packages at or above half-installed.
STATES = ("not-installed", "config-files", "half-installed", "unpacked", "half-configured",
          "triggers-awaited", "triggers-pending", "installed")
_STATE_RANK = {s: i for i, s in enumerate(STATES)}
WANTS = ("unknown", "install", "hold", "deinstall", "purge")


class DpkgStatusError(ValueError):
    """The status file cannot be parsed."""


@dataclass(frozen=True)
class Package:
    name: str
    arch: str
    version: str
    want: str
    reinstreq: bool
    state: str
    multi_arch_same: bool = False

    @property
    def rank(self) -> int:
        return _STATE_RANK.get(self.state, 0)


def parse_status(data: bytes) -> tuple[Package, ...]:
    """Parse /var/lib/dpkg/status. Only the fields the exporter uses are kept.

    Stanza by stanza from the bytes, decoding only the fields read: splitting the decoded text
    at once held the file three times over (bytes, text, stanzas; a desktop's status file is
    3-4 MB).  A file with line breaks str.splitlines knows beyond CR and LF (VT, FF, FS-RS,
    NEL, LS, PS) takes the decoded path, whose lines those are."""
    if has_other_line_breaks(data, cr=False):
        text = data.decode("utf-8", errors="surrogateescape")
        return _packages(enumerate(_fields(stanza) for stanza in re.split(r"\n[ \t]*\n", text)))
    return _packages(enumerate(_fields_of_bytes(stanza) for stanza in _stanzas(data)))


_STANZA_BREAK = re.compile(rb"\n[ \t]*\n")
_KEYS = {b"Package": "package", b"Status": "status", b"Version": "version", b"Architecture": "architecture",
         b"Multi-Arch": "multi-arch"}


def _stanzas(data: bytes) -> Iterator[bytes]:
    """re.split(_STANZA_BREAK, data), one stanza at a time."""
    start = 0
    for m in _STANZA_BREAK.finditer(data):
        yield data[start:m.start()]
        start = m.end()
    yield data[start:]


def _packages(stanzas: Iterable[tuple[int, dict[str, str]]]) -> tuple[Package, ...]:
    packages: list[Package] = []
    for number, fields in stanzas:
        if not fields:
            continue
        name = fields.get("package")
        status = fields.get("status")
        if not name or not status:
            raise DpkgStatusError(f"stanza {number + 1}: no Package or Status field")
        words = status.split()
        if len(words) != 3 or words[0] not in WANTS or words[2] not in _STATE_RANK:
            raise DpkgStatusError(f"package {name}: bad Status {status!r}")
        packages.append(Package(
            name=name, arch=fields.get("architecture", ""), version=fields.get("version", ""),
            want=words[0], reinstreq=words[1] == "reinstreq", state=words[2],
            multi_arch_same=fields.get("multi-arch", "") == "same"))
    return tuple(packages)


def _fields(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if not line or line[0] in " \t" or line.startswith("#"):
            continue  # continuation lines belong to fields we do not read
        key, sep, value = line.partition(":")
        if sep and key in ("Package", "Status", "Version", "Architecture", "Multi-Arch"):
            fields[key.lower()] = value.strip()
    return fields


def _fields_of_bytes(stanza: bytes) -> dict[str, str]:
    """_fields of the stanza's decoded text, decoding only the values kept."""
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if not line or line[0] in b" \t#":
            continue
        key, sep, value = line.partition(b":")
        if sep and key in _KEYS:
            fields[_KEYS[key]] = value.decode("utf-8", errors="surrogateescape").strip()
    return fields


@dataclass(frozen=True)
class AuditFinding:
    package: str   # as dpkg prints it (name, or name:arch where the name is ambiguous)
    problem: str   # stable label value, one per dpkg --audit heading


def audit(packages: tuple[Package, ...], infodb: frozenset[str], foreign_arches: frozenset[str],
          native_arch: str | None) -> list[AuditFinding]:
    """The packages ``dpkg --audit`` lists, per heading, in dpkg's order.

    ``infodb`` is the set of file names in /var/lib/dpkg/info.
    """
    instances: dict[str, int] = {}
    for p in packages:
        if p.state != "not-installed":
            instances[p.name] = instances.get(p.name, 0) + 1

    def shown(p: Package) -> str:
        """dpkg's pnaw_nonambig: the arch is shown when it is not native/all, or is ambiguous."""
        foreign = p.arch not in ("", "all") and native_arch is not None and p.arch != native_arch
        return f"{p.name}:{p.arch}" if foreign or instances.get(p.name, 0) > 1 else p.name

    checks = (
        ("reinstreq", lambda p: p.reinstreq),
        ("unpacked", lambda p: not p.reinstreq and p.state == "unpacked"),
        ("half-configured", lambda p: not p.reinstreq and p.state == "half-configured"),
        ("half-installed", lambda p: not p.reinstreq and p.state == "half-installed"),
        ("triggers-awaited", lambda p: not p.reinstreq and p.state == "triggers-awaited"),
        ("triggers-pending", lambda p: not p.reinstreq and p.state == "triggers-pending"),
        ("missing-list", lambda p: p.rank >= 2 and not _has_info(p, "list", infodb)),
        ("missing-md5sums", lambda p: p.rank >= 2 and not _has_info(p, "md5sums", infodb)),
        ("no-arch", lambda p: p.rank >= 2 and p.arch == ""),
        ("unknown-arch", lambda p: p.rank >= 2 and p.arch not in ("", "all", "any")
         and native_arch is not None and p.arch != native_arch and p.arch not in foreign_arches),
    )
    ordered = sorted(packages, key=lambda p: (p.name, p.arch))
    return [AuditFinding(shown(p), problem) for problem, check in checks for p in ordered if check(p)]


def _has_info(p: Package, suffix: str, infodb: frozenset[str]) -> bool:
    return f"{p.name}.{suffix}" in infodb or f"{p.name}:{p.arch}.{suffix}" in infodb


def native_architecture(packages: tuple[Package, ...]) -> str | None:
    """dpkg's native architecture is the one dpkg itself is built for."""
    for p in packages:
        if p.name == "dpkg" and p.state == "installed":
            return p.arch
    return None


def parse_arch_file(data: bytes) -> frozenset[str]:
    """/var/lib/dpkg/arch: the native and foreign architectures, one per line."""
    return frozenset(w for w in data.decode("ascii", "replace").split() if w)
