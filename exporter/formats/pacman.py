"""pacman's local database and configuration, read as libalpm reads them.

- ``/var/lib/pacman/local/NAME-VERSION/desc``: ``%SECTION%`` headers, one value per line until an
  empty line (libalpm be_local.c ``local_db_read``); unknown sections are skipped, as alpm skips them.
- ``.../files``: ``%FILES%`` (paths relative to the root, directories ending in ``/``) and
  ``%BACKUP%`` (``path<TAB>md5``), what ``pacman -Ql`` lists.
- ``/etc/pacman.conf``: ini lines, ``#`` starts a comment only at the start of a line
  (``IgnorePkg = a # b`` holds ``a``, ``#`` and ``b``: pacman 6.0's ini.c), ``key = value``, ``Include``
  glob-expanded (sorted, as glob(3)) in any section, 10 levels at most; a section header inside an
  included file changes the section of the including file too (pacman's conf.c keeps one
  section state).  ``IgnorePkg``/``IgnoreGroup`` in ``[options]`` are whitespace-separated,
  repeatable, and matched with fnmatch(3) without flags (``alpm_pkg_should_ignore``).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Callable

MAX_INCLUDE_DEPTH = 10          # conf.c config_max_recursion
MAX_FILES_ENTRIES = 200_000


class PacmanDbError(ValueError):
    """A local database entry pacman itself would refuse ("corrupted database entry")."""


@dataclass(frozen=True)
class LocalPackage:
    name: str
    version: str                         # [EPOCH:]PKGVER-PKGREL
    base: str = ""
    arch: str = ""
    installdate: int | None = None
    reason: int = 0                      # 0 explicit, 1 installed as a dependency
    groups: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()


_NAME_VERSION = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+-[^-]+)$")


def split_entry_name(entry: str) -> tuple[str, str] | None:
    """(name, version) of a local db directory name NAME-PKGVER-PKGREL (alpm's _alpm_splitname:
    the last two dashes), None when it has fewer."""
    m = _NAME_VERSION.match(entry)
    return (m["name"], m["version"]) if m else None


def sections(data: bytes) -> dict[str, list[str]]:
    """``%KEY%`` -> its lines (first occurrence wins), as be_local.c reads desc and files."""
    text = data.decode("utf-8", "surrogateescape")
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if current is not None:
            if line == "":
                current = None
            else:
                current.append(line)
            continue
        if len(line) > 2 and line.startswith("%") and line.endswith("%"):
            current = found.setdefault(line[1:-1], []) if line[1:-1] not in found else []
    return found


def parse_desc(data: bytes) -> LocalPackage:
    """One package's desc.  No %NAME% or %VERSION%: PacmanDbError (pacman skips such an entry)."""
    s = sections(data)
    name, version = (s.get("NAME") or [""])[0], (s.get("VERSION") or [""])[0]
    if not name or not version:
        raise PacmanDbError("desc has no %NAME% or %VERSION%")
    return LocalPackage(name, version, (s.get("BASE") or [""])[0], (s.get("ARCH") or [""])[0],
                        _int((s.get("INSTALLDATE") or [""])[0]), _int((s.get("REASON") or ["0"])[0]) or 0,
                        tuple(s.get("GROUPS", ())), tuple(s.get("PROVIDES", ())))


def _int(text: str) -> int | None:
    """A desc file's number; None for anything else, a 5,000-digit one included (int() refuses
    it with ValueError, and no real date or reason is that long)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 20 else None


def parse_files(data: bytes) -> tuple[str, ...]:
    """The paths a package owns (files' %FILES%), as pacman -Ql prints them without the root."""
    paths = sections(data).get("FILES", [])
    if len(paths) > MAX_FILES_ENTRIES:
        raise PacmanDbError(f"files lists {len(paths)} paths, more than {MAX_FILES_ENTRIES}")
    return tuple(paths)


# --- pacman.conf ------------------------------------------------------------------------------


class PacmanConfError(ValueError):
    """pacman.conf (or a file it includes) that pacman refuses to run with."""


@dataclass(frozen=True)
class HoldRule:
    pattern: str
    kind: str            # IgnorePkg | IgnoreGroup
    source: str          # the file the line is in


@dataclass
class _State:
    section: str | None = None
    depth: int = 0
    rules: list[HoldRule] = field(default_factory=list)


def parse_pacman_conf(path: str, load: Callable[[str], bytes | None],
                      glob: Callable[[str], list[str]]) -> tuple[HoldRule, ...]:
    """IgnorePkg / IgnoreGroup rules of ``path`` and everything it includes, in pacman's order.

    ``load(path)`` gives a file's bytes (None: absent), ``glob(pattern)`` the sorted matches.  A
    file pacman cannot read, a directive outside a section or a too deep include is
    PacmanConfError: pacman refuses to run then, so no upgrade (and no hold) happens."""
    state = _State()
    _parse_file(path, load, glob, state)
    return tuple(state.rules)


def _parse_file(path: str, load, glob, state: _State) -> None:
    data = load(path)
    if data is None:
        raise PacmanConfError(f"config file {path} could not be read")
    for number, raw in enumerate(data.decode("utf-8", "surrogateescape").split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):      # pacman 6: whole-line comments only
            continue
        if line.startswith("[") and line.endswith("]"):
            if len(line) <= 2:
                raise PacmanConfError(f"config file {path}, line {number}: bad section name")
            state.section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if key == "Include":
            _include(path, number, value, load, glob, state)
            continue
        if state.section is None:
            raise PacmanConfError(f"config file {path}, line {number}: all directives must belong to a section")
        if state.section == "options" and key in ("IgnorePkg", "IgnoreGroup"):
            state.rules += [HoldRule(word, key, path) for word in value.split()]


def _include(path: str, number: int, value: str, load, glob, state: _State) -> None:
    if not value:
        raise PacmanConfError(f"config file {path}, line {number}: directive 'Include' needs a value")
    if state.depth >= MAX_INCLUDE_DEPTH:
        raise PacmanConfError(f"config parsing exceeded max recursion depth of {MAX_INCLUDE_DEPTH}")
    state.depth += 1
    try:
        for match in glob(value) or [value]:          # GLOB_NOCHECK: no match is the pattern itself
            _parse_file(match, load, glob, state)
    finally:
        state.depth -= 1


def should_ignore(rules: tuple[HoldRule, ...], name: str, groups: tuple[str, ...]) -> HoldRule | None:
    """The rule that makes ``pacman -Su`` skip a package named ``name`` in ``groups`` (alpm's
    alpm_pkg_should_ignore: IgnorePkg on the name first, then IgnoreGroup on each group), or None."""
    for rule in rules:
        if rule.kind == "IgnorePkg" and fnmatch.fnmatchcase(name, rule.pattern):
            return rule
    for group in groups:
        for rule in rules:
            if rule.kind == "IgnoreGroup" and fnmatch.fnmatchcase(group, rule.pattern):
                return rule
    return None
