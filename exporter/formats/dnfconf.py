"""What keeps dnf from upgrading a package: the versionlock plugin's list (dnf 4), dnf5's
versionlock.toml, and ``exclude=`` / ``excludepkgs=`` in dnf.conf and repo files.

Each rule is matched the way dnf matches it: a package spec is split into name, epoch, version,
release and arch by libdnf's NEVRA forms (libdnf/nevra.cpp: five POSIX regexes), and each part
is a glob (C fnmatch, flags 0) over installed packages (libdnf/sack/query.cpp
``Query::addFilter(HyNevra)``).  The versionlock plugin tries the forms NEVRA, NEVR, NEV, NA,
NAME and stops at the first one that matches a package (dnf-plugins-core plugins/
versionlock.py ``sack()``); ``exclude=`` goes NEVRA, NA, NAME, NEVR, NEV (libdnf's
``HY_FORMS_MOST_SPEC``).  The .ini files are read as libdnf's IniParser reads them, lists split
as its OptionStringList does.

"Held" here means: no newer version or release can be installed, whatever the repositories
offer — a version lock, or an exclude whose matching form constrains neither version nor release
(``kernel*``, ``kernel-core.x86_64``).  A rule that excludes some versions only (``kernel-5.14*``)
is not a hold: the repositories decide.  Sources: docs/formats.md, "dnf holds".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from .versions import capped_epoch


class DnfConfError(ValueError):
    """A file dnf itself would refuse (its words: "IniParser: Missing '='")."""


# ---------------------------------------------------------------------------------------------
# .ini files (libdnf/utils/iniparser/iniparser.cpp) and list options (conf/OptionStringList.cpp)


def parse_ini(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order, as libdnf's IniParser returns them."""
    out: list[tuple[str, str, str]] = []
    section = ""
    key: str | None = None
    value = ""

    def flush() -> None:
        nonlocal key
        if key is not None:
            out.append((section, key, _trim(value)))
            key = None

    lines = text.split("\n")
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    for number, line in enumerate(lines, 1):
        if not line or line[0] in "#;":
            flush()
            continue
        stripped = line.strip(" \t\r")
        if not stripped:
            if key is not None:
                value += "\n"
            continue
        start = len(line) - len(line.lstrip(" \t\r"))
        if key is not None and (start == 0 or stripped[0] == "["):
            flush()
        if stripped[0] == "[":
            end = stripped.find("]")
            if end < 0:
                raise DnfConfError(f"line {number}: IniParser: Missing ']'")
            if end == 1:
                raise DnfConfError(f"line {number}: IniParser: Empty section name")
            rest = stripped[end + 1:]
            if rest and re.match(r"^[ \t\r]*(?:[#;].*)?$", rest) is None:
                raise DnfConfError(f"line {number}: IniParser: Text after section")
            section = stripped[1:end]
            continue
        if not section:
            raise DnfConfError(f"line {number}: IniParser: Missing section header")
        if start > 0:
            if key is None:
                raise DnfConfError(f"line {number}: IniParser: Illegal continuation line")
            value += "\n" + stripped
            continue
        if stripped[0] == "=":
            raise DnfConfError(f"line {number}: IniParser: Missing key")
        if "=" not in line:
            raise DnfConfError(f"line {number}: IniParser: Missing '='")
        k, _, v = line.rstrip(" \t\r").partition("=")
        key, value = k.rstrip(" \t"), v.lstrip(" \t")
    flush()
    return out


def _trim(value: str) -> str:
    value = value.rstrip("\n")
    if len(value) > 1 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return value


def string_list(value: str) -> list[str]:
    """OptionStringList::fromString: items split at spaces, commas and newlines."""
    out: list[str] = []
    start = _find_not(value, " ", 0)
    while start is not None and start < len(value):
        end = _find_any(value, " ,\n", start)
        if end is None:
            out.append(value[start:])
            break
        out.append(value[start:end])
        start = _find_not(value, " ", end + 1)
        if start is not None and value[start] == "," and value[end] == " ":
            end = start
            start = _find_not(value, " ", start + 1)
        if start is not None and value[start] == "\n" and value[end] in " ,":
            start = _find_not(value, " ", start + 1)
    return out


def _find_not(s: str, chars: str, pos: int) -> int | None:
    for i in range(pos, len(s)):
        if s[i] not in chars:
            return i
    return None


def _find_any(s: str, chars: str, pos: int) -> int | None:
    for i in range(pos, len(s)):
        if s[i] in chars:
            return i
    return None


def append_list(current: list[str], value: str) -> list[str]:
    """optionTListAppend (libdnf conf/Config-private.hpp): an empty value clears the list, an
    empty first item clears it before the rest is appended."""
    if not value:
        return []
    out = list(current)
    for i, item in enumerate(string_list(value)):
        if not item:
            if i == 0:
                out = []
        else:
            out.append(item)
    return out


def boolean(value: str) -> bool | None:
    v = value.strip().lower()
    if v in ("1", "yes", "true", "on"):
        return True
    if v in ("0", "no", "false", "off"):
        return False
    return None


# ---------------------------------------------------------------------------------------------
# Package specs: libdnf's NEVRA forms, C fnmatch globs


_NAME, _EPOCH, _VER, _ARCH = r"([^:(/=<> ]+)", r"(([0-9]+):)?", r"([^-:(/=<> ]+)", r"([^-:.(/=<> ]+)"
FORMS = {
    "NEVRA": re.compile(f"^{_NAME}-{_EPOCH}{_VER}-{_VER}\\.{_ARCH}$"),
    "NEVR": re.compile(f"^{_NAME}-{_EPOCH}{_VER}-{_VER}()$"),
    "NEV": re.compile(f"^{_NAME}-{_EPOCH}{_VER}()()$"),
    "NA": re.compile(f"^{_NAME}()()()()\\.{_ARCH}$"),
    "NAME": re.compile(f"^{_NAME}()()()()()$"),
}
VERSIONLOCK_FORMS = ("NEVRA", "NEVR", "NEV", "NA", "NAME")    # plugins/versionlock.py sack()
EXCLUDE_FORMS = ("NEVRA", "NA", "NAME", "NEVR", "NEV")        # libdnf hy-subject.cpp HY_FORMS_MOST_SPEC


@dataclass(frozen=True)
class Nevra:
    form: str
    name: str
    epoch: int | None
    version: str
    release: str
    arch: str

    def constrains_version(self) -> bool:
        """Whether it names a version or release (a "*" names none: addFilter skips it)."""
        return self.version not in ("", "*") or self.release not in ("", "*")

    def exact(self) -> bool:
        """Whether it names one version and one release (no glob in either)."""
        return all(part and not _GLOB_CHARS.search(part) for part in (self.version, self.release))


_GLOB_CHARS = re.compile(r"[*?\[]")


def parse_nevra(spec: str, form: str) -> Nevra | None:
    """Nevra::parse: None when the spec is not of that form."""
    m = FORMS[form].match(spec)
    if m is None or not m.group(1):
        return None
    epoch = capped_epoch(m.group(3)) if m.group(3) else None
    return Nevra(form, m.group(1), epoch, m.group(4) or "", m.group(5) or "", m.group(6) or "")


class PackageLike(Protocol):
    name: str
    epoch: int | None
    version: str
    release: str
    arch: str


def matches(n: Nevra, p: PackageLike) -> bool:
    """Query::addFilter(HyNevra): each part given (and not "*") is a glob on that field; the
    epoch is compared as a number (an absent epoch is 0)."""
    if n.name and n.name != "*" and not fnmatch(n.name, p.name):
        return False
    if n.epoch is not None and n.epoch != (p.epoch or 0):
        return False
    for pattern, value in ((n.version, p.version), (n.release, p.release), (n.arch, p.arch)):
        if pattern and pattern != "*" and not fnmatch(pattern, value):
            return False
    return True


def fnmatch(pattern: str, name: str) -> bool:
    """C fnmatch(pattern, name, 0): '*' and '?' match any character ('/' too), brackets with
    '!' or '^' negation, backslash escapes the next character."""
    return _glob(pattern).match(name) is not None


@lru_cache(maxsize=4096)
def _glob(pattern: str) -> re.Pattern:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i + 1
            if j < len(pattern) and pattern[j] in "!^":
                j += 1
            if j < len(pattern) and pattern[j] == "]":
                j += 1
            while j < len(pattern) and pattern[j] != "]":
                j += 1
            if j >= len(pattern):          # no closing bracket: a literal '['
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                negate = body[:1] in ("!", "^")
                body = body[1:] if negate else body
                out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.S)


def first_match(spec: str, forms: Iterable[str], packages: list[PackageLike]
                ) -> tuple[list[Nevra], list[PackageLike]]:
    """The forms tried (in order, up to the first one matching an installed package) and the
    packages that one matches; all parseable forms and [] when none matches."""
    tried: list[Nevra] = []
    for form in forms:
        nevra = parse_nevra(spec, form)
        if nevra is None:
            continue
        tried.append(nevra)
        found = [p for p in packages if matches(nevra, p)]
        if found:
            return tried, found
    return tried, []


# ---------------------------------------------------------------------------------------------
# The rules


@dataclass(frozen=True)
class Rule:
    """One line of a lock or exclude: where it is, what it says, and whether it locks or excludes."""

    source: str              # host path of the file
    spec: str
    kind: str                # "lock" (versionlock entry) or "exclude"
    section: str = ""        # the repository of a repo file's excludepkgs


def parse_locklist(text: str, source: str) -> list[Rule]:
    """versionlock.list as the plugin's _read_locklist reads it: lines starting with '#' and
    blank lines skipped, the rest stripped; a leading '!' makes an exclude."""
    rules = []
    for line in text.splitlines(keepends=True):
        if line.startswith("#") or line.strip() == "":
            continue
        spec = line.strip()
        rules.append(Rule(source, spec[1:], "exclude") if spec.startswith("!") else Rule(source, spec, "lock"))
    return rules


def held_by_versionlock(rules: list[Rule], packages: list[PackageLike]) -> dict[str, Rule]:
    """name -> the rule that holds it, the plugin's way (plugins/versionlock.py sack()): a lock
    adds the name of every form it tries, up to the first that matches a package (lines 92-108),
    and every other version of those names is excluded (lines 115-118).  So a lock holds when
    the form it was read in names one exact version and release ("kernel-core-0:5.14.0-427.el9.*",
    what `dnf versionlock add` writes); a bare name or a version glob matches the newer versions
    too and holds nothing.  An exclude ('!', lines 88-90) holds what it matches when it names no
    version."""
    held: dict[str, Rule] = {}
    for rule in rules:
        tried, found = first_match(rule.spec, VERSIONLOCK_FORMS, packages)
        if rule.kind == "lock":
            for nevra in tried:
                if nevra.exact():
                    for p in packages:
                        if fnmatch(nevra.name, p.name):
                            held.setdefault(p.name, rule)
        elif tried and found and not tried[-1].constrains_version():
            for p in found:
                held.setdefault(p.name, rule)
    return held


def held_by_excludes(rules: list[Rule], packages: list[PackageLike]) -> dict[str, Rule]:
    """name -> the exclude rule that keeps every newer version of it away (forms in
    HY_FORMS_MOST_SPEC order, the first matching one decides)."""
    held: dict[str, Rule] = {}
    for rule in rules:
        tried, found = first_match(rule.spec, EXCLUDE_FORMS, packages)
        if found and not tried[-1].constrains_version():
            for p in found:
                held.setdefault(p.name, rule)
    return held


@dataclass(frozen=True)
class Dnf5Lock:
    name: str
    conditions: tuple[tuple[str, str, str], ...]   # (key, comparator, value), all valid

    def pins(self) -> bool:
        """An ``evr`` equality: only that version may be installed."""
        return any(k == "evr" and c in ("=", "==") for k, c, _ in self.conditions)


_COMPARATORS = ("=", "==", "<", "<=", ">", ">=", "<>", "!=")


def parse_versionlock_toml(text: str) -> list[Dnf5Lock]:
    """/etc/dnf/versionlock.toml as libdnf5's VersionlockConfig reads it: ignored without
    ``version = "1.0"``; entries without a name, and invalid conditions, skipped."""
    import tomllib   # dnf5 hosts only

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DnfConfError(f"versionlock.toml: {exc}") from None
    if doc.get("version") != "1.0":
        return []
    locks = []
    for entry in doc.get("packages", []) if isinstance(doc.get("packages"), list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            continue
        conditions = []
        for cond in entry.get("conditions", []) if isinstance(entry.get("conditions"), list) else []:
            if not isinstance(cond, dict):
                continue
            key, comp, value = (str(cond.get(k, "")) for k in ("key", "comparator", "value"))
            if key in ("epoch", "evr", "arch") and comp in _COMPARATORS and value and \
                    not (key == "epoch" and not value.isdigit()) and \
                    not (key == "arch" and comp not in ("=", "==", "<>", "!=")):
                conditions.append((key, comp, value))
        locks.append(Dnf5Lock(entry["name"], tuple(conditions)))
    return locks


def held_by_dnf5(locks: list[Dnf5Lock], packages: list[PackageLike], source: str) -> dict[str, Rule]:
    held: dict[str, Rule] = {}
    for lock in locks:
        if not lock.pins():
            continue
        for p in packages:
            if fnmatch(lock.name, p.name):
                held.setdefault(p.name, Rule(source, lock.name, "lock"))
    return held


def exclude_options(entries: Iterator[tuple[str, str, str]] | list[tuple[str, str, str]],
                    section: str) -> list[str]:
    """The excludepkgs list of one section (``exclude`` is dnf's alias), appended in file order."""
    out: list[str] = []
    for sec, key, value in entries:
        if sec == section and key in ("exclude", "excludepkgs"):
            out = append_list(out, value)
    return out
