"""Kernel release ordering the way Debian orders kernels: dpkg's version comparison.

GRUB's 10_linux picks the newest kernel with ``dpkg --compare-versions`` and so does
"which kernel is newest" here, so ``6.8.0-100-generic`` sorts after ``6.8.0-52-generic``.
python-debian implements this too, but rejects strings dpkg happily compares (RHEL
releases such as ``5.14.0-427.13.1.el9_4.x86_64``), so this is dpkg's ``verrevcmp`` itself.
"""

from __future__ import annotations

import functools


def _order(c: str) -> int:
    if "0" <= c <= "9":
        return 0
    if ("a" <= c <= "z") or ("A" <= c <= "Z"):
        return ord(c)
    if c == "~":
        return -1
    return ord(c) + 256


def _isdigit(s: str, i: int) -> bool:
    return i < len(s) and "0" <= s[i] <= "9"


def _verrevcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not _isdigit(a, i)) or (j < len(b) and not _isdigit(b, j)):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        first_diff = 0
        while _isdigit(a, i) and _isdigit(b, j):
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if _isdigit(a, i):
            return 1
        if _isdigit(b, j):
            return -1
        if first_diff:
            return first_diff
    return 0


EPOCH_CAP = 10**18
"""Where an epoch stops growing (dpkg's strtol clamps too).  Python refuses int() of a string of
more than 4,300 digits: a hostile version string would raise ValueError instead of comparing."""


def capped_epoch(digits: str) -> int:
    """An epoch written as ASCII digits, as a number at most EPOCH_CAP."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= 18 else EPOCH_CAP


def _split(version: str) -> tuple[int, str, str]:
    epoch = 0
    head, sep, rest = version.partition(":")
    if sep and head.isascii() and head.isdigit():
        epoch, version = capped_epoch(head), rest
    upstream, _, revision = version.rpartition("-")
    if not upstream:
        upstream, revision = revision, ""
    return epoch, upstream, revision


def compare(a: str, b: str) -> int:
    """<0, 0, >0 like ``dpkg --compare-versions a lt/eq/gt b``."""
    ea, ua, ra = _split(a)
    eb, ub, rb = _split(b)
    if ea != eb:
        return ea - eb
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


release_key = functools.cmp_to_key(compare)


def newest(releases: list[str]) -> str | None:
    return max(releases, key=release_key) if releases else None


# ---------------------------------------------------------------------------------------------
# rpm's order (rpmio/rpmvercmp.c rpmvercmp; lib/rpmver.c rpmverCmp for EVRs)


def _rpm_alnum(c: str) -> bool:
    return ("0" <= c <= "9") or ("a" <= c <= "z") or ("A" <= c <= "Z")   # risalnum: ASCII only


def rpmvercmp(a: str, b: str) -> int:
    """-1, 0, 1 like rpm's rpmvercmp: runs of other characters separate segments (``1.0`` ==
    ``1_0``); ``~`` sorts before anything, even the end; ``^`` after the end but before anything
    else; a numeric segment beats an alphabetic one; numbers compare without leading zeros;
    what is left over wins (``1.0a`` > ``1.0``)."""
    if a == b:
        return 0
    i = j = 0
    la, lb = len(a), len(b)
    while i < la or j < lb:
        while i < la and not _rpm_alnum(a[i]) and a[i] not in "~^":
            i += 1
        while j < lb and not _rpm_alnum(b[j]) and b[j] not in "~^":
            j += 1
        ca, cb = a[i] if i < la else "", b[j] if j < lb else ""
        if ca == "~" or cb == "~":
            if ca != "~":
                return 1
            if cb != "~":
                return -1
            i, j = i + 1, j + 1
            continue
        if ca == "^" or cb == "^":
            if not ca:
                return -1
            if not cb:
                return 1
            if ca != "^":
                return 1
            if cb != "^":
                return -1
            i, j = i + 1, j + 1
            continue
        if not (ca and cb):
            break
        numeric = ca.isascii() and ca.isdigit()
        kind = (lambda c: "0" <= c <= "9") if numeric else (lambda c: ("a" <= c <= "z") or ("A" <= c <= "Z"))
        ei, ej = i, j
        while ei < la and kind(a[ei]):
            ei += 1
        while ej < lb and kind(b[ej]):
            ej += 1
        if ej == j:          # segments of different kinds: the numeric one is newer
            return 1 if numeric else -1
        one, two = a[i:ei], b[j:ej]
        if numeric:
            one, two = one.lstrip("0"), two.lstrip("0")
            if len(one) != len(two):
                return 1 if len(one) > len(two) else -1
        if one != two:
            return 1 if one > two else -1
        i, j = ei, ej
    if i >= la and j >= lb:
        return 0
    return -1 if i >= la else 1


def split_evr(evr: str) -> tuple[str | None, str, str | None]:
    """(epoch, version, release) of ``[E:]V[-R]`` as rpm's parseEVR splits it: the epoch is the
    leading digits before a ':' (None without one, "0" when empty), the release what follows
    the last '-' (None without one)."""
    digits = len(evr) - len(evr.lstrip("0123456789"))
    epoch: str | None = None
    version = evr
    if evr[digits:digits + 1] == ":":
        epoch, version = evr[:digits] or "0", evr[digits + 1:]
    head, sep, release = version.rpartition("-")
    return (epoch, head, release) if sep else (epoch, version, None)


def rpm_evr_compare(a: str, b: str) -> int:
    """EVR order as rpm's rpmverCmp (and python-rpm's labelCompare) has it: epoch (absent is
    "0"), version, release, each with rpmvercmp; an absent part is older than a present one."""
    (ea, va, ra), (eb, vb, rb) = split_evr(a), split_evr(b)
    return _compare_values(ea or "0", eb or "0") or _compare_values(va, vb) or _compare_values(ra, rb)


def _compare_values(a: str | None, b: str | None) -> int:
    if a is None or b is None:
        return (a is not None) - (b is not None)
    return rpmvercmp(a, b)


rpm_release_key = functools.cmp_to_key(rpm_evr_compare)


# pacman's order (libalpm version.c alpm_pkg_vercmp): rpm's old algorithm, in the C locale

def _alpm_segments_cmp(a: bytes, b: bytes) -> int:
    """libalpm's rpmvercmp on bytes: no ``~``/``^``; separators are skipped but a different
    separator length decides (``1.0`` < ``1..0``); numeric beats alpha; a leftover alpha loses
    to the end (``1.0a`` < ``1.0``), a leftover number wins."""
    if a == b:
        return 0
    one = ptr1 = two = ptr2 = 0
    la, lb = len(a), len(b)
    alnum, digit, alpha = _ALNUM, _DIGITS, _ALPHA
    while one < la and two < lb:
        while one < la and a[one] not in alnum:
            one += 1
        while two < lb and b[two] not in alnum:
            two += 1
        if not (one < la and two < lb):
            break
        if one - ptr1 != two - ptr2:
            return -1 if one - ptr1 < two - ptr2 else 1
        ptr1, ptr2 = one, two
        kind = digit if a[ptr1] in digit else alpha
        isnum = kind is digit
        while ptr1 < la and a[ptr1] in kind:
            ptr1 += 1
        while ptr2 < lb and b[ptr2] in kind:
            ptr2 += 1
        if two == ptr2:
            return 1 if isnum else -1
        x, y = a[one:ptr1], b[two:ptr2]
        if isnum:
            x, y = x.lstrip(b"0"), y.lstrip(b"0")
            if len(x) != len(y):
                return 1 if len(x) > len(y) else -1
        if x != y:
            return 1 if x > y else -1
        one, two = ptr1, ptr2
    if one >= la and two >= lb:
        return 0
    if (one >= la and not (two < lb and b[two] in alpha)) or (one < la and a[one] in alpha):
        return -1
    return 1


_DIGITS = frozenset(b"0123456789")
_ALPHA = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ALNUM = _DIGITS | _ALPHA


def _alpm_evr(evr: bytes) -> tuple[bytes, bytes, bytes | None]:
    """libalpm's parseEVR: epoch = leading digits before ':' ("0" when absent or empty), release =
    after the last '-' of what follows the epoch digits (None without one)."""
    s = len(evr) - len(evr.lstrip(b"0123456789"))
    dash = evr.rfind(b"-", s)
    if evr[s:s + 1] == b":":
        epoch, version = evr[:s] or b"0", evr[s + 1:]
        dash -= s + 1
    else:
        epoch, version = b"0", evr
    if dash >= 0:
        return epoch, version[:dash], version[dash + 1:]
    return epoch, version, None


def alpm_vercmp(a: str, b: str) -> int:
    """-1, 0, 1 like pacman's ``vercmp`` (alpm_pkg_vercmp): epoch, version, then the release only
    when both have one (``1.0`` == ``1.0-2``)."""
    if a == b:
        return 0
    x = a.encode("utf-8", "surrogateescape")
    y = b.encode("utf-8", "surrogateescape")
    (ea, va, ra), (eb, vb, rb) = _alpm_evr(x), _alpm_evr(y)
    ret = _alpm_segments_cmp(ea, eb) or _alpm_segments_cmp(va, vb)
    if ret == 0 and ra is not None and rb is not None:
        ret = _alpm_segments_cmp(ra, rb)
    return ret


alpm_release_key = functools.cmp_to_key(alpm_vercmp)
