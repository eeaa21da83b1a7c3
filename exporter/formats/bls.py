"""Boot Loader Specification entries (type #1 ``.conf`` files) and systemd-boot's loader.conf.

Both are ``key value`` lines; in an entry the first occurrence of a key wins, as in GRUB's
blscfg; in loader.conf the last one, as systemd-boot reads it.  Sources: docs/formats.md, "Boot loaders".
"""

from __future__ import annotations


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
        import functools
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
