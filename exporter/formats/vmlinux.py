"""The certificates built into a kernel image: its ``.builtin_trusted_keys``, read from vmlinuz.

docs/formats.md, "Kernel images and their built-in certificates".  certs/system_certificates.S
places ``system_certificate_list`` in ``.init.rodata``: the build's module-signing certificate
(with CONFIG_MODULE_SIG) followed by CONFIG_SYSTEM_TRUSTED_KEYS, DER certificates back to back,
then (8-aligned) the quad ``system_certificate_list_size``; CONFIG_SYSTEM_EXTRA_CERTIFICATE
puts a reserved area and an int between the two.  certs/common.c load_certificate_list() walks
it as the kernel does at boot: a ``30 82 LL LL`` SEQUENCE at a time.

The image is read as a stream, never whole: an x86 bzImage's payload (found through the boot
protocol header: ``setup_sects``, ``payload_offset``, ``payload_length``) or a compressed
image (Image.gz) is decompressed through exporter.formats.decompress in bounded chunks; a raw
ELF or Image is scanned as it is.  The scan keeps one chunk and a 64 KiB overlap: the list is
found as a run of back-to-back X.509 certificates whose length the quad after it confirms, so a
certificate elsewhere in the image (a test vector, firmware) is not taken for a trusted key.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from .decompress import CHUNK, MAGIC_MAX, DecompressError, FileSource, open_stream, sniff
from .x509 import Certificate, load_certificate

MAX_VMLINUX = 512 * 1024 * 1024
"""Bound on a decompressed kernel: Debian 12's 6.1 vmlinux is 66 MB, Fedora's about 80 MB."""

MAX_CERT = 4 + 0xFFFF                 # a 30 82 LL LL SEQUENCE: at most 64 KiB
MAX_LIST = 1 << 20
"""Bound on the list's bytes (the kernel has none): distributions build in one to a dozen
certificates of 1-2 KiB each.  The scan's window is this plus one chunk."""
MAX_CERTS = 256
_TBS_V3 = b"\xa0\x03\x02\x01\x02"     # tbsCertificate's explicit version v3, right after its header


class VmlinuxError(ValueError):
    """A kernel image that cannot be read for its certificates (code: stable label value)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class BuiltinKeys:
    """The kernel's built-in certificates (``.builtin_trusted_keys``), in list order; ``how``
    says how the image was read (``bzImage+xz``, ``raw``, ...)."""

    certificates: tuple[Certificate, ...]
    how: str


def builtin_certificates(fh: BinaryIO, size: int, extra_size: int = 0) -> BuiltinKeys:
    """The certificate list of a kernel image open in ``fh`` (``size`` bytes).

    ``extra_size``: CONFIG_SYSTEM_EXTRA_CERTIFICATE_SIZE when the kernel's config sets
    CONFIG_SYSTEM_EXTRA_CERTIFICATE (the reserved area between the list and its size).  No list
    found is ``VmlinuxError("no_certificate_list")``: the caller cannot tell a kernel without
    keys from one whose layout this reader does not know, so it must not claim either."""
    src = FileSource(fh, size)
    head = src.peek_at(0, 0x250)
    start, length, how = 0, size, "raw"
    if len(head) >= 0x250 and head[0x202:0x206] == b"HdrS":
        setup_sects = head[0x1F1] or 4
        version = struct.unpack_from("<H", head, 0x206)[0]
        if version < 0x208:
            raise VmlinuxError("unsupported", f"bzImage boot protocol {version >> 8}.{version & 0xff} has no "
                               "payload fields (2.08+)")
        offset, length = struct.unpack_from("<II", head, 0x248)
        start = (setup_sects + 1) * 512 + offset
        if start + length > size:
            raise VmlinuxError("truncated", f"bzImage payload ({start}+{length}) past the end ({size})")
        how = "bzImage"
    src.seek(start)
    fmt = sniff(src.peek_at(start, MAGIC_MAX))
    if fmt is not None:
        try:
            stream = open_stream(src, fmt, limit=MAX_VMLINUX)
            return BuiltinKeys(_scan(stream.read, extra_size), f"{how}+{fmt}")
        except DecompressError as exc:
            raise VmlinuxError(exc.code, f"{how} {fmt} payload: {exc}") from None
    if how == "bzImage":
        raise VmlinuxError("unknown_format", f"bzImage payload is not compressed in a known format "
                           f"({src.peek_at(start, 6).hex()})")
    remaining = [length]

    def raw(n: int = CHUNK) -> bytes:
        data = src.read(min(n, remaining[0]))
        remaining[0] -= len(data)
        return data

    return BuiltinKeys(_scan(raw, extra_size), how)


def _scan(read, extra_size: int) -> tuple[Certificate, ...]:
    """Find the certificate list in a stream of image bytes (chunks from ``read``)."""
    window = bytearray()
    base = 0            # stream offset of window[0]
    searched = 0        # window offset from which candidates are still to be looked at
    while True:
        chunk = read(CHUNK)
        ended = not chunk
        window += chunk
        # a candidate needs its whole run and the size quad in the window; keep the last
        # MAX_LIST + MAX_CERT bytes back unless the stream ended
        limit = len(window) if ended else max(0, len(window) - MAX_LIST - MAX_CERT - 64)
        found = _find_list(window, searched, limit, extra_size)
        if found is not None:
            return found
        if ended:
            raise VmlinuxError("no_certificate_list", "no system_certificate_list (a run of X.509 "
                               "certificates followed by its size) in the image")
        searched = limit
        drop = max(0, searched - 8)
        del window[:drop]
        base += drop
        searched -= drop


def _find_list(buf: bytearray, start: int, stop: int, extra_size: int) -> tuple[Certificate, ...] | None:
    pos = buf.find(b"\x30\x82", start, stop + 2)
    while 0 <= pos < stop:
        run = _run_at(buf, pos)
        if run:
            end = pos + sum(len(c) for c in run)
            if _size_confirms(buf, pos, end, extra_size):
                return tuple(load_certificate(bytes(c), "built-in certificate list") for c in run)
        pos = buf.find(b"\x30\x82", pos + 1, stop + 2)
    return None


def _run_at(buf: bytearray, pos: int) -> list[bytes]:
    """Back-to-back certificate-shaped SEQUENCEs starting at pos (as load_certificate_list walks)."""
    run = []
    while pos + 13 <= len(buf) and buf[pos] == 0x30 and buf[pos + 1] == 0x82:
        n = 4 + (buf[pos + 2] << 8 | buf[pos + 3])
        if buf[pos + 4:pos + 6] != b"\x30\x82" or buf[pos + 8:pos + 13] != _TBS_V3 or pos + n > len(buf):
            break
        run.append(bytes(buf[pos:pos + n]))
        pos += n
        if len(run) >= MAX_CERTS or sum(map(len, run)) > MAX_LIST:
            break
    return run


def _size_confirms(buf: bytearray, start: int, end: int, extra_size: int) -> bool:
    """system_certificate_list_size, 8-aligned after the list (or after the extra area), is the
    list's length.  The list starts 8-aligned (``.align 8``), so offsets from it align alike."""
    length = end - start
    offsets = [_align(length, 8)]
    if extra_size:
        offsets.append(_align(_align(length + extra_size, 4) + 4, 8))
    # a .quad on 64-bit kernels, a .long on 32-bit ones: the low 32 bits (little-endian) either way
    return any(start + o + 4 <= len(buf) and struct.unpack_from("<I", buf, start + o)[0] == length
               for o in offsets)


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a
