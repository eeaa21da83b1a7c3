"""Bounded decompression: the one place that knows compression magic numbers and decoders.

Module files, symvers files and initramfs images are all read through here, so that every
decompression in the exporter has an output bound and fails the same way: a
:class:`DecompressError` with a short stable ``code`` (``ERROR_CODES``) and the input offset
where it happened.  Callers turn it into their own error type, keeping their own codes.

Two interfaces over the same decoders:

- ``open_stream(source, fmt, limit=...)``: one run of adjacent streams of one format (gzip
  members, xz/bzip2 streams, zstd frames, lz4 legacy blocks) read from a ``Source`` and handed out
  in chunks of at most ``CHUNK`` bytes; when ``read`` returns nothing the source is positioned
  just past the run's last byte, where the next segment of an initramfs image begins.
- ``decompress(data, limit)``: all of ``data``, for files read whole (module files, symvers).

Which magics mean what (``MAGICS``): the kernel's lib/decompress.c picks the initramfs
decompressor by the first two bytes (gzip 1f 8b and 1f 9e, bzip2 "BZ", lzma 5d 00, xz fd 37,
lzo 89 4c, lz4 02 21, zstd 28 b5); this table uses the longer magic each format defines (xz's
6-byte header magic, zstd's and lz4 legacy's 4-byte ones, lzop's 9, "BZh", and lzma-alone's
properties byte 0x5D with a dictionary size whose low 16 bits are zero, as every xz/lzma
encoder writes it).  libkmod (libkmod-file.c) reads module files compressed with zstd
(28 b5 2f fd), xz (fd '7zXZ' 00) or gzip (1f 8b) only, and so does the kernel's own module
decompressor; everything else is an uncompressed file to them (``LIBKMOD``).

The lz4 *frame* format (magic 04 22 4d 18, what ``lz4`` writes without ``-l``) is read nowhere
that matters: lib/decompress.c recognises only the legacy magic (02 21), libkmod no lz4 at all,
and symvers files are gzip or xz.  Such an initramfs segment is ``unknown_format``,
as the kernel would fail it.  lzop data is ``unsupported``: the kernel unpacks it, but no
maintained LZO decoder is a dependency, so what it holds is not known (not "damaged").

Bounds besides ``limit``: zstd windows over 128 MiB (libzstd's default limit) and lzma/xz
dictionaries needing more than 256 MiB are refused, so the C libraries' own buffers stay
bounded; more than 1024 empty zstd blocks in a row are ``corrupt`` (valid, but no encoder writes
them, and a run of zero bytes parses as millions of them).  Checksums are those of the formats'
libraries (xz check types are not restricted to the kernel's CRC32/none).
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from dataclasses import dataclass
from collections.abc import Iterator
from typing import BinaryIO, Protocol

import zstandard

__all__ = [
    "CHUNK",
    "ERROR_CODES",
    "LIBKMOD",
    "MAGICS",
    "MAGIC_MAX",
    "BytesSource",
    "DecompressError",
    "FileSource",
    "Magic",
    "Source",
    "Stream",
    "decompress",
    "iter_decompressed",
    "is_magic_prefix",
    "open_stream",
    "sniff",
]

CHUNK = 1 << 18
"""Most decompressed bytes one ``Stream.read`` returns: a stream's memory high-water mark.
256 KiB lists an image as fast as 1 MiB did (zstd's 128 KiB blocks) and, with the zstd input
reads below, keeps ~1.3 MiB less per decoder running (two run at once on a cold scrape)."""

ERROR_CODES = frozenset({"too_large", "truncated", "corrupt", "unknown_format", "unsupported"})

_IN_CHUNK = 1 << 18  # compressed bytes fed to zlib/lzma/bz2 per call
_ZSTD_READ = 1 << 18  # compressed bytes zstd's reader asks for, and block headers peeked at once
_ZSTD_MAX_EMPTY_BLOCKS = 1024  # a 2 GiB run of zero bytes parses as 700 million of them (minutes of CPU)
_ZSTD_MAX_WINDOW = 1 << 27  # zstd's own default limit (128 MiB); --long=27 images still decode
_LZMA_MEMLIMIT = 1 << 28  # xz -9 needs 65 MiB; refuse dictionaries that would take more than this


@dataclass(frozen=True)
class Magic:
    """A compression's magic number; ``libkmod``: kmod (and the kernel's module loader) read
    module files compressed so."""

    magic: bytes
    format: str
    libkmod: bool = False


MAGICS: tuple[Magic, ...] = (
    Magic(b"\x1f\x8b", "gzip", libkmod=True),
    Magic(b"\x1f\x9e", "gzip"),  # "old gzip": lib/decompress.c lists it, zlib rejects the header
    Magic(b"BZh", "bzip2"),
    Magic(b"\x5d\x00\x00", "lzma"),
    Magic(b"\xfd7zXZ\x00", "xz", libkmod=True),
    Magic(b"\x89LZO\x00\r\n\x1a\n", "lzo"),
    Magic(b"\x02\x21\x4c\x18", "lz4"),
    Magic(b"\x28\xb5\x2f\xfd", "zstd", libkmod=True),
)
"""Every compression the kernel's initramfs unpacker recognises (lib/decompress.c)."""

LIBKMOD: tuple[Magic, ...] = tuple(m for m in MAGICS if m.libkmod)
"""The compressions of module files (libkmod-file.c): zstd, xz, gzip."""

MAGIC_MAX = max(len(m.magic) for m in MAGICS)
"""Bytes ``sniff`` needs to tell every format apart."""


def sniff(head: bytes, among: tuple[Magic, ...] = MAGICS) -> str | None:
    """The compression whose magic ``head`` starts with, by content, never by file name."""
    for m in among:
        if head.startswith(m.magic):
            return m.format
    return None


def is_magic_prefix(head: bytes) -> bool:
    """Whether ``head`` could be the start of a magic number cut short."""
    return any(m.magic.startswith(head) for m in MAGICS)


class DecompressError(ValueError):
    """Compressed data that cannot be decompressed within its bounds.

    ``code``: too_large (output over the bound), truncated (input ends inside a stream), corrupt
    (the decoder rejects the data, or bytes follow it), unknown_format (no known format: the
    kernel fails it too), unsupported (a format the kernel reads and the exporter does not: lzo).
    ``offset`` is in the compressed input: for too_large where the run of streams starts, for
    truncated the input's end, otherwise near the fault; ``output_offset`` is how many bytes the
    run had decompressed to by then.
    """

    def __init__(self, code: str, offset: int, detail: str, output_offset: int | None = None) -> None:
        assert code in ERROR_CODES, code
        super().__init__(f"{code} at offset {offset}: {detail}")
        self.code = code
        self.offset = offset
        self.detail = detail
        self.output_offset = output_offset


# --------------------------------------------------------------------------------------------
# Sources: where a stream's compressed bytes come from


class Source(Protocol):
    """Seekable compressed input with the read position in one place (``pos``)."""

    pos: int
    size: int

    def read(self, n: int) -> bytes: ...

    def seek(self, pos: int) -> None: ...

    def peek_at(self, pos: int, n: int) -> bytes: ...


class BytesSource:
    """Compressed data already in memory."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.size = len(data)
        self.pos = 0

    def read(self, n: int) -> bytes:
        data = self._data[self.pos : self.pos + n]
        self.pos += len(data)
        return data

    def seek(self, pos: int) -> None:
        self.pos = pos

    def peek_at(self, pos: int, n: int) -> bytes:
        return self._data[pos : pos + n]


class FileSource:
    """A seekable binary file of known size, read where ``pos`` says."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self._fh = fh
        self.size = size
        self.pos = 0

    def read(self, n: int) -> bytes:
        data = self._fh.read(n)
        self.pos += len(data)
        return data

    def seek(self, pos: int) -> None:
        self._fh.seek(pos)
        self.pos = pos

    def peek_at(self, pos: int, n: int) -> bytes:
        """Read n bytes at pos without moving the logical position."""
        here = self.pos
        self._fh.seek(pos)
        data = self._fh.read(n)
        self._fh.seek(here)
        return data


# --------------------------------------------------------------------------------------------
# Streams: one run of adjacent streams of one format, decompressed in bounded chunks


class Stream:
    """Decompressed bytes of one run of adjacent streams of ``format`` starting at ``start``.

    ``read`` returns at most ``n`` (and ``CHUNK``) bytes, b"" at the end of the run (the source
    is then just past its last byte), and raises DecompressError; more than ``limit`` bytes of
    output in all is ``too_large``.  Chunks may be views of a reused buffer: copy what you keep.
    ``unterminated``: the run stopped at the end of the input without an end marker (lz4
    legacy has none), so a cut there cannot be told from a complete run.
    """

    format = ""

    def __init__(self, source: Source, limit: int) -> None:
        self.source = source
        self.limit = limit
        self.start = source.pos
        self.total = 0
        self.unterminated = False
        self._ended = False

    def read(self, n: int = CHUNK) -> bytes | memoryview:
        if self._ended:
            return b""
        out = self._read(max(1, min(n, CHUNK, self.limit - self.total + 1)))
        self._ended = not out
        self.total += len(out)
        if self.total > self.limit:
            raise DecompressError("too_large", self.start, f"{self.format} data decompresses to more than "
                                  f"{self.limit} bytes", self.total)
        return out

    def _read(self, n: int) -> bytes | memoryview:
        raise NotImplementedError

    def _next_is_same(self) -> bool:
        """Whether another stream of this format starts at the read position."""
        return sniff(self.source.peek_at(self.source.pos, MAGIC_MAX)) == self.format

    def _truncated(self) -> DecompressError:
        return DecompressError("truncated", self.source.size, f"{self.format} stream ends before its end marker",
                               self.total)

    def _corrupt(self, at: int, exc: Exception) -> DecompressError:
        return DecompressError("corrupt", at, f"{self.format} data is corrupt near here: {exc}", self.total)


class _GzipStream(Stream):
    """gzip members via zlib; adjacent members form one run (gzip -d reads them as one file)."""

    format = "gzip"

    def __init__(self, source: Source, limit: int) -> None:
        super().__init__(source, limit)
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def _read(self, n: int) -> bytes:
        src = self.source
        while True:
            z = self._z
            if z.eof:
                src.seek(src.pos - len(z.unused_data))
                if not self._next_is_same():
                    return b""
                self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
                continue
            data = z.unconsumed_tail or src.read(_IN_CHUNK)
            try:
                out = z.decompress(data, n)
            except zlib.error as exc:
                raise self._corrupt(src.pos - len(data), exc) from exc
            if out:
                return out
            if not data and not z.eof:
                raise self._truncated()


class _BufferingStream(Stream):
    """lzma/xz/bzip2: the stdlib decompressors keep unconsumed input themselves."""

    def __init__(self, source: Source, limit: int, fmt: str) -> None:
        self.format = fmt
        super().__init__(source, limit)
        self._d = self._new()

    def _new(self) -> lzma.LZMADecompressor | bz2.BZ2Decompressor:
        if self.format == "bzip2":
            return bz2.BZ2Decompressor()
        fmt = lzma.FORMAT_XZ if self.format == "xz" else lzma.FORMAT_ALONE
        return lzma.LZMADecompressor(format=fmt, memlimit=_LZMA_MEMLIMIT)

    def _read(self, n: int) -> bytes:
        src = self.source
        while True:
            d = self._d
            if d.eof:
                src.seek(src.pos - len(d.unused_data))
                if not self._next_is_same():
                    return b""
                self._d = self._new()
                continue
            data = src.read(_IN_CHUNK) if d.needs_input else b""
            if d.needs_input and not data:
                raise self._truncated()
            try:
                out = d.decompress(data, n)
            except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
                raise self._corrupt(src.pos - len(data), exc) from exc
            if out:
                return out


class _Window:
    """The bytes [pos, end) of a source as a file for zstandard's stream_reader."""

    def __init__(self, source: Source, end: int) -> None:
        self._source = source
        self._end = end

    def read(self, n: int = -1) -> bytes:
        left = self._end - self._source.pos
        if n < 0 or n > left:
            n = left
        return self._source.read(n) if n > 0 else b""

    @property
    def done(self) -> bool:
        return self._source.pos >= self._end


def _zstd_frame_end(src: Source, start: int) -> tuple[int, int]:
    """(where the zstd frame at ``start`` ends, its declared content size or -1), from its
    header and block headers (RFC 8878 section 3.1.1).

    python-zstandard cannot say how much input a frame consumed, and feeding it more would lose the
    bytes after the frame (a gzip overlay, NUL padding).  Walking the 3-byte block headers is cheap.
    """
    head = src.peek_at(start, 18)
    try:
        pos = start + zstandard.frame_header_size(head)
        params = zstandard.get_frame_parameters(head)
    except zstandard.ZstdError as exc:
        if len(head) < 18 and start + len(head) == src.size:
            raise DecompressError("truncated", src.size, "zstd frame header cut off") from exc
        raise DecompressError("corrupt", start, f"bad zstd frame header: {exc}") from exc
    buf, buf_at = b"", pos  # block headers are read from 1 MiB windows, not one syscall each
    empty = 0  # empty blocks in a row: valid, but no encoder writes runs of them; zeros look like them
    while True:
        if pos + 3 > buf_at + len(buf):
            buf, buf_at = src.peek_at(pos, _ZSTD_READ), pos
        raw = buf[pos - buf_at : pos - buf_at + 3]
        if len(raw) < 3:
            raise DecompressError("truncated", src.size, "zstd frame ends before its last block")
        value = int.from_bytes(raw, "little")
        block_type = (value >> 1) & 3
        if block_type == 3:
            raise DecompressError("corrupt", pos, "reserved zstd block type")
        pos += 3 + (1 if block_type == 1 else value >> 3)
        if value & 1:
            break
        empty = empty + 1 if block_type < 2 and value >> 3 == 0 else 0
        if empty > _ZSTD_MAX_EMPTY_BLOCKS:
            raise DecompressError("corrupt", pos, f"more than {_ZSTD_MAX_EMPTY_BLOCKS} empty zstd blocks in a row")
    pos += 4 if params.has_checksum else 0
    if pos > src.size:
        raise DecompressError("truncated", src.size, "zstd frame ends past the end of the input")
    declared = -1 if params.content_size == zstandard.CONTENTSIZE_UNKNOWN else params.content_size
    return pos, declared


class _ZstdStream(Stream):
    """zstd frames, decompressed into one reused buffer (readinto: no per-chunk allocation).

    A frame that declares a content size over what is left of the bound is ``too_large`` before
    any of it is decoded (libzstd holds a frame to its declared size)."""

    format = "zstd"

    def __init__(self, source: Source, limit: int) -> None:
        super().__init__(source, limit)
        self._dctx = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
        self._scratch = memoryview(bytearray(CHUNK))
        self._start_frame()

    def _start_frame(self) -> None:
        self._frame_at = self.source.pos
        end, declared = _zstd_frame_end(self.source, self._frame_at)
        if declared > self.limit - self.total:
            raise DecompressError("too_large", self.start, f"a zstd frame at offset {self._frame_at} declares "
                                  f"{declared} bytes, more than the {self.limit}-byte bound allows", self.total)
        self._window = _Window(self.source, end)
        self._reader = self._dctx.stream_reader(self._window, read_size=_ZSTD_READ, read_across_frames=False,
                                                closefd=False)

    def _read(self, n: int) -> memoryview:
        while True:
            try:
                got = self._reader.readinto(self._scratch[:n])
            except zstandard.ZstdError as exc:
                raise DecompressError("corrupt", self._frame_at, f"zstd data is corrupt: {exc}", self.total) from exc
            if got:
                return self._scratch[:got]
            if not self._window.done:
                raise DecompressError("corrupt", self._frame_at, "zstd frame ended before its last block", self.total)
            if not self._next_is_same():
                return self._scratch[:0]
            self._start_frame()


class _Lz4LegacyStream(Stream):
    """lz4 legacy (lz4 -l): 4-byte LE block sizes, each block an independent <= 8 MiB LZ4 block.

    The format has no end marker: the run ends at end of input, at a size of 0 (NUL padding) or at
    a value no block can have (the next format's magic), like lz4's own legacy reader.  A block
    is handed out in pieces of at most ``n`` bytes.
    """

    format = "lz4"
    _MAGIC = b"\x02\x21\x4c\x18"
    _BLOCK = 8 << 20
    _BOUND = _BLOCK + _BLOCK // 255 + 16  # LZ4_COMPRESSBOUND(8 MiB)

    def __init__(self, source: Source, limit: int) -> None:
        super().__init__(source, limit)
        self._block = memoryview(b"")
        self._i = 0

    def _read(self, n: int) -> memoryview:
        if self._i >= len(self._block):
            self._block, self._i = memoryview(b""), 0  # let the last block go before the next is made
            self._block = memoryview(self._next_block())
        piece = self._block[self._i : self._i + n]
        self._i += len(piece)
        return piece

    def _next_block(self) -> bytes:
        src = self.source
        while True:
            at = src.pos
            head = src.read(4)
            if head == self._MAGIC:
                continue
            size = int.from_bytes(head, "little")
            if len(head) < 4 or size == 0 or size > self._BOUND:
                src.seek(at)
                self.unterminated = len(head) < 4
                return b""
            block = src.read(size)
            if len(block) < size:
                raise DecompressError("truncated", src.size, "lz4 block extends past the end of the input", self.total)
            import lz4.block   # legacy lz4 initramfs images only

            try:
                out = lz4.block.decompress(block, uncompressed_size=self._BLOCK)
            except lz4.block.LZ4BlockError as exc:
                raise DecompressError("corrupt", at, f"lz4 block is corrupt: {exc}", self.total) from exc
            if out:
                return out


def open_stream(source: Source, fmt: str, *, limit: int) -> Stream:
    """A Stream of the run of ``fmt`` streams at the source's position, bounded to ``limit``
    bytes of output.  Raises DecompressError (a bad zstd frame header is found here already)."""
    if fmt == "zstd":
        return _ZstdStream(source, limit)
    if fmt == "gzip":
        return _GzipStream(source, limit)
    if fmt == "lz4":
        return _Lz4LegacyStream(source, limit)
    if fmt in ("xz", "lzma", "bzip2"):
        return _BufferingStream(source, limit, fmt)
    if fmt == "lzo":  # python-lzo would be a dependency for a format no distribution defaults to
        raise DecompressError("unsupported", source.pos, "lzo (lzop) data: the kernel unpacks it "
                              "(CONFIG_RD_LZO), the exporter has no LZO decoder")
    raise DecompressError("unknown_format", source.pos, f"no decoder for {fmt!r}")


# --------------------------------------------------------------------------------------------
# One shot


def decompress(data: bytes, limit: int, fmt: str | None = None) -> bytes:
    """All of ``data`` decompressed, at most ``limit`` bytes, or DecompressError.

    ``fmt`` defaults to what the magic says.  Every byte must belong to the data: adjacent
    streams of the format are read as one (gzip members, zstd frames, xz streams with NUL
    stream padding between and after them); anything else after the end is ``corrupt``.
    Memory: the output so far plus one chunk, so a bomb stops at ``limit`` + 1 byte; a good
    result is briefly held twice, as chunks and joined.
    """
    fmt = fmt or sniff(data[:MAGIC_MAX])
    if fmt is None:
        raise DecompressError("unknown_format", 0, f"no known compression magic ({data[:6].hex()})")
    parts = [bytes(chunk) for chunk in iter_decompressed(BytesSource(data), limit, fmt)]
    return parts[0] if len(parts) == 1 else b"".join(parts)


def iter_decompressed(src: Source, limit: int, fmt: str) -> Iterator[bytes | memoryview]:
    """``decompress`` as chunks of at most ``CHUNK`` bytes, from any Source (a file too): for a
    module file too big to hold decompressed, read in passes (exporter.formats.modview).
    Chunks may be views of a reused buffer: copy what you keep."""
    total = 0
    while True:
        try:
            stream = open_stream(src, fmt, limit=limit - total)
            while chunk := stream.read():
                yield chunk
        except DecompressError as exc:
            if exc.code != "too_large" or not total:
                raise
            raise DecompressError("too_large", 0, f"{fmt} data decompresses to more than {limit} bytes",
                                  total + (exc.output_offset or 0)) from None
        total += stream.total
        if fmt == "xz":
            src.seek(_source_past_nuls(src, src.pos))
        if src.pos >= src.size:
            return
        if sniff(src.peek_at(src.pos, MAGIC_MAX)) != fmt:
            raise DecompressError("corrupt", src.pos, f"{src.size - src.pos} bytes of trailing garbage after "
                                  f"the {fmt} data", total)


def _source_past_nuls(src: Source, pos: int) -> int:
    """The first offset at or after ``pos`` that is not a NUL byte (a window at a time)."""
    while pos < src.size:
        window = src.peek_at(pos, _IN_CHUNK)
        if not window:
            break
        kept = window.lstrip(b"\0")
        pos += len(window) - len(kept)
        if kept:
            break
    return pos


def adler32(data: bytes) -> int:
    """zlib's Adler-32 checksum (RFC 1950), for formats that checksum their records with it
    (rpm's ndb blobs): zlib stays imported here only, where its decompressor is bounded."""
    return zlib.adler32(data)
