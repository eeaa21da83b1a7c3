"""Streaming reader for initramfs images: which files would the kernel unpack from this image?

An initramfs image is a concatenation of newc/crc cpio archives, some stored as they are (early
microcode, ACPI tables), most compressed (gzip, zstd, xz, lzma, lz4 legacy, bzip2), with runs of NUL
bytes between them.  ``list_image`` walks it the way the kernel's ``unpack_to_rootfs`` does and
returns the entry names exactly as ``lsinitramfs`` prints them, without writing anything to disk and
without ever holding more than a few MiB of decompressed data: file contents are decompressed into a
reused scratch buffer and dropped by byte count.  Every way an image can be broken is an
``InitramfsError`` carrying a code and the byte offset, never a shorter listing.

Where lsinitramfs and the kernel disagree, this follows the kernel, because the question is what
the booted system gets.  lsinitramfs pipes everything after the early archives through one
decompressor into one ``cpio -i --list``, which stops at the first TRAILER!!!; so it omits an
overlay appended after the main archive (mkinitramfs' ``catenate_cpiogz``) and the second of two
uncompressed archives written back to back without NUL padding.  Both are listed here.  Names are
normalised the way that cpio prints them (leading ``/`` and ``../`` prefixes dropped).

Not read: lzop segments (no maintained LZO decoder is a dependency; ``unknown_format``), and the
crc format's checksums (the kernel ignores them too).  The xz check type is not enforced either,
although the kernel only accepts CRC32/none.

Layout and sources: docs/formats.md, "Initramfs images" (linux init/initramfs.c,
lib/decompress.c, initramfs-tools' unmkinitramfs, dracut's skipcpio).
"""

from __future__ import annotations

import bz2
import errno
import lzma
import os
import posixpath
import re
import stat
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import lz4.block
import zstandard

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_UNCOMPRESSED",
    "ERROR_CODES",
    "ImageListing",
    "InitramfsError",
    "Segment",
    "list_image",
    "module_names",
]

# Real images: Debian 12 MODULES=most ~ 200 MiB and ~5,000 entries; dracut no-hostonly with
# firmware ~ 500 MiB.  The bounds are generous for those and still stop a bomb within seconds.
DEFAULT_MAX_UNCOMPRESSED = 2 * 1024**3
DEFAULT_MAX_ENTRIES = 200_000

ERROR_CODES = frozenset(
    {"truncated", "corrupt", "too_large", "too_many_entries", "unknown_format", "empty", "not_a_file"}
)

_PATH_MAX = 4096  # the kernel skips longer names; no real tool writes one
_IN_CHUNK = 1 << 20  # compressed bytes read from the image per call
_OUT_CHUNK = 1 << 20  # decompressed bytes asked for per call: the memory high-water mark
_ZSTD_MAX_EMPTY_BLOCKS = 1024  # a 2 GiB run of zero bytes parses as 700 million of them (minutes of CPU)
_ZSTD_MAX_WINDOW = 1 << 27  # zstd's own default limit (128 MiB); --long=27 images still decode
_LZMA_MEMLIMIT = 1 << 28  # xz -9 needs 65 MiB; refuse dictionaries that would take more than this
_CPIO_HEADER = re.compile(rb"07070[12][0-9A-Fa-f]{104}")
_TRAILER = b"TRAILER!!!"

# (magic, format) as the kernel's lib/decompress.c recognises them; lzma-alone by props 0x5D + dict.
_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\x1f\x9e", "gzip"),
    (b"BZh", "bzip2"),
    (b"\x5d\x00\x00", "lzma"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x89LZO\x00\r\n\x1a\n", "lzo"),
    (b"\x02\x21\x4c\x18", "lz4"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


class InitramfsError(Exception):
    """The image cannot be listed completely; ``code`` says why, ``offset`` where (image bytes).

    For a fault inside a compressed segment, ``offset`` is where that segment starts in the image
    and ``stream_offset`` the position in its decompressed bytes; otherwise ``stream_offset`` is None.
    """

    def __init__(self, code: str, offset: int, detail: str, stream_offset: int | None = None) -> None:
        assert code in ERROR_CODES, code
        self.code = code
        self.offset = offset
        self.stream_offset = stream_offset
        self.detail = detail
        where = f"image offset {offset}"
        if stream_offset is not None:
            where += f", decompressed offset {stream_offset}"
        super().__init__(f"initramfs {code} at {where}: {detail}")


@dataclass(frozen=True)
class Segment:
    """One archive run in the image: an uncompressed cpio, or adjacent streams of one compression."""

    offset: int
    compression: str  # none gzip zstd xz lzma lz4 bzip2 lzo
    length: int = 0  # bytes of the image it occupies (NUL padding after it excluded)
    uncompressed_bytes: int = 0


@dataclass(frozen=True)
class ImageListing:
    """Every entry of the image in archive order, named as ``lsinitramfs`` prints it."""

    names: tuple[str, ...]
    segments: tuple[Segment, ...]
    entries: int
    uncompressed_bytes: int
    modes: tuple[int, ...] = ()  # st_mode per entry, parallel to names
    sizes: tuple[int, ...] = ()  # cpio filesize per entry (symlinks: target length)
    image_bytes: int = 0

    @property
    def compression(self) -> str:
        """The main (last compressed, else last) segment's compression, for an info label."""
        compressed = [s.compression for s in self.segments if s.compression != "none"]
        return compressed[-1] if compressed else (self.segments[-1].compression if self.segments else "none")


# --------------------------------------------------------------------------------------------
# The image file


class _Image:
    """A regular file opened for listing, with the logical read position kept in one place."""

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

    def skip_nuls(self) -> None:
        """Move past a run of NUL padding (between archives, as the kernel does).

        Holes of a sparse file are NULs that need no reading: SEEK_DATA jumps over them, so a
        2 GiB sparse file named like an image is not read byte by byte."""
        try:
            self.seek(max(self.pos, self._fh.seek(self.pos, os.SEEK_DATA)))
        except OSError as exc:
            if exc.errno == errno.ENXIO:   # nothing but a hole up to the end
                self.seek(self.size)
                return
            self.seek(self.pos)          # no SEEK_DATA here (EINVAL): read the NULs
        while self.pos < self.size:
            block = self._fh.read(65536)
            stripped = block.lstrip(b"\0")
            if stripped:
                self.seek(self.pos + len(block) - len(stripped))
                return
            self.pos += len(block)


# --------------------------------------------------------------------------------------------
# Decompressors: each reads one run of adjacent streams of its format from the image and hands
# out decompressed bytes in bounded chunks; b"" means the run ended and the image position is just
# past its last byte.


class _Decoder(Protocol):
    def read(self, limit: int) -> bytes | memoryview: ...


class _Faults:
    """Builds errors for one compressed segment."""

    def __init__(self, img: _Image, fmt: str) -> None:
        self.img = img
        self.fmt = fmt

    def truncated(self) -> InitramfsError:
        return InitramfsError("truncated", self.img.size, f"{self.fmt} stream ends before its end marker")

    def corrupt(self, at: int, exc: Exception) -> InitramfsError:
        return InitramfsError("corrupt", at, f"{self.fmt} data is corrupt near here: {exc}")


class _GzipDecoder:
    """gzip members via zlib; several adjacent members form one run (gzip -d does the same)."""

    magic = (b"\x1f\x8b", b"\x1f\x9e")

    def __init__(self, img: _Image) -> None:
        self._img = img
        self._faults = _Faults(img, "gzip")
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def read(self, limit: int) -> bytes:
        img = self._img
        while True:
            z = self._z
            if z.eof:
                img.seek(img.pos - len(z.unused_data))
                if not img.peek_at(img.pos, 2).startswith(self.magic):
                    return b""
                self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
                continue
            data = z.unconsumed_tail or img.read(_IN_CHUNK // 4)
            try:
                out = z.decompress(data, limit)
            except zlib.error as exc:
                raise self._faults.corrupt(img.pos - len(data), exc) from exc
            if out:
                return out
            if not data and not z.eof:
                raise self._faults.truncated()


class _BufferingDecoder:
    """lzma/xz/bzip2: the stdlib decompressors keep unconsumed input themselves."""

    def __init__(self, img: _Image, fmt: str) -> None:
        self._img = img
        self._fmt = fmt
        self._faults = _Faults(img, fmt)
        self._d = self._new()

    def _new(self) -> lzma.LZMADecompressor | bz2.BZ2Decompressor:
        if self._fmt == "bzip2":
            return bz2.BZ2Decompressor()
        fmt = lzma.FORMAT_XZ if self._fmt == "xz" else lzma.FORMAT_ALONE
        return lzma.LZMADecompressor(format=fmt, memlimit=_LZMA_MEMLIMIT)

    def _next_is_same(self) -> bool:
        head = self._img.peek_at(self._img.pos, 6)
        return _sniff(head) == self._fmt

    def read(self, limit: int) -> bytes:
        img = self._img
        while True:
            d = self._d
            if d.eof:
                img.seek(img.pos - len(d.unused_data))
                if not self._next_is_same():
                    return b""
                self._d = self._new()
                continue
            data = img.read(_IN_CHUNK // 4) if d.needs_input else b""
            if d.needs_input and not data:
                raise self._faults.truncated()
            try:
                out = d.decompress(data, limit)
            except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
                raise self._faults.corrupt(img.pos - len(data), exc) from exc
            if out:
                return out


class _Window:
    """The bytes [start, end) of the image as a file for zstandard's stream_reader."""

    def __init__(self, img: _Image, end: int) -> None:
        self._img = img
        self._end = end

    def read(self, n: int = -1) -> bytes:
        left = self._end - self._img.pos
        if n < 0 or n > left:
            n = left
        return self._img.read(n) if n > 0 else b""

    @property
    def done(self) -> bool:
        return self._img.pos >= self._end


def _zstd_frame_end(img: _Image, start: int) -> int:
    """Where the zstd frame at ``start`` ends, from its block headers (RFC 8878 section 3.1.1).

    python-zstandard cannot say how much input a frame consumed, and feeding it more would lose the
    bytes after the frame (a gzip overlay, NUL padding).  Walking the 3-byte block headers is cheap.
    """
    head = img.peek_at(start, 18)
    try:
        pos = start + zstandard.frame_header_size(head)
        has_checksum = zstandard.get_frame_parameters(head).has_checksum
    except zstandard.ZstdError as exc:
        if len(head) < 18 and start + len(head) == img.size:
            raise InitramfsError("truncated", img.size, "zstd frame header cut off") from exc
        raise InitramfsError("corrupt", start, f"bad zstd frame header: {exc}") from exc
    buf, buf_at = b"", pos  # block headers are read from 1 MiB windows, not one syscall each
    empty = 0  # empty blocks in a row: valid, but no encoder writes runs of them; zeros look like them
    while True:
        if pos + 3 > buf_at + len(buf):
            buf, buf_at = img.peek_at(pos, _IN_CHUNK), pos
        raw = buf[pos - buf_at : pos - buf_at + 3]
        if len(raw) < 3:
            raise InitramfsError("truncated", img.size, "zstd frame ends before its last block")
        value = int.from_bytes(raw, "little")
        block_type = (value >> 1) & 3
        if block_type == 3:
            raise InitramfsError("corrupt", pos, "reserved zstd block type")
        pos += 3 + (1 if block_type == 1 else value >> 3)
        if value & 1:
            break
        empty = empty + 1 if block_type < 2 and value >> 3 == 0 else 0
        if empty > _ZSTD_MAX_EMPTY_BLOCKS:
            raise InitramfsError("corrupt", pos, f"more than {_ZSTD_MAX_EMPTY_BLOCKS} empty zstd blocks in a row")
    pos += 4 if has_checksum else 0
    if pos > img.size:
        raise InitramfsError("truncated", img.size, "zstd frame ends past the end of the image")
    return pos


class _ZstdDecoder:
    """zstd frames, decompressed into one reused buffer (readinto: no per-chunk allocation)."""

    def __init__(self, img: _Image) -> None:
        self._img = img
        self._dctx = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
        self._scratch = memoryview(bytearray(_OUT_CHUNK))
        self._start_frame()

    def _start_frame(self) -> None:
        self._frame_at = self._img.pos
        self._window = _Window(self._img, _zstd_frame_end(self._img, self._frame_at))
        self._reader = self._dctx.stream_reader(
            self._window, read_size=_IN_CHUNK, read_across_frames=False, closefd=False
        )

    def read(self, limit: int) -> memoryview:
        while True:
            try:
                n = self._reader.readinto(self._scratch[:limit])
            except zstandard.ZstdError as exc:
                raise InitramfsError("corrupt", self._frame_at, f"zstd data is corrupt: {exc}") from exc
            if n:
                return self._scratch[:n]
            if not self._window.done:
                raise InitramfsError("corrupt", self._frame_at, "zstd frame ended before its last block")
            if _sniff(self._img.peek_at(self._img.pos, 4)) != "zstd":
                return self._scratch[:0]
            self._start_frame()


class _Lz4LegacyDecoder:
    """lz4 legacy (lz4 -l): 4-byte LE block sizes, each block an independent <= 8 MiB LZ4 block.

    The format has no end marker: the run ends at end of file, at a size of 0 (NUL padding) or at
    a value no block can have (the next format's magic), like lz4's own legacy reader.
    """

    _MAGIC = b"\x02\x21\x4c\x18"
    _BLOCK = 8 << 20
    _BOUND = _BLOCK + _BLOCK // 255 + 16  # LZ4_COMPRESSBOUND(8 MiB)

    def __init__(self, img: _Image) -> None:
        self._img = img
        self.unterminated = False  # the run stopped at end of file (so a cut is indistinguishable)

    def read(self, limit: int) -> bytes:
        img = self._img
        while True:
            at = img.pos
            head = img.read(4)
            if head == self._MAGIC:
                continue
            size = int.from_bytes(head, "little")
            if len(head) < 4 or size == 0 or size > self._BOUND:
                img.seek(at)
                self.unterminated = len(head) < 4
                return b""
            block = img.read(size)
            if len(block) < size:
                raise InitramfsError("truncated", img.size, "lz4 block extends past the end of the image")
            try:
                out = lz4.block.decompress(block, uncompressed_size=self._BLOCK)
            except lz4.block.LZ4BlockError as exc:
                raise InitramfsError("corrupt", at, f"lz4 block is corrupt: {exc}") from exc
            if out:
                return out


def _decoder(img: _Image, fmt: str) -> _Decoder:
    if fmt == "zstd":
        return _ZstdDecoder(img)
    if fmt == "gzip":
        return _GzipDecoder(img)
    if fmt == "lz4":
        return _Lz4LegacyDecoder(img)
    if fmt in ("xz", "lzma", "bzip2"):
        return _BufferingDecoder(img, fmt)
    # No maintained LZO decoder is a dependency (python-lzo would be one); say so, don't guess.
    raise InitramfsError("unknown_format", img.pos, f"{fmt} (lzop) segments are not supported")


def _sniff(head: bytes) -> str | None:
    for magic, fmt in _MAGICS:
        if head.startswith(magic):
            return fmt
    return None


# --------------------------------------------------------------------------------------------
# Byte streams the cpio walker reads: the image itself, or a decoder's output


class _Stream(Protocol):
    pos: int

    def take(self, n: int) -> bytes: ...

    def skip(self, n: int) -> None: ...

    def fault(self, code: str, detail: str, at: int) -> InitramfsError: ...


class _RawStream:
    """An uncompressed archive read straight from the image; data is skipped with a seek."""

    def __init__(self, img: _Image) -> None:
        self._img = img
        self._start = img.pos

    @property
    def pos(self) -> int:
        return self._img.pos

    def take(self, n: int) -> bytes:
        data = self._img.read(n)
        if len(data) < n:
            raise InitramfsError("truncated", self._img.size, "image ends inside a cpio entry")
        return data

    def skip(self, n: int) -> None:
        if self._img.pos + n > self._img.size:
            raise InitramfsError("truncated", self._img.size, "image ends inside a cpio entry's data")
        self._img.seek(self._img.pos + n)

    def fault(self, code: str, detail: str, at: int) -> InitramfsError:
        return InitramfsError(code, at, detail)


class _DecodedStream:
    """A compressed segment's output: headers are copied out, data is dropped by count."""

    def __init__(self, decoder: _Decoder, segment_at: int, budget: _Budget, img_size: int) -> None:
        self._decoder = decoder
        self._img_size = img_size
        self._at = segment_at
        self._budget = budget
        self._buf: bytes | memoryview = b""
        self._i = 0  # read position in _buf
        self._base = 0  # decompressed bytes before _buf
        self.total = 0  # decompressed bytes so far

    @property
    def pos(self) -> int:
        return self._base + self._i

    def _fill(self) -> bool:
        """Replace the (consumed) buffer with the next chunk; False at end of the segment."""
        self._base += len(self._buf)
        self._buf = b""  # let the previous chunk go before the next one is made
        chunk = self._decoder.read(_OUT_CHUNK)
        self._buf, self._i = chunk, 0
        self.total += len(chunk)
        self._budget.spend(len(chunk), self._at, self.total)
        return bool(chunk)

    def take(self, n: int) -> bytes:
        end = self._i + n
        if end <= len(self._buf):
            data = bytes(self._buf[self._i : end])
            self._i = end
            return data
        parts = [bytes(self._buf[self._i :])]
        need = n - len(parts[0])
        while need:
            if not self._fill():
                raise self._ended_inside("a cpio entry")
            piece = bytes(self._buf[:need])
            self._i = len(piece)
            parts.append(piece)
            need -= len(piece)
        return b"".join(parts)

    def skip(self, n: int) -> None:
        left = len(self._buf) - self._i
        if n <= left:
            self._i += n
            return
        n -= left
        self._i = len(self._buf)
        while n:
            if not self._fill():
                raise self._ended_inside("a cpio entry's data")
            step = min(n, len(self._buf))
            self._i = step
            n -= step

    def skip_nuls(self) -> bool:
        """Skip NUL padding; True if more (non-NUL) output follows."""
        while True:
            rest = bytes(self._buf[self._i : self._i + 4096]) if self._i < len(self._buf) else b""
            kept = rest.lstrip(b"\0")
            self._i += len(rest) - len(kept)
            if kept:
                return True
            if self._i >= len(self._buf) and not self._fill():
                return False

    def _ended_inside(self, what: str) -> InitramfsError:
        """The decompressed data stopped mid-archive: a cut file, or a stream that is wrong."""
        if getattr(self._decoder, "unterminated", False):  # lz4 legacy has no end marker
            return InitramfsError("truncated", self._img_size, f"image ends inside {what}", self.pos)
        return self.fault("corrupt", f"compressed stream ends inside {what}", self.pos)

    def next_byte(self) -> int:
        """The byte at the read position; only valid right after skip_nuls() returned True."""
        return self._buf[self._i]

    def fault(self, code: str, detail: str, at: int) -> InitramfsError:
        return InitramfsError(code, self._at, detail, stream_offset=at)


class _Budget:
    """The bounds: decompressed bytes across the whole image, and entries."""

    def __init__(self, max_bytes: int, max_entries: int) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.spent = 0

    def spend(self, n: int, offset: int, stream_offset: int | None) -> None:
        self.spent += n
        if self.spent > self.max_bytes:
            raise InitramfsError(
                "too_large", offset, f"more than {self.max_bytes} bytes of cpio data", stream_offset
            )


# --------------------------------------------------------------------------------------------
# cpio


class _Entries:
    """Collects names/modes/sizes, enforcing the entry bound."""

    def __init__(self, budget: _Budget) -> None:
        self._budget = budget
        self.names: list[str] = []
        self.modes: list[int] = []
        self.sizes: list[int] = []

    def add(self, stream: _Stream, at: int, name: bytes, mode: int, size: int) -> None:
        if len(self.names) >= self._budget.max_entries:
            raise stream.fault("too_many_entries", f"more than {self._budget.max_entries} entries", at)
        self.names.append(os.fsdecode(_listed_name(name)))
        self.modes.append(mode)
        self.sizes.append(size)


def _listed_name(name: bytes) -> bytes:
    """The name as ``cpio -i --list --no-absolute-filenames`` (so lsinitramfs) prints it.

    GNU cpio drops everything up to the last ``..`` component and leading slashes, and prints an
    empty result as ``.`` (gnulib safer_name_suffix).
    """
    if not name.startswith(b"/") and b".." not in name:
        return name or b"."
    prefix = 0
    i = 0
    while i < len(name):
        if name.startswith(b"..", i) and (i + 2 == len(name) or name[i + 2] == 0x2F):
            prefix = i + 2
        j = name.find(b"/", i)
        if j < 0:
            break
        i = j + 1
    while prefix < len(name) and name[prefix] == 0x2F:
        prefix += 1
    return name[prefix:] or b"."


def _read_archive(stream: _Stream, entries: _Entries) -> None:
    """Read one cpio archive up to and including its TRAILER!!! entry."""
    while True:
        at = stream.pos
        header = stream.take(110)
        if not _CPIO_HEADER.fullmatch(header):
            raise stream.fault("corrupt", f"no cpio newc/crc header (found {header[:6]!r})", at)
        mode = int(header[14:22], 16)
        filesize = int(header[54:62], 16)
        namesize = int(header[94:102], 16)
        if namesize == 0 or namesize > _PATH_MAX:
            raise stream.fault("corrupt", f"cpio name size {namesize} out of range", at)
        raw = stream.take(namesize + (-(at + 110 + namesize) % 4))
        if raw[namesize - 1] != 0:
            raise stream.fault("corrupt", "cpio name is not NUL-terminated", at)
        name = raw[: raw.index(0)]
        if name == _TRAILER:
            stream.skip(filesize + (-filesize % 4))
            return
        entries.add(stream, at, name, mode, filesize)
        stream.skip(filesize + (-filesize % 4))


def _read_compressed(img: _Image, fmt: str, budget: _Budget, entries: _Entries) -> int:
    """Read every archive in one compressed run; returns its decompressed size."""
    start = img.pos
    stream = _DecodedStream(_decoder(img, fmt), start, budget, img.size)
    if not stream.skip_nuls():
        raise InitramfsError("corrupt", start, f"{fmt} stream holds no cpio archive")
    while True:
        # The kernel's flush_buffer/do_reset: after NULs only a cpio header may follow, aligned.
        if stream.next_byte() != 0x30 or stream.pos % 4:
            raise stream.fault("corrupt", "junk or broken padding in compressed archive", stream.pos)
        _read_archive(stream, entries)
        if not stream.skip_nuls():
            return stream.total


# --------------------------------------------------------------------------------------------
# Public API


def list_image(
    fh: BinaryIO,
    *,
    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> ImageListing:
    """List every entry of the initramfs image open in ``fh`` (a seekable binary file, read from
    its start), streaming, within the given bounds.

    Raises InitramfsError for anything that is not a complete image (see ERROR_CODES), and
    OSError (PermissionError, EIO) when the file cannot be read: a caller must not read
    "unreadable" as "module absent".
    """
    budget = _Budget(max_uncompressed, max_entries)
    entries = _Entries(budget)
    segments: list[Segment] = []
    fh.seek(0, os.SEEK_END)
    img = _Image(fh, fh.tell())
    img.seek(0)
    while True:
        img.skip_nuls()
        start = img.pos
        if start >= img.size:
            break
        head = img.peek_at(start, 10)
        if head[:1] == b"0" and start % 4 == 0:
            _read_archive(_RawStream(img), entries)
            fmt, size = "none", img.pos - start
            budget.spend(size, start, None)
        else:
            fmt = _sniff(head)
            if fmt is None and start + len(head) == img.size and any(m.startswith(head) for m, _ in _MAGICS):
                raise InitramfsError("truncated", img.size, f"image ends inside a magic number ({head.hex()})")
            if fmt is None:
                raise InitramfsError("unknown_format", start, f"no cpio header or known compression magic ({head[:6].hex()})")
            size = _read_compressed(img, fmt, budget, entries)
        segments.append(Segment(start, fmt, img.pos - start, size))
    if not segments:
        raise InitramfsError("empty", img.pos, "the file holds no cpio archive")
    return ImageListing(
        names=tuple(entries.names),
        segments=tuple(segments),
        entries=len(entries.names),
        uncompressed_bytes=budget.spent,
        modes=tuple(entries.modes),
        sizes=tuple(entries.sizes),
        image_bytes=img.size,
    )


_MODULE_SUFFIXES = (".ko", ".ko.zst", ".ko.xz", ".ko.gz")


def _modname(filename: str) -> str:
    """depmod's module name for a file: basename up to the first '.', with '-' read as '_'."""
    return posixpath.basename(filename).split(".", 1)[0].replace("-", "_")


def module_names(listing: ImageListing, kernel: str) -> frozenset[str]:
    """Names of the kernel modules for ``kernel`` that the image holds (regular files only).

    mkinitramfs decompresses ``.ko.zst``/``.ko.xz`` into ``.ko``, so match on the name, not the
    file name; merged-/usr images use usr/lib/modules, older ones lib/modules.
    """
    prefixes = (f"usr/lib/modules/{kernel}/", f"lib/modules/{kernel}/")
    modes = listing.modes or (stat.S_IFREG,) * len(listing.names)
    found = set()
    for name, mode in zip(listing.names, modes):
        if not stat.S_ISREG(mode) or not name.endswith(_MODULE_SUFFIXES):
            continue
        path = posixpath.normpath(name).lstrip("/")
        if path.startswith(prefixes):
            found.add(_modname(path))
    return frozenset(found)
