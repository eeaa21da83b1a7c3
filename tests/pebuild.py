"""A minimal PE32+ writer for the quick tier's UKI tests: an EFI application with the sections
it is given, laid out as a linker would (headers, then each section's raw data at FileAlignment,
its memory at SectionAlignment).  tests/test_pe.py checks that binutils' objdump reads what this
writes; the realhost tests use UKIs made by Debian's own ukify."""

from __future__ import annotations

import struct
from dataclasses import dataclass

FILE_ALIGN = 0x200
SECTION_ALIGN = 0x1000


@dataclass
class Sec:
    name: str
    data: bytes
    virtual_size: int | None = None      # default: len(data)


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def build_pe(sections: list[Sec], *, machine: int = 0x8664, subsystem: int = 10,
             size_of_image: int | None = None) -> bytes:
    """The bytes of a PE32+ image holding ``sections`` in order."""
    n = len(sections)
    opt_size = 112 + 16 * 8                      # PE32+ fields, then 16 data directories
    headers = _align(0x40 + 4 + 20 + opt_size + 40 * n, FILE_ALIGN)
    raw_at, va = headers, SECTION_ALIGN
    table, body = b"", b""
    for s in sections:
        vsize = len(s.data) if s.virtual_size is None else s.virtual_size
        raw = _align(len(s.data), FILE_ALIGN)
        table += struct.pack("<8sIIIIIIHHI", s.name.encode(), vsize, va, raw, raw_at if raw else 0, 0, 0, 0, 0,
                             0x40000040)
        body += s.data + b"\0" * (raw - len(s.data))
        raw_at += raw
        va += _align(max(vsize, 1), SECTION_ALIGN)
    image_size = va if size_of_image is None else size_of_image
    dos = b"MZ" + b"\0" * 0x3A + struct.pack("<I", 0x40)
    coff = b"PE\0\0" + struct.pack("<HHIIIHH", machine, n, 0, 0, 0, opt_size, 0x0206)
    opt = struct.pack("<HBBIIIII", 0x20B, 2, 0, 0, 0, 0, SECTION_ALIGN, SECTION_ALIGN)
    opt += struct.pack("<QIIHHHHHHIIIIHHQQQQII", 0, SECTION_ALIGN, FILE_ALIGN, 0, 0, 0, 0, 0, 0, 0,
                       image_size, headers, 0, subsystem, 0, 0, 0, 0, 0, 0, 16)
    opt += b"\0" * (16 * 8)
    assert len(opt) == opt_size, len(opt)
    head = dos + coff + opt + table
    return head + b"\0" * (headers - len(head)) + body


def bzimage(release: str) -> bytes:
    """The first bytes of an x86 bzImage whose boot header names ``release`` (what ukify's
    Uname.scrape_x86 reads when it is not given --uname)."""
    text = f"{release} (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian".encode() + b"\0"
    blob = bytearray(0x400)
    blob[0:2] = b"MZ"
    blob[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", blob, 0x20E, 0x300 - 0x200)
    blob[0x300:0x300 + len(text)] = text
    return bytes(blob)


OSREL = b'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nNAME="Debian GNU/Linux"\nVERSION_ID="13"\n' \
        b'VERSION="13 (trixie)"\nID=debian\n'


def uki(release: str | None, initrd: bytes = b"", *, osrel: bytes = OSREL, cmdline: bytes = b"root=/dev/vda1 ro\n",
        extra: list[Sec] | None = None, uname: bool = True) -> bytes:
    """A UKI as ukify lays one out: .osrel .cmdline .uname .initrd .linux (and ``extra``)."""
    secs = [Sec(".osrel", osrel), Sec(".cmdline", cmdline)]
    if uname and release:
        secs.append(Sec(".uname", release.encode()))
    if initrd:
        secs.append(Sec(".initrd", initrd))
    secs.append(Sec(".linux", bzimage(release or "6.0.0")))
    return build_pe(secs + (extra or []))
