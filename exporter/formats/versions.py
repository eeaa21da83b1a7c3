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


def _split(version: str) -> tuple[int, str, str]:
    epoch = 0
    head, sep, rest = version.partition(":")
    if sep and head.isdigit():
        epoch, version = int(head), rest
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
