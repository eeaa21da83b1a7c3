"""PE/COFF section tables of EFI executables: unified kernel images (UKIs, BLS type #2).

A UKI is an EFI stub with the kernel, the initramfs, os-release, the kernel release and the
command line as PE sections (``.linux``, ``.initrd``, ``.osrel``, ``.uname``, ``.cmdline``;
``.profile`` splits the table into profiles).  Only the headers and the section table are read
here: DOS header (``MZ``, ``e_lfanew`` at 0x3c) -> ``PE\\0\\0`` -> COFF file header -> optional
header (its ``Subsystem`` and ``SizeOfImage``) -> section table.  Section contents are read by
the caller through ``section_bytes`` (small text sections) or ``SectionFile`` (a seekable window
for the initramfs lister), both bounded.

Validation follows systemd 257: sd-boot's src/boot/pe.c (verify_dos, verify_pe,
pe_section_table_from_file, pe_locate_sections_internal) and bootctl's the shared pe-binary.c
(pe_load_headers, pe_read_section_data, pe_is_uki).  Anything they refuse, or that the
firmware's loader could not map (a section past the end of the file, or past ``SizeOfImage``),
is a ``PeError`` with a stable code.  Sources: docs/formats.md, "Unified kernel images".
"""

from __future__ import annotations

import io
import os
import re
import struct
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["ERROR_CODES", "PeError", "PeImage", "Section", "SectionFile", "Uki", "UkiProfile", "bzimage_uname",
           "parse_pe", "read_uki", "section_bytes", "section_text"]

ERROR_CODES = frozenset({"truncated", "not_pe", "bad_header", "section_out_of_file", "section_beyond_image",
                         "too_large", "bad_text"})

DOS_HEADER = 64
_COFF = struct.Struct("<4sHHIIIHH")      # signature, Machine, NumberOfSections, ..., SizeOfOptionalHeader, Characteristics
_SECTION = struct.Struct("<8sIIIIIIHHI")  # Name, VirtualSize, VirtualAddress, SizeOfRawData, PointerToRawData, ...
OPT_PE32, OPT_PE32PLUS = 0x10B, 0x20B
SUBSYSTEM_EFI_APPLICATION = 10
MACHINE_NAMES = {0x8664: "x86_64", 0x14C: "i386", 0xAA64: "aarch64", 0x1C0: "arm", 0x5064: "riscv64",
                 0x5032: "riscv32", 0x6264: "loongarch64"}
# bootctl's PE_SECTION_SIZE_MAX: the most it loads of .osrel, .cmdline, .profile (and .uname)
TEXT_MAX = 4 * 1024 * 1024


class PeError(ValueError):
    """An EFI executable that cannot be used; ``code`` is a stable label, the message says where."""

    def __init__(self, code: str, detail: str) -> None:
        assert code in ERROR_CODES, code
        super().__init__(f"PE {code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Section:
    """One section header; ``file_size`` is what a loader reads from the file (sd-boot's
    MIN(SizeOfRawData, VirtualSize): raw data is padded to FileAlignment, VirtualSize is not)."""

    name: str
    virtual_size: int
    virtual_address: int
    raw_size: int
    raw_offset: int

    @property
    def file_size(self) -> int:
        return min(self.raw_size, self.virtual_size)


@dataclass(frozen=True)
class PeImage:
    machine: int
    subsystem: int
    size_of_image: int
    sections: tuple[Section, ...]
    file_size: int

    @property
    def arch(self) -> str:
        return MACHINE_NAMES.get(self.machine, f"0x{self.machine:04x}")

    @property
    def is_uki(self) -> bool:
        """bootctl's pe_is_uki: an EFI application with ``.linux`` and ``.osrel``."""
        return (self.subsystem == SUBSYSTEM_EFI_APPLICATION and self.find(".linux") is not None
                and self.find(".osrel") is not None)

    def find(self, name: str, table: tuple[Section, ...] | None = None) -> Section | None:
        """The first section of that name (later duplicates are ignored, as by sd-boot)."""
        return next((s for s in (self.sections if table is None else table) if s.name == name), None)

    def profiles(self) -> int:
        """How many profiles the image has: each ``.profile`` section starts one; an image without
        any is one profile (@0)."""
        return max(1, sum(1 for s in self.sections if s.name == ".profile"))

    def profile_section(self, name: str, profile: int) -> Section | None:
        """The section a profile uses (sd-boot's pe_locate_profile_sections): the one in the
        profile's part of the table, else the one in the base part (before the first
        ``.profile``); a base section with VirtualSize 0 is masked (absent)."""
        marks = [i for i, s in enumerate(self.sections) if s.name == ".profile"]
        base = self.sections[: marks[0]] if marks else self.sections
        own: tuple[Section, ...] = ()
        if marks and profile < len(marks):
            end = marks[profile + 1] if profile + 1 < len(marks) else len(self.sections)
            own = self.sections[marks[profile]: end]
        found = self.find(name, own) or self.find(name, base)
        return found if found is not None and found.virtual_size else None


def _read_at(fh: BinaryIO, offset: int, n: int) -> bytes:
    fh.seek(offset)
    return fh.read(n)


def parse_pe(fh: BinaryIO, size: int | None = None, origin: str = "image") -> PeImage:
    """The headers and section table of the PE file open in ``fh`` (``size`` bytes; asked of the
    file when None).  Reads at most the DOS header, the PE headers and 40 bytes per section (at
    most 65,535 sections: 2.6 MB).  Every refusal is a PeError naming the offset."""
    if size is None:
        size = fh.seek(0, os.SEEK_END)
    dos = _read_at(fh, 0, DOS_HEADER)
    if len(dos) < 2 or dos[:2] != b"MZ":
        raise PeError("not_pe", f"{origin}: no MZ header")
    if len(dos) < DOS_HEADER:
        raise PeError("truncated", f"{origin}: {size} bytes, shorter than the 64-byte DOS header")
    lfanew = struct.unpack_from("<I", dos, 0x3C)[0]
    if lfanew < DOS_HEADER:
        raise PeError("bad_header", f"{origin}: e_lfanew {lfanew} points inside the DOS header")
    coff = _read_at(fh, lfanew, _COFF.size + 2) if lfanew < size else b""
    if len(coff) < _COFF.size + 2:
        raise PeError("truncated", f"{origin}: PE header at {lfanew} cut by the end of the file ({size} bytes)")
    sig, machine, nsections, _, _, _, opt_size, _ = _COFF.unpack_from(coff)
    if sig != b"PE\0\0":
        raise PeError("not_pe", f"{origin}: no PE signature at {lfanew}")
    if nsections == 0:
        raise PeError("bad_header", f"{origin}: no sections")
    opt_at = lfanew + _COFF.size
    if opt_size < 2:
        raise PeError("bad_header", f"{origin}: optional header of {opt_size} bytes, too short for its magic")
    opt = _read_at(fh, opt_at, min(opt_size, 96))
    if len(opt) < min(opt_size, 96):
        raise PeError("truncated", f"{origin}: optional header at {opt_at} ({opt_size} bytes) cut by the end of the file")
    magic = struct.unpack_from("<H", opt)[0]
    if magic not in (OPT_PE32, OPT_PE32PLUS):
        raise PeError("bad_header", f"{origin}: optional header magic 0x{magic:04x} is neither PE32 nor PE32+")
    if len(opt) < 70:
        raise PeError("bad_header", f"{origin}: optional header of {opt_size} bytes lacks SizeOfImage and Subsystem")
    size_of_image, subsystem = struct.unpack_from("<I", opt, 56)[0], struct.unpack_from("<H", opt, 68)[0]
    table_at = opt_at + opt_size
    table_len = nsections * _SECTION.size
    if table_at + table_len > size:
        raise PeError("truncated", f"{origin}: section table of {nsections} sections at {table_at} "
                      f"({table_len} bytes) runs past the end of the file ({size} bytes)")
    raw = _read_at(fh, table_at, table_len)
    if len(raw) < table_len:
        raise PeError("truncated", f"{origin}: section table at {table_at} cut short ({len(raw)} of {table_len} bytes)")
    sections = []
    for i in range(nsections):
        name, vsize, vaddr, rsize, roff, *_ = _SECTION.unpack_from(raw, i * _SECTION.size)
        sections.append(Section(name.rstrip(b"\0").decode("latin-1"), vsize, vaddr, rsize, roff))
    return PeImage(machine, subsystem, size_of_image, tuple(sections), size)


def check_section(image: PeImage, section: Section, origin: str = "image") -> None:
    """A section a loader could map: its file data inside the file, its memory inside SizeOfImage."""
    if section.raw_offset + section.file_size > image.file_size:
        raise PeError("section_out_of_file", f"{origin}: section {section.name} at offset {section.raw_offset} "
                      f"({section.file_size} bytes) runs past the end of the file ({image.file_size} bytes)")
    if section.virtual_address + section.virtual_size > image.size_of_image:
        raise PeError("section_beyond_image", f"{origin}: section {section.name} of VirtualSize {section.virtual_size} "
                      f"at 0x{section.virtual_address:x} lies beyond SizeOfImage 0x{image.size_of_image:x}")


def section_bytes(fh: BinaryIO, image: PeImage, section: Section, limit: int = TEXT_MAX,
                  origin: str = "image") -> bytes:
    """A small section's file data, at most ``limit`` bytes (a larger VirtualSize is refused, as
    bootctl refuses one over 4 MiB, never truncated)."""
    if section.virtual_size > limit:
        raise PeError("too_large", f"{origin}: section {section.name} has VirtualSize {section.virtual_size}, "
                      f"more than {limit}")
    check_section(image, section, origin)
    data = _read_at(fh, section.raw_offset, section.file_size)
    if len(data) < section.file_size:
        raise PeError("section_out_of_file", f"{origin}: section {section.name} cut short by the end of the file")
    return data


def section_text(data: bytes, name: str, origin: str = "image") -> str:
    """A text section as bootctl takes it: NULs only at the end (pe_read_section_data)."""
    nul = data.find(b"\0")
    if nul >= 0 and data[nul:].strip(b"\0"):
        raise PeError("bad_text", f"{origin}: section {name} has a NUL byte inside its text")
    return data[:nul if nul >= 0 else len(data)].decode("utf-8", "replace")


class SectionFile(io.RawIOBase):
    """A read-only, seekable view of one section's file data, for a streaming reader (the
    initramfs lister) that must not see the rest of the file."""

    def __init__(self, fh: BinaryIO, image: PeImage, section: Section, origin: str = "image") -> None:
        super().__init__()
        check_section(image, section, origin)
        self._fh = fh
        self._start = section.raw_offset
        self._size = section.file_size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            self._pos = pos
        elif whence == os.SEEK_CUR:
            self._pos += pos
        elif whence == os.SEEK_END:
            self._pos = self._size + pos
        else:   # SEEK_DATA/SEEK_HOLE are not translated: the caller reads the NULs instead
            raise OSError(22, "only SEEK_SET, SEEK_CUR and SEEK_END in a PE section")
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        left = max(0, self._size - self._pos)
        n = left if n is None or n < 0 else min(n, left)
        if n == 0:
            return b""
        self._fh.seek(self._start + self._pos)
        data = self._fh.read(n)
        self._pos += len(data)
        return data

    def readinto(self, b) -> int:   # io.RawIOBase's contract
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


# ---------------------------------------------------------------------------------------------
# Unified kernel images


@dataclass(frozen=True)
class UkiProfile:
    """One profile's texts (its own section, else the base one): ``.osrel``, ``.profile``, ``.cmdline``."""

    number: int
    osrel: str
    profile: str | None
    cmdline: str | None


@dataclass(frozen=True)
class Uki:
    image: PeImage
    uname: str | None                    # the kernel release: .uname, else the bzImage's version string
    profiles: tuple[UkiProfile, ...]     # those with an .osrel (bootctl lists no other)

    @property
    def initrd(self) -> Section | None:
        """The base ``.initrd`` (the initramfs every profile without its own boots with)."""
        return self.image.profile_section(".initrd", 0)


# ukify's Uname.VERSION_PATTERN, for a bzImage's kernel_version string
_UNAME = re.compile(r"(?P<version>[a-z0-9._+-]+) \([^ )]+\) (?:#.*)")
_SETUP_MAX = 0x200 + 0xFFFF + 128


def bzimage_uname(head: bytes) -> str | None:
    """The release in an x86 bzImage's boot header (ukify's Uname.scrape_x86: ``HdrS`` at 0x202,
    the kernel_version pointer at 0x20E, the string at 0x200 + pointer); None when absent."""
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        return None
    at = 0x200 + struct.unpack_from("<H", head, 0x20E)[0]
    text = head[at: at + 128].split(b"\0", 1)[0].decode("latin-1")
    m = _UNAME.match(text)
    return m.group("version") if m else None


def read_uki(fh: BinaryIO, size: int | None = None, origin: str = "image") -> Uki | None:
    """A UKI's headers and small sections (bootspec.c pe_find_uki_sections for each profile);
    None for a PE file that is not a UKI (no ``.linux`` or ``.osrel``: an add-on, a boot loader).
    The kernel release is ``.uname``; without it, the ``.linux`` bzImage's version string, which
    is what ukify writes into ``.uname`` when not told one."""
    image = parse_pe(fh, size, origin)
    if not image.is_uki:
        return None
    profiles = []
    for number in range(min(image.profiles(), 256)):       # UNIFIED_PROFILES_MAX
        texts = {}
        for name in (".osrel", ".profile", ".cmdline"):
            section = image.profile_section(name, number)
            texts[name] = None if section is None else section_text(
                section_bytes(fh, image, section, TEXT_MAX, origin), name, origin)
        if texts[".osrel"] is not None:
            cmdline = texts[".cmdline"].strip() if texts[".cmdline"] is not None else None
            profiles.append(UkiProfile(number, texts[".osrel"], texts[".profile"], cmdline or None))
    uname_section = image.profile_section(".uname", 0)
    uname = None
    if uname_section is not None:
        uname = section_text(section_bytes(fh, image, uname_section, TEXT_MAX, origin), ".uname", origin).strip() or None
    if uname is None:
        linux = image.find(".linux")
        assert linux is not None
        check_section(image, linux, origin)
        fh.seek(linux.raw_offset)
        uname = bzimage_uname(fh.read(min(linux.file_size, _SETUP_MAX)))
    return Uki(image, uname, tuple(profiles))
