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

Not read: lzop segments (no maintained LZO decoder is a dependency; ``unsupported``: the kernel
reads them, so the image is not known to be damaged, only not listed), and the
crc format's checksums (the kernel ignores them too).  The xz check type is not enforced either,
although the kernel only accepts CRC32/none.

Magic numbers and decoders (bounded, with their own limits): exporter.formats.decompress.
Layout and sources: docs/formats.md, "Initramfs images" (linux init/initramfs.c,
lib/decompress.c, initramfs-tools' unmkinitramfs, dracut's skipcpio).
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from .decompress import CHUNK, MAGIC_MAX, DecompressError, FileSource, Stream, is_magic_prefix, open_stream, sniff

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
    {"truncated", "corrupt", "too_large", "too_many_entries", "unknown_format", "unsupported", "empty", "not_a_file"}
)

_PATH_MAX = 4096  # the kernel skips longer names; no real tool writes one
_CPIO_HEADER = re.compile(rb"07070[12][0-9A-Fa-f]{104}")
_TRAILER = b"TRAILER!!!"


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


class _Image(FileSource):
    """A regular file opened for listing, with the logical read position kept in one place."""

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


def _fault(exc: DecompressError) -> InitramfsError:
    """A decompression fault in the image's terms (same codes; offsets are image offsets)."""
    return InitramfsError(exc.code, exc.offset, exc.detail, exc.output_offset)


def _open_stream(img: _Image, fmt: str, limit: int) -> Stream:
    try:
        return open_stream(img, fmt, limit=limit)
    except DecompressError as exc:
        raise _fault(exc) from exc


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

    def __init__(self, decoder: Stream, budget: _Budget, img_size: int) -> None:
        self._decoder = decoder
        self._img_size = img_size
        self._at = decoder.start
        self._budget = budget
        self._buf: bytes | memoryview = b""
        self._i = 0  # read position in _buf
        self._base = 0  # decompressed bytes before _buf

    @property
    def pos(self) -> int:
        return self._base + self._i

    @property
    def total(self) -> int:
        """Decompressed bytes so far."""
        return self._decoder.total

    def _fill(self) -> bool:
        """Replace the (consumed) buffer with the next chunk; False at end of the segment."""
        self._base += len(self._buf)
        self._buf = b""  # let the previous chunk go before the next one is made
        try:
            chunk = self._decoder.read(CHUNK)
        except DecompressError as exc:
            if exc.code == "too_large":  # the decoder was given what is left of the image's bound
                raise self._budget.exceeded(self._at, exc.output_offset) from exc
            raise _fault(exc) from exc
        self._buf, self._i = chunk, 0
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
        if self._decoder.unterminated:  # lz4 legacy has no end marker
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

    @property
    def left(self) -> int:
        return self.max_bytes - self.spent

    def spend(self, n: int, offset: int, stream_offset: int | None) -> None:
        self.spent += n
        if self.spent > self.max_bytes:
            raise self.exceeded(offset, stream_offset)

    def exceeded(self, offset: int, stream_offset: int | None) -> InitramfsError:
        return InitramfsError("too_large", offset, f"more than {self.max_bytes} bytes of cpio data", stream_offset)


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
    stream = _DecodedStream(_open_stream(img, fmt, budget.left), budget, img.size)
    if not stream.skip_nuls():
        raise InitramfsError("corrupt", start, f"{fmt} stream holds no cpio archive")
    while True:
        # The kernel's flush_buffer/do_reset: after NULs only a cpio header may follow, aligned.
        if stream.next_byte() != 0x30 or stream.pos % 4:
            raise stream.fault("corrupt", "junk or broken padding in compressed archive", stream.pos)
        _read_archive(stream, entries)
        if not stream.skip_nuls():
            budget.spend(stream.total, start, stream.total)  # within what the decoder was allowed
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
        head = img.peek_at(start, MAGIC_MAX)
        if head[:1] == b"0" and start % 4 == 0:
            _read_archive(_RawStream(img), entries)
            fmt, size = "none", img.pos - start
            budget.spend(size, start, None)
        else:
            fmt = sniff(head)
            if fmt is None and start + len(head) == img.size and is_magic_prefix(head):
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
