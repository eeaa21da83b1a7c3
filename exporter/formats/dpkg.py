"""The dpkg database: held packages and what ``dpkg --audit`` would list.

Parsed straight from /var/lib/dpkg/status (RFC-822 stanzas).  The audit rules follow
dpkg's src/main/enquiry.c ``audit_problems`` one for one, in the same order, so the
packages reported here are the ones ``dpkg --audit`` prints, under the same heading.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass


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
    """Parse /var/lib/dpkg/status as dpkg itself does (lib/dpkg/parse.c ``parsedb``), keeping
    only the fields the exporter uses: one Package per (name, architecture), a later stanza
    replacing an earlier one as it does in dpkg's database.

    A file dpkg refuses (a syntax error, or a rule below) is a DpkgStatusError: every dpkg and
    apt command on that host fails too.  Where dpkg is lax with a status file (a line of spaces
    inside a value, a bad version string, an unknown architecture, a missing Description) so
    is this.  Not checked here, though dpkg refuses them: the syntax of the relationship
    fields (Depends, ...) and of Conffiles, and an awaited trigger whose package name has
    several installed instances."""
    packages: dict[tuple[str, str], Package] = {}
    arches: dict[str, list[str]] = {}             # name -> the architectures it has entries for
    for stanza in _stanzas(data):
        try:
            package = _package(stanza)
            _count_instances([packages[(package.name, a)] for a in arches.get(package.name, ())], package)
        except DpkgStatusError as exc:
            raise DpkgStatusError(f"line {stanza.line_no}: {exc}") from None
        if (package.name, package.arch) not in packages:
            arches.setdefault(package.name, []).append(package.arch)
        packages[(package.name, package.arch)] = package
    return tuple(packages.values())


# what dpkg's parse_stanza reads: C's isspace (bytes.strip's whitespace) and MS-DOS's end-of-file
# byte (^Z) as a line end; a line starting with a space other than newline continues the value
# (no possessive quantifiers: Debian 12's Python 3.11.2 matches them wrongly; where a value has
# no final line end the match backs off to a continuation's line end, which _stanzas refuses)
_FIELD = re.compile(
    rb"(?!-)([^\s:\x1a]+)[ \t\r\f\v]*:[ \t\r\f\v]*"                      # name, ':', spaces
    rb"([^\n\x1a]*(?:[\n\x1a](?=[ \t\r\f\v](?s:.))[^\n\x1a]*)*)"          # value, continuations too
    rb"[\n\x1a]")                                                          # the line end ending it
_CONTINUATION = frozenset(b" \t\r\f\v")
_STANZA_END = frozenset(b"\n\x1a")
_GAP = re.compile(rb"[\n\x1a]*")
_NAME = re.compile(rb"[^\s:\x1a]*")
_SPACES = re.compile(rb"[ \t\r\f\v]*")
_DOS_EOF = 0x1A
_NEWLINE = 0x0A


@dataclass
class _Stanza:
    line_no: int
    names: list[bytes]            # every field's name, as written
    values: dict[str, bytes]      # the values of the fields read (_KEYS), trailing spaces trimmed


def _stanzas(data: bytes) -> Iterator[_Stanza]:
    """dpkg's parse_stanza over the whole file.  Stanzas end at an empty line; a value ends at
    a line end not followed by a space; a byte dpkg reads last and finds at the end of the file
    is dropped, as it drops it.  One finditer walks the fields (it steps over the empty lines
    between stanzas by itself); a field that does not start where the last one ended, or after
    the empty lines that ended its stanza, is the error."""
    n = len(data)
    dos = b"\x1a" in data            # only then can a value start or end with ^Z
    expected = _GAP.match(data).end()
    if expected >= n - 1:
        return
    line_no = data.count(b"\n", 0, expected)
    counted = expected
    stanza = _Stanza(line_no + 1, [], {})
    for m in _FIELD.finditer(data, expected):
        start, stop = m.span()                 # stop - 1: the line end that ended the value
        if start != expected or ((dos or stop == n) and not _value_starts(data, m.start(2))) or (
                stop < n - 1 and data[stop] in _CONTINUATION):
            break
        name = m.group(1)
        stanza.names.append(name)
        key = _KEYS.get(name.lower())
        if key is not None:
            value = m.group(2)
            if dos and data[stop - 1] == _DOS_EOF and stop < n:
                value += b"\x1a"                  # dpkg keeps a ^Z that ends a value
            stanza.values.setdefault(key, value.rstrip())
        if stop < n - 1 and data[stop] not in _STANZA_END:
            expected = stop                        # the next field
            continue
        yield stanza                               # an empty line, or the end of the file
        expected = _GAP.match(data, stop + 1).end()
        if expected >= n - 1:
            return
        line_no += data.count(b"\n", counted, expected)   # counted as it goes: once per byte
        counted = expected
        stanza = _Stanza(line_no + 1, [], {})
    raise DpkgStatusError(f"line {_line_of(data, expected)}: {_field_error(data, expected)}")


def _value_starts(data: bytes, at: int) -> bool:
    """Whether dpkg finds a value at ``at``: not its file's last byte, not ^Z."""
    return at < len(data) - 1 and data[at] != _DOS_EOF


def _line_of(data: bytes, pos: int) -> int:
    return data.count(b"\n", 0, pos) + 1


def _field_error(data: bytes, pos: int) -> str:
    """Why dpkg's parse_stanza refuses the field at ``pos``, in its words and its order."""
    n = len(data)
    name_end = _NAME.match(data, pos).end()
    name = data[pos:name_end].decode("utf-8", "replace")
    if name_end == pos:
        return "empty field name"
    if name.startswith("-"):
        return f"field name {name!r} cannot start with hyphen"
    colon = _SPACES.match(data, name_end).end()
    if colon >= n - 1:
        return f"end of file after field name {name!r}"
    if data[colon] != ord(":"):
        what = {_NEWLINE: "newline in", _DOS_EOF: "MSDOS end of file (Ctrl+Z) in"}.get(data[colon])
        return f"{what} field name {name!r}" if what else f"field name {name!r} must be followed by colon"
    value = _SPACES.match(data, colon + 1).end()
    if value >= n - 1:
        return f"end of file before value of field {name!r} (missing final newline)"
    if data[value] == _DOS_EOF:
        return f"MSDOS end of file (Ctrl+Z) in value of field {name!r} (missing newline?)"
    return f"end of file during value of field {name!r} (missing final newline)"


# the fields read, by dpkg's (case-insensitive) names
_KEYS = {b"package": "package", b"status": "status", b"version": "version", b"architecture": "architecture",
         b"multi-arch": "multi-arch", b"config-version": "config-version",
         b"triggers-pending": "triggers-pending", b"triggers-awaited": "triggers-awaited"}
_PACKAGE_NAME = re.compile(rb"[A-Za-z0-9][A-Za-z0-9+._-]*")   # lib/dpkg/parsehelp.c pkg_name_is_invalid
_MULTI_ARCH = ("no", "same", "allowed", "foreign")
_EFLAGS = ("ok", "reinstreq")


def _package(stanza: _Stanza) -> Package:
    """One stanza as dpkg's pkg_parse_field and pkg_parse_verify take it."""
    names = stanza.names
    if len(names) != len(set(map(bytes.lower, names))) or min(map(len, names)) < 2:
        seen: set[bytes] = set()
        for name in names:
            if name.lower() in seen:
                raise DpkgStatusError(f"duplicate value for {_text(name)!r} field")
            if len(name) < 2:     # every field dpkg knows has a longer name
                raise DpkgStatusError(f"user-defined field name {_text(name)!r} too short")
            seen.add(name.lower())
    kept = {key: value.split(b"\0", 1)[0] for key, value in stanza.values.items()}   # read as C strings
    raw_name = kept.get("package")
    if raw_name is None:
        raise DpkgStatusError("missing 'Package' field")
    if not _PACKAGE_NAME.fullmatch(raw_name):
        raise DpkgStatusError(f"invalid package name {_text(raw_name)!r} in 'Package' field")
    name = _text(raw_name.lower())
    want, eflag, state = _status(name, kept.get("status"))
    for key in ("version", "config-version"):
        problem = _version_error(kept[key]) if key in kept else None
        if problem:
            raise DpkgStatusError(f"package {name}: bad {key.title()} {_text(kept[key])!r}: {problem}")
    version = _text(kept.get("version", b""))
    arch = _text(kept.get("architecture", b""))
    multi_arch = _word(name, "Multi-Arch", kept["multi-arch"], _MULTI_ARCH, last=True)[0] \
        if kept.get("multi-arch") else "no"
    _verify(name, state, version, arch, multi_arch, kept)
    return Package(name=name, arch=arch, version=version, want=want, reinstreq=eflag == "reinstreq",
                   state=state, multi_arch_same=multi_arch == "same")


_EPOCH = re.compile(rb"[ \t\n\v\f\r]*([+-]?)([0-9]*)")   # what strtol reads


def _version_error(value: bytes) -> str | None:
    """What makes dpkg's parseversion fail even in a status file (lib/dpkg/parsehelp.c); the
    rest (a first character that is not a digit, an odd character) it only warns about."""
    string = value.lstrip(b" \t")
    token = string.split(b" ", 1)[0].split(b"\t", 1)[0]
    if not token:
        return "version string is empty"
    if string[len(token):].strip(b" \t"):
        return "version string has embedded spaces"
    if b":" in token:
        epoch = _EPOCH.match(token)
        sign, digits = epoch.groups()
        colon = token.index(b":")
        if not digits:
            return "epoch in version is empty"
        if epoch.end() != colon:
            return "epoch in version is not number"
        if sign == b"-" and digits.strip(b"0"):
            return "epoch in version is negative"
        if len(digits.lstrip(b"0")) > 10 or int(digits) > 2**31 - 1:   # no int() of a huge number
            return "epoch in version is too big"
        token = token[colon + 1:]
        if not token:
            return "nothing after colon in version number"
    upstream, hyphen, revision = token.rpartition(b"-")
    if hyphen and not revision:
        return "revision number is empty"
    if not (upstream if hyphen else token):
        return "version number is empty"
    return None


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="surrogateescape")


def _status(package: str, value: bytes | None) -> tuple[str, str, str]:
    """The Status field's three words, read as dpkg's parse_nv reads them (a case-insensitive
    prefix, then spaces); a stanza without one is a package dpkg knows nothing about."""
    if value is None:
        return "unknown", "ok", "not-installed"
    words = _STATUS_WORDS.get(value)
    if words is not None:
        return words
    want, rest = _word(package, "Status", value, WANTS, last=False)
    eflag, rest = _word(package, "Status", rest, _EFLAGS, last=False)
    state, _ = _word(package, "Status", rest, STATES, last=True)
    return want, eflag, state


_STATUS_WORDS = {f"{w} {e} {s}".encode(): (w, e, s) for w in WANTS for e in _EFLAGS for s in STATES}
"""The Status values dpkg writes, looked up before reading words the way dpkg would."""


def _word(package: str, field: str, value: bytes, names: tuple[str, ...], last: bool) -> tuple[str, bytes]:
    if not value:
        raise DpkgStatusError(f"package {package}: bad {field} {_text(value)!r}: a word is missing")
    low = value.lower()
    for word in names:
        if low.startswith(word.encode()):
            rest = value[len(word):].lstrip()
            if last and rest:
                break
            return word, rest
    raise DpkgStatusError(f"package {package}: bad {field} {_text(value)!r}")


def _verify(name: str, state: str, version: str, arch: str, multi_arch: str, kept: dict[str, bytes]) -> None:
    """dpkg's pkg_parse_verify: the rules that make it refuse a stanza of a status file."""
    if state not in ("not-installed", "half-installed") and not version:
        raise DpkgStatusError(f"package {name}: {'empty value for' if 'version' in kept else 'missing'} "
                              f"'Version' field")
    if multi_arch == "same" and arch in ("", "all"):
        raise DpkgStatusError(f"package {name}: has 'Multi-Arch: same' field but is "
                              f"{'missing architecture' if not arch else 'architecture all'}")
    if kept.get("config-version") and state in ("installed", "not-installed", "triggers-pending"):
        raise DpkgStatusError(f"package {name}: 'Config-Version' field present with Status {state}")
    awaited = _trigger_words(name, kept.get("triggers-awaited", b""), _awaited_error, same=bytes.lower)
    pending = _trigger_words(name, kept.get("triggers-pending", b""), _trigger_name_error, same=bytes)
    rank = _STATE_RANK[state]
    if awaited and not _STATE_RANK["config-files"] < rank < _STATE_RANK["triggers-pending"]:
        raise DpkgStatusError(f"package {name}: has status {state} but triggers are awaited")
    if state == "triggers-awaited" and not awaited:
        raise DpkgStatusError(f"package {name}: has status {state} but no triggers awaited")
    if pending and state not in ("triggers-pending", "triggers-awaited"):
        raise DpkgStatusError(f"package {name}: has status {state} but triggers are pending")
    if state == "triggers-pending" and not pending:
        raise DpkgStatusError(f"package {name}: has status {state} but no triggers pending")


def _trigger_words(package: str, value: bytes, error_of, same) -> bool:
    """Whether a Triggers-Pending/-Awaited value names any trigger; dpkg refuses a bad or a
    repeated word (f_trigpend, f_trigaw).  ``same`` is what makes two words one: a pending
    trigger's name as written (trig_note_pend_core compares with strcmp), an awaited package's
    name without case (dpkg lower-cases package names)."""
    words = value.split()
    for word in words:
        problem = error_of(word)
        if problem:
            raise DpkgStatusError(f"package {package}: bad trigger {_text(word)!r}: {problem}")
    if len(set(map(same, words))) != len(words):
        raise DpkgStatusError(f"package {package}: a trigger named twice in {_text(value)!r}")
    return bool(words)


def _trigger_name_error(word: bytes) -> str | None:
    """lib/dpkg/triglib.c trig_name_is_invalid: printable ASCII, no space."""
    return None if all(0x20 < b < 0x7F for b in word) else "trigger name contains invalid character"


_ARCH_NAME = re.compile(rb"[A-Za-z0-9][A-Za-z0-9-]*")   # lib/dpkg/arch.c dpkg_arch_name_is_invalid


def _awaited_error(word: bytes) -> str | None:
    """An awaited trigger is a package, ``name[:arch]`` (lib/dpkg/pkg-spec.c pkg_spec_parse)."""
    name, colon, arch = word.partition(b":")
    if not _PACKAGE_NAME.fullmatch(name):
        return "invalid package name"
    if colon and not _ARCH_NAME.fullmatch(arch):
        return "invalid architecture name"
    return None


def _count_instances(entries: list[Package], new: Package) -> None:
    """dpkg's parse_find_set_slot: the installed instances of one name, the entry a new stanza
    replaces among them (dpkg counts it too), are a single one or all Multi-Arch: same."""
    if new.state == "not-installed":
        return
    installed = [p for p in entries if p.state != "not-installed"] + [new]
    single = sum(not p.multi_arch_same for p in installed)
    if single > 1 or 0 < single < len(installed):
        raise DpkgStatusError(f"package {new.name}: several installed instances, not all Multi-Arch: same")


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
