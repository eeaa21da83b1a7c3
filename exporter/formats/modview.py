"""Random access to a module's decompressed bytes without holding them all.

The module parser (exporter.formats.module) needs a few hundred bytes at each end (ELF header,
signature trailer), the section headers, a handful of small sections (.modinfo, __versions,
.gnu.linkonce.this_module, .symtab and its strings) and one digest over everything before the
signature.  A vendor module is tens of MiB (nvidia.ko), almost all .text/.rodata the exporter
never looks at, so it reads through a view:

- ``BytesView``: bytes already in memory (tests, callers that have the bytes anyway);
- ``FileView``: an uncompressed module open in a file: a seek and a bounded read per piece, the
  digest in ``CHUNK``-sized reads;
- ``SparseView``: a compressed module.  Its decompressed bytes cannot be sought, so they are
  streamed (``stream_pass``) and only the ranges asked for are kept; a read anywhere else raises
  ``Missing`` with the range, and the caller streams once more to capture it.  The first pass
  keeps the ELF header, the tail (signature trailer) and a window ending at the section headers
  (.shstrtab sits just before them in every ld -r output); the second keeps the sections the
  parser needs and hashes the signed content, with the digest the signature names.  A module
  that decompresses to at most ``WHOLE_MAX`` is kept whole by the first pass instead (most DKMS
  modules): one decompression, then a BytesView.

Peak memory is the pieces kept plus one decompressed chunk (or WHOLE_MAX), never the size of a
big module.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from .decompress import CHUNK, FileSource, iter_decompressed

HEADER = 64
"""Bytes of an ELF64 header (an ELF32 one is 52): the first capture of every pass."""
TAIL = 64 * 1024
"""Decompressed bytes kept from the end: the 40-byte trailer and the PKCS#7 blob before it
(a few hundred bytes to a few KiB; a longer blob costs one more pass, not a wrong answer)."""
BEFORE_SHDRS = 256 * 1024
"""Bytes kept just before the section headers on the first pass: .shstrtab (and often .strtab)."""
WHOLE_MAX = 2 * 1024 * 1024
"""A compressed module that decompresses to at most this is kept whole by the first pass, and
parsed from memory: one decompression instead of two.  Most DKMS modules are 0.1-2 MiB
decompressed; the big ones (nvidia.ko, zfs.ko) stay streamed, so the bound is also the most
memory this costs."""


class Missing(Exception):
    """A read of [start, end) from a SparseView that did not capture it."""

    def __init__(self, start: int, end: int) -> None:
        super().__init__(f"bytes {start}..{end} were not captured")
        self.start, self.end = start, end


class View(Protocol):
    """Decompressed module bytes, ``size`` long, read a piece at a time."""

    size: int

    def pread(self, offset: int, n: int) -> bytes: ...


class BytesView:
    def __init__(self, data: bytes) -> None:
        self._mv = memoryview(data)
        self.size = len(data)

    def pread(self, offset: int, n: int) -> bytes:
        return bytes(self._mv[offset : offset + n])

    def chunks(self, end: int) -> Iterator[memoryview]:
        for start in range(0, end, CHUNK):
            yield self._mv[start : min(end, start + CHUNK)]


class FileView:
    """An uncompressed module file of ``size`` bytes open in ``fh`` (exporter.host.reader)."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self._fh = fh
        self.size = size

    def pread(self, offset: int, n: int) -> bytes:
        n = max(0, min(n, self.size - offset))
        self._fh.seek(offset)
        data = self._fh.read(n)
        if len(data) != n:
            raise OSError(f"short read at offset {offset}: the file shrank while it was read")
        return data

    def chunks(self, end: int) -> Iterator[bytes]:
        self._fh.seek(0)
        pos = 0
        while pos < end:
            data = self._fh.read(min(CHUNK, end - pos))
            if not data:
                raise OSError(f"short read at offset {pos}: the file shrank while it was read")
            pos += len(data)
            yield data


@dataclass
class SparseView:
    """The ranges of a decompressed stream that a pass captured, ``size`` bytes in all."""

    size: int
    pieces: dict[int, bytes] = field(default_factory=dict)   # start -> bytes

    def has(self, start: int, end: int) -> bool:
        return any(s <= start and end <= s + len(p) for s, p in self.pieces.items())

    def pread(self, offset: int, n: int) -> bytes:
        end = min(offset + n, self.size)
        for s, p in self.pieces.items():
            if s <= offset and end <= s + len(p):
                return p[offset - s : end - s]
        raise Missing(offset, end)


@dataclass(frozen=True)
class Digest:
    """Hash [0, end) with hashlib's ``name`` during a pass."""

    name: str
    end: int


@dataclass
class PassResult:
    size: int
    pieces: dict[int, bytes]
    digest: bytes | None
    whole: bytearray | None = None     # every decompressed byte, when asked for and within the bound


def stream_pass(fh: BinaryIO, size: int, fmt: str, limit: int, ranges: list[tuple[int, int]], *,
                tail: int = 0, digest: Digest | None = None,
                grow: Callable[[bytes], list[tuple[int, int]]] | None = None, whole_max: int = 0) -> PassResult:
    """Decompress the ``fmt`` file in ``fh`` once, keeping ``ranges`` (and the last ``tail``
    bytes) and hashing per ``digest``.  ``grow(header)`` is called once the first HEADER bytes
    are known and may add ranges (the section headers' window) not yet streamed past.  With
    ``whole_max``, every byte is kept too while the stream stays within it (``whole``).
    Raises DecompressError like exporter.formats.decompress.decompress."""
    ends: dict[int, int] = {}
    for start, end in ranges:
        if end > start:
            ends[start] = max(end, ends.get(start, 0))
    wanted = {start: bytearray() for start in ends}
    head = bytearray()
    hasher = hashlib.new(digest.name) if digest else None
    kept = bytearray()
    whole: bytearray | None = bytearray() if whole_max else None
    pos = 0
    source = FileSource(fh, size)
    source.seek(0)
    for chunk in iter_decompressed(source, limit, fmt):
        n = len(chunk)
        if whole is not None:
            if pos + n <= whole_max:
                whole += chunk
            else:
                whole = None     # too big to hold: streamed like any other
        if grow is not None and len(head) < HEADER:
            head += chunk[: HEADER - len(head)]
            if len(head) >= HEADER or n == 0:
                for start, end in grow(bytes(head)):
                    if start >= pos and end > start and start not in wanted:
                        wanted[start], ends[start] = bytearray(), end
                grow = None
        for start, buf in wanted.items():
            lo, hi = max(start, pos), min(ends[start], pos + n)
            if lo < hi:
                buf += chunk[lo - pos : hi - pos]
        if hasher is not None and pos < digest.end:
            hasher.update(chunk[: digest.end - pos])
        if tail:
            kept += chunk[-tail:]
            if len(kept) > tail:
                del kept[: len(kept) - tail]
        pos += n
    pieces = {start: bytes(buf) for start, buf in wanted.items() if len(buf) == min(ends[start], pos) - start}
    if tail and kept:
        pieces[pos - len(kept)] = bytes(kept)
    return PassResult(pos, pieces, hasher.digest() if hasher is not None and pos >= digest.end else None, whole)


def shdr_window(header: bytes) -> list[tuple[int, int]]:
    """The section header table and BEFORE_SHDRS bytes before it, from an ELF header (nothing
    for a header too damaged to say; the parser then reports it)."""
    if len(header) < 52 or header[:4] != b"\x7fELF" or header[4] not in (1, 2) or header[5] not in (1, 2):
        return []
    end = "<" if header[5] == 1 else ">"
    if header[4] == 2:
        (shoff,) = struct.unpack_from(end + "Q", header, 0x28)
        shentsize, shnum = struct.unpack_from(end + "HH", header, 0x3A)
    else:
        (shoff,) = struct.unpack_from(end + "I", header, 0x20)
        shentsize, shnum = struct.unpack_from(end + "HH", header, 0x2E)
    return [(max(HEADER, shoff - BEFORE_SHDRS), shoff + shentsize * shnum)]
