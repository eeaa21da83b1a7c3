"""zypper's package locks, ``/etc/zypp/locks``, read and judged as libzypp does.

The file is a list of serialized PoolQuery records (libzypp PoolQuery.cc ``recover``): lines
``attribute: value`` (both trimmed), a record ends at an empty line or at a line without a
``:``, a line starting with ``#`` is skipped.  A lock holds every solvable its query matches:
``zypper locks --solvables`` lists the installed ones it keeps ("Keep installed"), and an
available newer version of a locked name is not installed either.

What a query matches (PoolQuery ``compile`` and ``PoolQueryMatcher::isAMatch``): the strings of
its attributes (``solvable_name`` ...) joined with the global ``query_string`` values, matched
in the record's ``match_type`` (default substring) and case (default: insensitive; zypper
addlock writes ``match_type: glob`` and ``case_sensitive: on``); several attributes are OR-ed;
``version`` (``OP EVR``, ``==`` without an operator) compares the solvable's edition in
libsolv's match mode (a release only when both have one); ``type`` restricts the kind
(installed rpm packages are ``package``); ``repo`` restricts the repository (installed packages
are in ``@System``); ``install_status`` keeps installed or not-installed ones.  A name written
``NAME OP EVR`` is a versioned name; ``complex:`` (an old serialized predicate) is rewritten
into a name and version when libzypp rewrites it.

Attributes this reader cannot see in an rpm header it keeps (summary, description,
provides...): a lock that names only those cannot be judged (``judge`` returns None).
Sources: docs/formats.md, "zypper locks".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .versions import rpmvercmp, split_evr

MAX_LOCKS = 10_000
MAX_VALUE = 4096
MODES = ("substring", "exact", "glob", "regex", "word")
KINDS = ("package", "patch", "pattern", "product", "srcpackage", "application")
_RELS = {"==": "==", "=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=",
         "EQ": "==", "NE": "!=", "LT": "<", "LE": "<=", "GT": ">", "GE": ">="}
_TRUE = ("1", "yes", "true", "on", "always")
_FALSE = ("0", "no", "false", "off", "never")
# the attributes recover() treats as dependencies (a value "NAME OP EVR" is versioned)
_DEPENDENCIES = {"solvable:provides", "solvable:obsoletes", "solvable:conflicts", "solvable:requires",
                 "solvable:recommends", "solvable:suggests", "solvable:supplements", "solvable:enhances"}
_SEEN = {"solvable:name", "solvable:arch"}     # what an rpm header gives this reader
_CAP = re.compile(r"^(?P<name>\S+)\s*(?P<op>==|!=|<=|>=|=|<|>)\s*(?P<evr>\S+)$")


class ZyppLocksError(ValueError):
    """A locks file this reader refuses (too many records, a value over the bound)."""


@dataclass(frozen=True)
class ZyppLock:
    line: int                                        # the record's first line (1-based)
    attrs: tuple[tuple[str, tuple[str, ...]], ...]   # ("solvable:name", (values,)) ...
    strings: tuple[str, ...] = ()                    # query_string values
    kinds: tuple[str, ...] = ()
    repos: tuple[str, ...] = ()
    mode: str = "substring"
    case_sensitive: bool = False
    status: str = "all"                              # all | installed | not-installed
    op: str | None = None                            # the version restriction, libzypp's Rel
    edition: str = ""
    name_kind: str = ""                              # "kind:name" written in solvable_name
    comment: str = ""
    problem: str = ""                                # why libzypp would not apply it ("" when it does)

    @property
    def names(self) -> tuple[str, ...]:
        return dict(self.attrs).get("solvable:name", ())

    @property
    def label(self) -> str:
        """The lock as `zypper locks` names it (its Name column, what `zypper removelock` takes)."""
        name = " ".join(self.names) or " ".join(self.strings) or "(any)"
        return f"{name} {self.op} {self.edition}" if self.op else name


def parse_locks(text: str) -> tuple[ZyppLock, ...]:
    """Every record of a locks file, in file order."""
    locks: list[ZyppLock] = []
    record: list[tuple[int, str, str]] = []
    lines = text.split("\n")
    for number, raw in enumerate(lines + [""], 1):
        s = raw
        if s.startswith("#"):
            continue
        pos = s.find(":")
        if not s or pos < 0:
            if record:
                locks.append(_lock(record))
                record = []
                if len(locks) > MAX_LOCKS:
                    raise ZyppLocksError(f"more than {MAX_LOCKS} locks")
            continue
        name, value = s[:pos].strip(), s[pos + 1:].strip()
        if len(value) > MAX_VALUE:
            raise ZyppLocksError(f"line {number}: a value of {len(value)} characters")
        record.append((number, name, value))
    return tuple(locks)


def _lock(record: list[tuple[int, str, str]]) -> ZyppLock:
    """One record as PoolQuery::recover builds its query (the last word wins for single settings)."""
    attrs: dict[str, list[str]] = {}
    strings: list[str] = []
    kinds: list[str] = []
    repos: list[str] = []
    mode, case, status, op, edition, name_kind, comment, problem = "substring", False, "all", None, "", "", "", ""
    complexes: list[str] = []
    versioned_names: list[tuple[str, str, str]] = []
    for _, name, value in record:
        if name == "repo":
            repos.append(value)
        elif name in ("type", "kind"):
            kinds.append(value)
        elif name == "comment":
            comment = value
        elif name in ("query_string", "global_string"):
            strings.append(value)
        elif name in ("match_type", "string_type"):
            mode = value if value in MODES else mode
        elif name == "require_all" or name == "":
            continue
        elif name == "case_sensitive":
            if value.lower() in _TRUE:
                case = True
            elif value.lower() in _FALSE:
                case = False
        elif name == "install_status":
            status = value if value in ("all", "installed", "not-installed") else status
        elif name == "version":
            op, edition = "==", value
            if value[:1] in "=<>!" and value:
                cut = max(value.rfind(c) for c in "=<>") + 1
                op = _RELS.get(value[:cut])
                edition = value[cut:].strip()
                if op is None:
                    problem = f"unknown operator {value[:cut]!r}"
        elif name == "complex":
            complexes.append(value)
        else:
            attr = name.replace("_", ":")
            m = _CAP.match(value) if attr == "solvable:name" or attr in _DEPENDENCIES else None
            if m and attr == "solvable:name":
                versioned_names.append((m["name"], _RELS[m["op"]], m["evr"]))
                continue
            attrs.setdefault(attr, []).append(value)
    if versioned_names:
        # addDependency with a range: a predicated name in the query's mode (Match::OTHER)
        if len(versioned_names) == 1 and "solvable:name" not in attrs and not complexes:
            n, vop, ved = versioned_names[0]
            attrs["solvable:name"] = [n]
            op, edition = (op, edition) if op else (vop, ved)
            if op != vop or edition != ved:
                problem = problem or "a versioned name beside a version restriction"
        else:
            problem = problem or "several versioned names"
    if complexes:
        rewritten = _rewrite_complex(complexes, attrs)
        if rewritten is None:
            problem = problem or "a complex predicate this reader does not evaluate"
        else:
            n, vop, ved = rewritten
            attrs["solvable:name"] = [n]
            if vop:
                op, edition = vop, ved
    names = attrs.get("solvable:name", [])
    for i, v in enumerate(names):
        kind, sep, rest = v.partition(":")
        if sep and kind in KINDS:          # ResKind::explicitBuiltin: "patch:NAME"
            name_kind, names[i] = kind, rest
    return ZyppLock(record[0][0], tuple((a, tuple(dict.fromkeys(v))) for a, v in attrs.items()),
                    tuple(dict.fromkeys(strings)), tuple(dict.fromkeys(kinds)), tuple(dict.fromkeys(repos)),
                    mode, case, status, op, edition, name_kind, comment, problem)


def split_escaped(text: str) -> list[str]:
    """libzypp's str::splitEscaped on whitespace: a backslash keeps the next character, double
    quotes group (``""`` is an empty word)."""
    words: list[str] = []
    word: list[str] | None = None
    quoted = escaped = False
    for c in text:
        if escaped:
            word = (word or []) + [c]
            escaped = False
        elif c == "\\":
            escaped = True
            word = word or []
        elif c == '"':
            quoted = not quoted
            word = word or []
        elif c.isspace() and not quoted:
            if word is not None:
                words.append("".join(word))
            word = None
        else:
            word = (word or []) + [c]
    if word is not None:
        words.append("".join(word))
    return words


def _rewrite_complex(complexes: list[str], attrs: dict) -> tuple[str, str | None, str] | None:
    """recover()'s bsc#1112911 rewrite: one complex name predicate (mode C, no arch) and no plain
    name becomes (name, op, evr); anything else stays a predicate this reader does not evaluate."""
    if len(complexes) != 1 or "solvable:name" in attrs:
        return None
    words = split_escaped(complexes[0])
    if len(words) != 5 or words[0] != "AttrMatchData" or words[1] != "solvable:name" or words[3] != "C":
        return None
    pred = split_escaped(words[4])
    if not pred:
        return words[2], None, ""
    if pred[0] in ("EditionRange", "SolvableRange") and len(pred) in (3, 4) and (len(pred) < 4 or not pred[3]):
        rel = _RELS.get(pred[1])
        return (words[2], rel, pred[2]) if rel else None
    return None


# ---------------------------------------------------------------------------------------------
# Matching


def _regex_of_glob(glob: str) -> str:
    """str::rxEscapeGlob: * and ? become regex wildcards, [..] stays, the rest is escaped."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            end = glob.find("]", i + 2 if glob[i + 1:i + 2] in ("]", "!") else i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = glob[i + 1:end]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _matcher(values: list[str], mode: str, case: bool):
    """StrMatcher for the joined strings (PoolQuery::Impl::joinedStrMatcher); None matches all."""
    values = [v for v in dict.fromkeys(values) if v]
    if not values:
        return None
    flags = 0 if case else re.IGNORECASE
    if len(values) == 1 and mode != "word":
        v = values[0]
        if mode == "exact":
            return (lambda s: s == v) if case else (lambda s: s.lower() == v.lower())
        if mode == "substring":
            return (lambda s: v in s) if case else (lambda s: v.lower() in s.lower())
        if mode == "glob":
            try:   # a bracket the regex engine refuses ("[n-e]"): invalid, as the regex branch
                rx = re.compile(_regex_of_glob(v) + r"\Z", flags | re.DOTALL)
            except re.error:
                return False
            return lambda s: rx.match(s) is not None
        try:
            rx = re.compile(v, flags)
        except re.error:
            return False
        return lambda s: rx.search(s) is not None
    escaped = [v if mode == "regex" else _regex_of_glob(v) if mode == "glob" else re.escape(v) for v in values]
    head, tail = ("^", "$") if mode in ("exact", "glob") else (r"\b", r"\b") if mode == "word" else ("", "")
    try:
        rx = re.compile(f"{head}({'|'.join(escaped)}){tail}", flags)
    except re.error:
        return False
    return lambda s: rx.search(s) is not None


def edition_match(solvable: str, lock: str) -> int:
    """libsolv's pool_evrcmp_str in EVRCMP_MATCH mode: epochs compared when both are written
    (a missing one is 0 against a written non-zero one), the release only when both have one."""
    (e1, v1, r1), (e2, v2, r2) = split_evr(solvable), split_evr(lock)
    if e1 is not None and e2 is not None:
        c = rpmvercmp(e1, e2)
        if c:
            return c
    elif e1 is not None and e1.lstrip("0"):
        return 1
    elif e2 is not None and e2.lstrip("0"):
        return -1
    if v1 and v2:
        c = rpmvercmp(v1, v2)
        if c:
            return c
    if r1 and r2:
        return rpmvercmp(r1, r2)
    return 0


def _by_rel(op: str, cmp: int) -> bool:
    return {"==": cmp == 0, "!=": cmp != 0, "<": cmp < 0, "<=": cmp <= 0, ">": cmp > 0, ">=": cmp >= 0}[op]


def judge(lock: ZyppLock, name: str, evr: str, arch: str, *, installed: bool = True,
          repo: str = "@System", kind: str = "package") -> bool | None:
    """Whether the lock matches this solvable: True, False, or None when only attributes this
    reader cannot see could decide it."""
    if lock.problem:
        return False
    if lock.status != "all" and (lock.status == "installed") != installed:
        return False
    if lock.repos and repo not in lock.repos:
        return False
    if lock.op and not _by_rel(lock.op, edition_match(evr, lock.edition)):
        return False
    if lock.name_kind:
        if lock.name_kind != kind:
            return False
    elif lock.kinds and kind not in lock.kinds:
        return False
    attrs = dict(lock.attrs)
    if not attrs:
        m = _matcher(list(lock.strings), lock.mode, lock.case_sensitive)
        if m is None:
            return True
        return True if m is not False and (m(name) or m(arch)) else None
    values = [v for vs in attrs.values() for v in vs]
    same = not any(values) or all(set(vs) == set(next(iter(attrs.values()))) for vs in attrs.values())
    unseen = False
    for attr, vs in attrs.items():
        joined = list(lock.strings) + (list(next(iter(attrs.values()))) if same else list(vs))
        m = _matcher(joined, lock.mode, lock.case_sensitive)
        if attr not in _SEEN:
            unseen = True
            continue
        if m is False:
            continue
        value = name if attr == "solvable:name" else arch
        if m is None or m(value):
            return True
    return None if unseen else False
