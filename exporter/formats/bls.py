"""Boot Loader Specification entries (type #1 ``.conf`` files) and systemd-boot's loader.conf.

Both are ``key value`` lines; in an entry the first occurrence of a key wins, as in GRUB's
blscfg; in loader.conf the last one, as systemd-boot reads it.  Sources: docs/formats.md, "Boot loaders".
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass


def parse_bls_entry(data: bytes) -> dict[str, str]:
    """A type #1 entry as GRUB's blscfg reads it: the first value of a repeated key."""
    return _key_values(data, last_wins=False)


def parse_loader_conf(data: bytes) -> dict[str, str]:
    """systemd-boot's loader.conf: each key it knows replaces the value before it (boot.c,
    config_defaults_load_from_file frees and re-sets), so the last value of a repeated key wins."""
    return _key_values(data, last_wins=True)


def _key_values(data: bytes, *, last_wins: bool) -> dict[str, str]:
    fields: dict[str, str] = {}
    # Lines end at "\n" only, every "\r" dropped (GRUB's grub_file_getline): not str.splitlines,
    # which also ends lines at \v, \f, \x1c-\x1e, \x85 and U+2028 inside a value.
    for line in data.decode("utf-8", "replace").replace("\r", "").split("\n"):
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            if last_wins:
                fields[key] = value.strip()
            else:
                fields.setdefault(key, value.strip())
    return fields


# ---------------------------------------------------------------------------------------------
# The menu order of GRUB's blscfg command (rhboot/grub2 grub-core/commands/blscfg.c)


def blscfg_vercmp(a: str, b: str, plus: bool = True) -> int:
    """blscfg.c vercmp: rpmvercmp with ``+`` in the role of rpm's ``^`` (RHEL 9+, Fedora); the
    RHEL 8 variant (``plus=False``) treats ``+`` as a separator."""
    if a == b:
        return 0
    i = j = 0
    special = "~+" if plus else "~"

    def alnum(c: str) -> bool:
        return ("0" <= c <= "9") or ("a" <= c <= "z") or ("A" <= c <= "Z")

    while i < len(a) or j < len(b):
        while i < len(a) and not alnum(a[i]) and a[i] not in special:
            i += 1
        while j < len(b) and not alnum(b[j]) and b[j] not in special:
            j += 1
        ca, cb = a[i:i + 1], b[j:j + 1]
        if ca == "~" or cb == "~":
            if ca != "~":
                return 1
            if cb != "~":
                return -1
            i, j = i + 1, j + 1
            continue
        if plus and (ca == "+" or cb == "+"):
            if not ca:
                return -1
            if not cb:
                return 1
            if ca != "+":
                return 1
            if cb != "+":
                return -1
            i, j = i + 1, j + 1
            continue
        if not (ca and cb):
            break
        digit = "0" <= ca <= "9"
        same = (lambda c: "0" <= c <= "9") if digit else (lambda c: ("a" <= c <= "z") or ("A" <= c <= "Z"))
        ei, ej = i, j
        while ei < len(a) and same(a[ei]):
            ei += 1
        while ej < len(b) and same(b[ej]):
            ej += 1
        if ej == j:
            return 1 if digit else -1
        one, two = a[i:ei], b[j:ej]
        if digit:
            one, two = one.lstrip("0"), two.lstrip("0")
            if len(one) != len(two):
                return 1 if len(one) > len(two) else -1
        if one != two:
            return 1 if one > two else -1
        i, j = ei, ej
    if i >= len(a) and j >= len(b):
        return 0
    return -1 if i >= len(a) else 1


def _split_nvr(s: str, has_name: bool) -> tuple[str, str, str]:
    """split_package_string: release after the last '-', version after the one before, the
    rest the name; missing parts bubble up (a single word is the name, or the version)."""
    version, sep, release = s.rpartition("-")
    if not sep:
        version, release = s, None
    if not has_name:
        name = None
    else:
        name, sep2, v = (version.rpartition("-") if release is not None else ("", "", ""))
        if release is None:
            name, version = s, None
        elif not sep2:
            name, version = version, None
        else:
            version = v
        if name is None:
            name = version if version is not None else release
    if version is None:
        version, release = release, None
    return name or "", version or "", release or ""


def _split_cmp(a: str, b: str, has_name: bool, plus: bool) -> int:
    na, va, ra = _split_nvr(a, has_name)
    nb, vb, rb = _split_nvr(b, has_name)
    if has_name:
        rc = blscfg_vercmp(na, nb, plus)
        if rc:
            return rc
    return blscfg_vercmp(va, vb, plus) or blscfg_vercmp(ra, rb, plus)


def blscfg_order(entries: list[tuple[str, dict[str, str]]], variant: str = "current"
                 ) -> list[tuple[str, dict[str, str]]]:
    """The menu blscfg makes from (id, fields) entries (id: the file name without .conf), in the
    order the directory listed them; entries without a ``linux`` key are left out.

    - ``current`` (RHEL 9/10, Fedora): each entry is inserted before the first it is newer than,
      comparing ids as name-version-release; one comparing equal to an earlier one is dropped;
    - ``rhel8``: sorted newest first by the ``version`` key (when every entry has one), then id;
      no '+' rule, nothing dropped."""
    if variant == "rhel8":
        use_version = all("version" in f for _, f in entries)

        def cmp(x, y) -> int:
            if use_version:
                rc = _split_cmp(x[1]["version"], y[1]["version"], False, False)
                if rc:
                    return rc
            return _split_cmp(x[0], y[0], True, False)
        ordered = sorted(entries, key=functools.cmp_to_key(cmp), reverse=True)
    else:
        ordered = []
        for entry in entries:
            for k, existing in enumerate(ordered):
                rc = _split_cmp(entry[0], existing[0], True, True)
                if rc == 0:
                    break
                if rc == 1:
                    ordered.insert(k, entry)
                    break
            else:
                ordered.append(entry)
    return [e for e in ordered if "linux" in e[1]]


# ---------------------------------------------------------------------------------------------
# systemd-boot's menu: entries of both types and their order (systemd 257, the shared bootspec.c
# and src/boot/boot.c boot_entry_compare; src/fundamental/string-util-fundamental.c)


def parse_sdboot_entry(data: bytes) -> dict[str, str]:
    """A type #1 entry as systemd 257 reads it (bootspec.c boot_entry_load_type1): lines stripped,
    ``#`` comments and empty values skipped, the key ends at the first space or tab and the value
    starts after the run of them; a repeated single-valued key replaces the one before (the last
    wins, unlike GRUB's blscfg); ``options`` and ``initrd`` lines accumulate (joined by "\\n")."""
    fields: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        line = line.strip(" \t\r\n")
        if not line or line.startswith("#"):
            continue
        parts = re.split(r"[ \t\r\n]+", line, maxsplit=1)
        if len(parts) < 2 or not parts[1]:
            continue
        key, value = parts
        if key in ("options", "initrd") and key in fields:
            fields[key] += "\n" + value
        else:
            fields[key] = value
    return fields


def _is_version_char(c: str) -> bool:
    return ("0" <= c <= "9") or ("a" <= c <= "z") or ("A" <= c <= "Z") or c in "~-^."


def _cmp(a, b) -> int:
    return (a > b) - (a < b)


def strverscmp_improved(a: str | None, b: str | None) -> int:
    """systemd's strverscmp_improved (string-util-fundamental.c): rpmvercmp-like segments with
    '~' (pre-release, oldest), '-' (version-release), '^' (patched) and '.' prefixes; a numeric
    segment is newer than an alphabetic one, and a string with more segments is newer.  -1/0/1."""
    a, b = a or "", b or ""
    i = j = 0
    while True:
        while i < len(a) and not _is_version_char(a[i]):
            i += 1
        while j < len(b) and not _is_version_char(b[j]):
            j += 1
        ca, cb = a[i:i + 1], b[j:j + 1]
        if ca == "~" or cb == "~":
            r = _cmp(ca != "~", cb != "~")
            if r:
                return r
            i, j = i + 1, j + 1
            ca, cb = a[i:i + 1], b[j:j + 1]
        if not ca or not cb:
            return _cmp(ca, cb)   # the C code compares the bytes: the one left over is newer
        for sep in "-^.":
            if ca == sep or cb == sep:
                r = _cmp(ca != sep, cb != sep)
                if r:
                    return r
                i, j = i + 1, j + 1
                ca, cb = a[i:i + 1], b[j:j + 1]
        if ca.isascii() and ca.isdigit() or cb.isascii() and cb.isdigit():
            ea, eb = i, j
            while ea < len(a) and "0" <= a[ea] <= "9":
                ea += 1
            while eb < len(b) and "0" <= b[eb] <= "9":
                eb += 1
            r = _cmp(ea != i, eb != j)
            if r:
                return r
            while i < ea and a[i] == "0":
                i += 1
            while j < eb and b[j] == "0":
                j += 1
            r = _cmp(ea - i, eb - j) or _cmp(a[i:ea], b[j:eb])
            if r:
                return r
        else:
            ea, eb = i, j
            while ea < len(a) and (("a" <= a[ea] <= "z") or ("A" <= a[ea] <= "Z")):
                ea += 1
            while eb < len(b) and (("a" <= b[eb] <= "z") or ("A" <= b[eb] <= "Z")):
                eb += 1
            n = min(ea - i, eb - j)
            r = _cmp(a[i:i + n], b[j:j + n]) or _cmp(ea - i, eb - j)
            if r:
                return r
        i, j = ea, eb


def _c_prefix_cmp(x: str, y: str) -> int:
    return _cmp(x.encode(), y.encode())


_TRIES = re.compile(r"^(?P<stem>.*)\+(?P<left>[0-9]+)(?:-(?P<done>[0-9]+))?(?P<suffix>\.[^.]*)$", re.S)


def split_tries(fname: str) -> tuple[str, int | None, int | None]:
    """bootspec.c boot_filename_extract_tries: ``NAME+LEFT[-DONE].EXT`` -> (``NAME.EXT``, LEFT,
    DONE); a name without a valid counter is returned as it is, with (None, None)."""
    m = _TRIES.match(fname)
    if not m or "." in m.group("left"):
        return fname, None, None
    left = int(m.group("left"))
    done = int(m.group("done")) if m.group("done") is not None else None
    if left > 0x7FFFFFFF or (done is not None and done > 0x7FFFFFFF):
        return fname, None, None
    return m.group("stem") + m.group("suffix"), left, done


@dataclass(frozen=True)
class SdBootEntry:
    """One systemd-boot menu entry, named and ordered as ``bootctl list`` shows it.

    ``id`` is bootctl's: the file name with the boot counter removed (``.conf``/``.efi`` kept),
    ``@PROFILE`` appended for a UKI profile after the first.  ``kernel`` is the release it boots
    (type #1: from the ``linux`` path or ``version``; type #2: the UKI's ``.uname``)."""

    id: str
    type: str                   # type1 | type2
    source: str                 # esp | xbootldr
    path: str                   # host path of the .conf or .efi file
    kernel: str | None
    title: str | None = None
    sort_key: str | None = None
    machine_id: str | None = None
    version: str | None = None
    tries_left: int | None = None
    tries_done: int | None = None
    profile: int = 0
    id_without_profile: str | None = None


def sdboot_compare(a: SdBootEntry, b: SdBootEntry) -> int:
    """bootspec.c boot_entry_compare (systemd 257; sd-boot's boot.c has the same rules): entries
    with no tries left last; entries with a sort-key before those without; between two with one:
    sort-key ascending, machine-id ascending, version descending; then the id descending (so
    ``...-6.12.118`` before ``...-6.12.113``); profiles of one UKI by number.  bootctl returns 0
    after that when either entry counts boots (its check is inverted against sd-boot's), so the
    counters themselves never order two entries there."""
    r = _cmp(a.tries_left == 0, b.tries_left == 0)
    if r:
        return r
    r = _cmp(a.sort_key is None, b.sort_key is None)
    if r:
        return r
    if a.sort_key is not None and b.sort_key is not None:
        r = _c_prefix_cmp(a.sort_key, b.sort_key)
        if r:
            return r
        r = _strcmp_ptr(a.machine_id, b.machine_id)
        if r:
            return r
        r = -strverscmp_improved(a.version, b.version)
        if r:
            return r
    r = -strverscmp_improved(a.id_without_profile or a.id, b.id_without_profile or b.id)
    if r:
        return r
    if a.id_without_profile and b.id_without_profile:
        return _cmp(a.profile, b.profile)
    return 0


def _strcmp_ptr(a: str | None, b: str | None) -> int:
    """strcmp_ptr: NULL sorts before any string."""
    if a is not None and b is not None:
        return _c_prefix_cmp(a, b)
    return _cmp(a is not None, b is not None)


def sdboot_order(entries: list[SdBootEntry]) -> list[SdBootEntry]:
    """The menu order (a stable sort, as glibc's qsort is for these sizes)."""
    return sorted(entries, key=functools.cmp_to_key(sdboot_compare))


def pick_name_version_sort_key(osrel: dict[str, str]) -> tuple[str, str | None, str | None] | None:
    """bootspec-fundamental.c bootspec_pick_name_version_sort_key: a UKI's title (PRETTY_NAME,
    IMAGE_ID, NAME, ID), version (IMAGE_VERSION, VERSION, VERSION_ID, BUILD_ID) and sort key
    (IMAGE_ID, ID) from its ``.osrel``; None without any name (bootctl refuses the UKI)."""
    def first(*keys: str) -> str | None:
        return next((osrel[k] for k in keys if k in osrel), None)
    name = first("PRETTY_NAME", "IMAGE_ID", "NAME", "ID")
    if name is None:
        return None
    return name, first("IMAGE_VERSION", "VERSION", "VERSION_ID", "BUILD_ID"), first("IMAGE_ID", "ID")


_ENTRY_NAME = re.compile(r"^[A-Za-z0-9+\-_.@]+$")


def valid_entry_name(name: str) -> bool:
    """efi-loader.c efi_loader_entry_name_valid: a file name of ALPHANUMERICAL and ``+-_.@``."""
    return bool(_ENTRY_NAME.match(name)) and name not in (".", "..") and len(name) <= 255
