"""rpm's ndb package file, ``Packages.db`` (SUSE: SLE 15, openSUSE Leap and Tumbleweed keep it in
``/usr/lib/sysimage/rpm``), read as rpm's lib/backend/ndb/rpmpkg.c reads it, without its lock.

Layout (all numbers little-endian 32-bit): a 32-byte file header (``RpmP``, version 0,
generation, slot pages, next package index), then ``slotnpages`` pages of 4096 bytes of 16-byte
slots (``Slot``, package index, block offset, block count; offset 0 is a free slot) after the
header's two slot places, then the blobs in 16-byte blocks: a 16-byte head (``BlbS``, package
index, generation, length), the header blob, zero padding, and in the last 12 bytes of the
blob's blocks a tail (Adler-32 of head + blob + padding, length, ``BlbE``).  The package index
is rpm's header number (what ``%{DBINSTANCE}`` prints).  Bounded: the file is read through the
given ``pread``, every slot is checked against the file size before its blob is read.
Sources: docs/formats.md, "The rpm database".
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

from .decompress import adler32

MAGIC = b"RpmP"
SLOT_MAGIC = b"Slot"
BLOB_HEAD = b"BlbS"
BLOB_TAIL = b"BlbE"
HEADER_SIZE = 32
SLOT_SIZE = 16
BLK_SIZE = 16
PAGE_SIZE = 4096
MAX_SLOT_PAGES = 4096           # 1M slots: far above any package count
MAX_BLOB = 256 * 1024 * 1024    # rpm's header size limit (headerImport refuses larger)


class NdbError(ValueError):
    """The file is not one rpm's ndb backend would open (magic, version, a bad slot)."""


def ndb_slots(pread: Callable[[int, int], bytes], size: int) -> list[tuple[int, int, int]]:
    """(package index, block offset, block count) of every used slot, as rpmpkgReadSlots checks
    them: a slot without its magic, a blob past the end of the file or inside the slot area,
    a zero index or count fail the whole file (rpm refuses to open it then)."""
    head = pread(0, HEADER_SIZE)
    if len(head) < HEADER_SIZE or head[:4] != MAGIC:
        raise NdbError("not an ndb Packages.db (no RpmP header)")
    version, _generation, slotnpages, _nextpkgidx = struct.unpack_from("<IIII", head, 4)
    if version != 0:
        raise NdbError(f"ndb version {version}, rpm reads version 0")
    if size % BLK_SIZE:
        raise NdbError(f"size {size} is not a multiple of {BLK_SIZE}")
    if not 0 < slotnpages <= MAX_SLOT_PAGES or slotnpages * PAGE_SIZE > size:
        raise NdbError(f"{slotnpages} slot pages in a file of {size} bytes")
    fileblks = size // BLK_SIZE
    minblkoff = slotnpages * (PAGE_SIZE // BLK_SIZE)
    slots = []
    for page in range(slotnpages):
        data = pread(page * PAGE_SIZE, PAGE_SIZE)
        if len(data) != PAGE_SIZE:
            raise NdbError(f"slot page {page} is short")
        for off in range(HEADER_SIZE if page == 0 else 0, PAGE_SIZE, SLOT_SIZE):
            if data[off:off + 4] != SLOT_MAGIC:
                raise NdbError(f"slot at {page * PAGE_SIZE + off} has no Slot magic")
            pkgidx, blkoff, blkcnt = struct.unpack_from("<III", data, off + 4)
            if not blkoff:
                continue
            if blkoff + blkcnt > fileblks:
                raise NdbError(f"package {pkgidx}: blob past the end of the file (truncated database)")
            if not pkgidx or not blkcnt or blkoff < minblkoff:
                raise NdbError(f"bad slot at {page * PAGE_SIZE + off}")
            slots.append((pkgidx, blkoff, blkcnt))
    return slots


def read_blob(pread: Callable[[int, int], bytes], pkgidx: int, blkoff: int, blkcnt: int) -> bytes:
    """One package's header blob (rpmpkgReadBlob), its head, length and tail checked and its
    Adler-32 verified (rpm --verifydb's check; a blob that fails it is corrupt)."""
    if blkcnt < (16 + 12 + BLK_SIZE - 1) // BLK_SIZE:
        raise NdbError(f"package {pkgidx}: blob of {blkcnt} blocks")
    raw = pread(blkoff * BLK_SIZE, blkcnt * BLK_SIZE)
    if len(raw) != blkcnt * BLK_SIZE:
        raise NdbError(f"package {pkgidx}: short blob")
    magic, idx, _generation, length = struct.unpack_from("<4sIII", raw, 0)
    if magic != BLOB_HEAD or idx != pkgidx:
        raise NdbError(f"package {pkgidx}: bad blob head")
    if length > MAX_BLOB or blkcnt != (16 + length + 12 + BLK_SIZE - 1) // BLK_SIZE:
        raise NdbError(f"package {pkgidx}: blob length {length} does not fit {blkcnt} blocks")
    adler, tail_len, tail = struct.unpack_from("<II4s", raw, len(raw) - 12)
    if tail != BLOB_TAIL or tail_len != length:
        raise NdbError(f"package {pkgidx}: bad blob tail")
    if adler32(raw[:len(raw) - 12]) != adler:
        raise NdbError(f"package {pkgidx}: Adler-32 mismatch")
    return raw[16:16 + length]


def ndb_packages(pread: Callable[[int, int], bytes], size: int) -> Iterator[tuple[int, bytes | NdbError]]:
    """(header number, blob or the blob's error) for every package, in header-number order
    (rpmpkgList).  A file-level problem raises NdbError; one bad blob is that package's error."""
    for pkgidx, blkoff, blkcnt in sorted(ndb_slots(pread, size)):
        try:
            yield pkgidx, read_blob(pread, pkgidx, blkoff, blkcnt)
        except NdbError as exc:
            yield pkgidx, exc
