"""The rpm database: which backend a file is (by its magic), the Berkeley DB hash ``Packages``
file of RHEL 8 read page by page, and the installed package a header blob describes.

Backends (rpm's lib/backend/): sqlite ``rpmdb.sqlite`` (RHEL 9/10, Fedora; table
``Packages(hnum, blob)``, read by the host layer through Python's sqlite3), Berkeley DB hash
``Packages`` (RHEL 7/8; key: the header number, 4 bytes in the file's byte order; value: the
blob; key 0 holds rpm's instance counter), ndb ``Packages.db`` (SUSE).  The Berkeley DB reader
follows the on-disk layout of Berkeley DB's db_page.h (meta page, hash buckets, overflow
chains) as rpm's own read-only backend bdb_ro does, bounded: every page number is checked, every
chain is followed at most once.  Sources: docs/formats.md, "The rpm database".
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .rpmheader import (RPMTAG_ARCH, RPMTAG_BASENAMES, RPMTAG_DIRINDEXES, RPMTAG_DIRNAMES, RPMTAG_EPOCH,
                        RPMTAG_INSTALLTIME, RPMTAG_NAME, RPMTAG_OLDFILENAMES, RPMTAG_PROVIDENAME, RPMTAG_RELEASE,
                        RPMTAG_VERSION, Header, RpmHeaderError, parse_header)

SQLITE_MAGIC = b"SQLite format 3\0"
NDB_MAGIC = b"RpmP"
_BDB_HASH_MAGIC = 0x00061561
_BDB_BTREE_MAGIC = 0x00053162

# db_page.h page types and hash item types
P_HASH_UNSORTED = 2
P_OVERFLOW = 7
P_HASHMETA = 8
P_HASH = 13
H_KEYDATA = 1
H_OFFPAGE = 3
_PAGE_HEADER = 26          # lsn 8, pgno 4, prev 4, next 4, entries 2, hf_offset 2, level 1, type 1
MAX_BUCKETS = 1 << 24


class RpmdbError(ValueError):
    """The database file is not one rpm could read (wrong magic, corrupt page, loop)."""


def identify(head: bytes) -> str | None:
    """'sqlite', 'bdb-hash', 'bdb-btree' or 'ndb' from a file's first 512 bytes; None otherwise."""
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(NDB_MAGIC):
        return "ndb"
    if len(head) >= 16:
        for order in ("<", ">"):
            (magic,) = struct.unpack_from(order + "I", head, 12)
            if magic == _BDB_HASH_MAGIC:
                return "bdb-hash"
            if magic == _BDB_BTREE_MAGIC:
                return "bdb-btree"
    return None


# ---------------------------------------------------------------------------------------------
# Berkeley DB hash


@dataclass(frozen=True)
class _HashMeta:
    order: str
    pagesize: int
    last_pgno: int
    max_bucket: int
    spares: tuple[int, ...]


def _hash_meta(page0: bytes) -> _HashMeta:
    if len(page0) < 512:
        raise RpmdbError("shorter than a Berkeley DB meta page")
    for order in ("<", ">"):
        magic, version, pagesize = struct.unpack_from(order + "III", page0, 12)
        if magic == _BDB_HASH_MAGIC:
            break
    else:
        raise RpmdbError("not a Berkeley DB hash database")
    if not 8 <= version <= 10:
        raise RpmdbError(f"unsupported hash version {version}")
    if pagesize < 512 or pagesize > 65536 or pagesize & (pagesize - 1):
        raise RpmdbError(f"bad page size {pagesize}")
    encrypt_alg, ptype, metaflags = page0[24], page0[25], page0[26]
    if ptype != P_HASHMETA:
        raise RpmdbError(f"page 0 is of type {ptype}, not a hash meta page")
    if encrypt_alg or metaflags & 0x01:
        raise RpmdbError("encrypted or checksummed Berkeley DB pages are not rpm's format")
    (last_pgno,) = struct.unpack_from(order + "I", page0, 32)
    (max_bucket,) = struct.unpack_from(order + "I", page0, 72)
    spares = struct.unpack_from(order + "32I", page0, 96)
    if max_bucket >= MAX_BUCKETS:
        raise RpmdbError(f"{max_bucket + 1} hash buckets")
    return _HashMeta(order, pagesize, last_pgno, max_bucket, spares)


class _Pages:
    """Page reads through ``pread(offset, size)``, each checked against the page's own number."""

    def __init__(self, pread: Callable[[int, int], bytes], meta: _HashMeta) -> None:
        self.pread, self.meta = pread, meta

    def get(self, pgno: int, types: tuple[int, ...]) -> bytes:
        m = self.meta
        if not 0 < pgno <= m.last_pgno:
            raise RpmdbError(f"page {pgno} is outside the file (last page {m.last_pgno})")
        page = self.pread(pgno * m.pagesize, m.pagesize)
        if len(page) != m.pagesize:
            raise RpmdbError(f"page {pgno} is truncated")
        (number,) = struct.unpack_from(m.order + "I", page, 8)
        if number != pgno:
            raise RpmdbError(f"page {pgno} says it is page {number}")
        if page[25] not in types:
            raise RpmdbError(f"page {pgno} is of type {page[25]}, expected {types}")
        return page


def bdb_hash_items(pread: Callable[[int, int], bytes], size: int) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of a Berkeley DB hash file, bucket by bucket (db_page.h, hash_page.c)."""
    meta = _hash_meta(pread(0, 512))
    if (meta.last_pgno + 1) * meta.pagesize > size:
        raise RpmdbError(f"the meta page names page {meta.last_pgno}, past the end of the file")
    pages = _Pages(pread, meta)
    seen: set[int] = set()
    for bucket in range(meta.max_bucket + 1):
        pgno = bucket + meta.spares[bucket.bit_length()]
        while pgno:
            if pgno in seen:
                raise RpmdbError(f"page {pgno} is reached twice (a loop in the bucket chains)")
            seen.add(pgno)
            page = pages.get(pgno, (P_HASH, P_HASH_UNSORTED))
            yield from _page_items(page, pages, seen)
            (pgno,) = struct.unpack_from(meta.order + "I", page, 16)


def _page_items(page: bytes, pages: _Pages, seen: set[int]) -> Iterator[tuple[bytes, bytes]]:
    order, pagesize = pages.meta.order, pages.meta.pagesize
    (entries,) = struct.unpack_from(order + "H", page, 20)
    if _PAGE_HEADER + 2 * entries > pagesize or entries % 2:
        raise RpmdbError(f"page with {entries} entries")
    offsets = struct.unpack_from(f"{order}{entries}H", page, _PAGE_HEADER)
    floor = _PAGE_HEADER + 2 * entries
    for i in range(0, entries, 2):
        koff, voff = offsets[i], offsets[i + 1]
        kend = pagesize if i == 0 else offsets[i - 1]
        if not floor <= voff < koff < kend <= pagesize:
            raise RpmdbError(f"item {i // 2} overlaps another or the page header")
        yield _item(page[koff:kend], pages, seen), _item(page[voff:koff], pages, seen)


def _item(raw: bytes, pages: _Pages, seen: set[int]) -> bytes:
    if raw[0] == H_KEYDATA:
        return raw[1:]
    if raw[0] == H_OFFPAGE and len(raw) == 12:
        pgno, length = struct.unpack_from(pages.meta.order + "II", raw, 4)
        return _overflow(pgno, length, pages, seen)
    raise RpmdbError(f"hash item of type {raw[0]} (rpm stores no duplicates)")


def _overflow(pgno: int, length: int, pages: _Pages, seen: set[int]) -> bytes:
    """An off-page value: a chain of P_OVERFLOW pages whose hf_offset is the bytes they hold."""
    order, pagesize = pages.meta.order, pages.meta.pagesize
    if length == 0 or length > (pages.meta.last_pgno + 1) * pagesize:
        raise RpmdbError(f"off-page item of {length} bytes")
    parts, got = [], 0
    while got < length:
        if pgno in seen:
            raise RpmdbError(f"overflow page {pgno} is reached twice")
        seen.add(pgno)
        page = pages.get(pgno, (P_OVERFLOW,))
        (held,) = struct.unpack_from(order + "H", page, 22)
        if held + _PAGE_HEADER > pagesize or got + held > length or (held == 0 and got < length):
            raise RpmdbError(f"overflow page {pgno} holds {held} bytes")
        parts.append(page[_PAGE_HEADER:_PAGE_HEADER + held])
        got += held
        (pgno,) = struct.unpack_from(order + "I", page, 16)
    return b"".join(parts)


def bdb_packages(pread: Callable[[int, int], bytes], size: int) -> Iterator[tuple[int, bytes]]:
    """(header number, blob) of a ``Packages`` hash file; key 0 (rpm's instance counter) skipped."""
    order = _hash_meta(pread(0, 512)).order
    for key, value in bdb_hash_items(pread, size):
        if len(key) != 4:
            raise RpmdbError(f"a key of {len(key)} bytes (rpm's keys are header numbers)")
        (hnum,) = struct.unpack(order + "I", key)
        if hnum:
            yield hnum, value


# ---------------------------------------------------------------------------------------------
# Installed packages


@dataclass(frozen=True)
class InstalledPackage:
    """What the exporter keeps of one header: identity, install time, provides, module files."""

    hnum: int
    name: str
    epoch: int | None
    version: str
    release: str
    arch: str              # "" for gpg-pubkey pseudo-packages (rpm prints "(none)")
    installtime: int | None
    provides: tuple[str, ...]
    module_files: tuple[str, ...]   # paths under /lib/modules/K/{extra,updates,weak-updates}
    kernel_releases: tuple[str, ...] = ()   # K whose in-tree /lib/modules/K/kernel/ it owns files in

    @property
    def evr(self) -> str:
        """[EPOCH:]VERSION-RELEASE, as rpm -q --qf '%{EVR}' prints it."""
        return f"{self.epoch}:{self.version}-{self.release}" if self.epoch is not None else \
            f"{self.version}-{self.release}"

    @property
    def nevra(self) -> str:
        """NAME-[EPOCH:]VERSION-RELEASE.ARCH, rpm's %{NEVRA}."""
        return f"{self.name}-{self.evr}.{self.arch}" if self.arch else f"{self.name}-{self.evr}"


_MODULE_DIR = re.compile(r"^(?:/usr)?/lib/modules/[^/]+/(?:extra|updates|weak-updates)/")
_MODULE_NAME = re.compile(r"\.ko(?:\.[a-z0-9]+)?$")


def installed_package(hnum: int, blob: bytes) -> InstalledPackage:
    """The package one rpmdb blob describes (RpmHeaderError when rpm would refuse the blob)."""
    h = parse_header(blob)
    h.verify_digests()          # rpm skips a header whose digest does not match, and so do we
    name = h.string(RPMTAG_NAME)
    version, release = h.string(RPMTAG_VERSION), h.string(RPMTAG_RELEASE)
    if not name or version is None or release is None:
        raise RpmHeaderError(f"header {hnum} has no NAME, VERSION or RELEASE")
    return InstalledPackage(hnum, name, h.integer(RPMTAG_EPOCH), version, release, h.string(RPMTAG_ARCH) or "",
                            h.integer(RPMTAG_INSTALLTIME), tuple(h.strings(RPMTAG_PROVIDENAME)),
                            tuple(_module_files(h)), _kernel_releases(h))


_KERNEL_DIR = re.compile(r"^(?:/usr)?/lib/modules/([^/]+)/kernel/")


def _kernel_releases(h: Header) -> tuple[str, ...]:
    """The releases whose in-tree modules this package ships (the kernel package of K: SUSE's
    kernel-FLAVOUR): read from DIRNAMES alone, no file list walked."""
    names = h.strings(RPMTAG_DIRNAMES) if RPMTAG_BASENAMES in h else h.strings(RPMTAG_OLDFILENAMES)
    return tuple(sorted({m.group(1) for d in names if (m := _KERNEL_DIR.match(d))}))


def _module_files(h: Header) -> list[str]:
    """Kernel module files the package owns out of tree; only headers with such a directory have
    their file list walked (a host has ~200,000 file names, a handful of module directories)."""
    if RPMTAG_BASENAMES not in h:
        return [p for p in h.strings(RPMTAG_OLDFILENAMES) if _MODULE_DIR.match(p) and _MODULE_NAME.search(p)]
    dirnames = h.strings(RPMTAG_DIRNAMES)
    wanted = {i for i, d in enumerate(dirnames) if _MODULE_DIR.match(d)}
    if not wanted:
        return []
    basenames, indexes = h.strings(RPMTAG_BASENAMES), h.integers(RPMTAG_DIRINDEXES)
    if len(indexes) != len(basenames) or any(i >= len(dirnames) for i in indexes):
        raise RpmHeaderError("BASENAMES, DIRINDEXES and DIRNAMES do not agree")
    return [dirnames[i] + b for i, b in zip(indexes, basenames) if i in wanted and _MODULE_NAME.search(b)]
