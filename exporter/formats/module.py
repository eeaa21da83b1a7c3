"""Read one kernel module file (.ko, .ko.zst, .ko.xz, .ko.gz) the way the kernel and kmod see it.

What comes out is what decides whether the module loads: `.modinfo` (name, vermagic, ...),
`__versions` (symbol CRCs), the undefined symbols it needs, and the appended signature
(signer / key id / hash algorithm exactly as Debian 12's `modinfo -F signer|sig_key|sig_hashalgo`
print them).  Byte layouts and sources: docs/formats.md, "Kernel module files".

Every malformed input raises :class:`ModuleFileError` with a short stable ``code``; nothing
else escapes, and decompression (exporter.formats.decompress) is bounded: a bomb is ``too_large``,
never an OOM.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import BinaryIO

from .decompress import LIBKMOD, MAGIC_MAX, DecompressError, decompress, sniff
from .modview import HEADER, TAIL, WHOLE_MAX, BytesView, Digest, FileView, Missing, SparseView, View, shdr_window, stream_pass
from .x509 import format_key_id, name_cn_like_kmod

DEFAULT_MAX = 256 * 1024 * 1024
"""Bound on a module's decompressed size: far above real modules (Debian's largest in-tree
modules are a few MB, vendor GPU drivers tens of MB), far below what would hurt the host."""

SIG_MAGIC = b"~Module signature appended~\n"
_MODSIG = struct.Struct(">BBBBB3sI")  # struct module_signature, sig_len big-endian
PKEY_ID_PKCS7 = 2

# Undefined symbols the kernel's module loader resolves (or ignores) itself instead of looking
# them up among exported symbols: kernel/module/main.c ignore_undef_symbol() (x86) and
# arch/powerpc/kernel/module_64.c (.TOC. becomes SHN_ABS before symbol resolution).
_LOADER_RESOLVED = {
    "EM_X86_64": {"_GLOBAL_OFFSET_TABLE_"},
    "EM_386": {"_GLOBAL_OFFSET_TABLE_"},
    "EM_PPC64": {".TOC."},
}

# sig_hashalgo names.  Debian 12's kmod 30 names only these digests (obj_to_hash_algo() in
# libkmod-signature.c, note "rmd160") and shows no signature at all for any other digest;
# kmod >= 32 prints OpenSSL's OBJ_obj2txt() name instead.  For digests kmod 30 cannot name the
# exporter uses the kmod >= 32 name rather than hiding a signature that is there.
_KMOD30_DIGEST_NAMES = {
    "1.2.840.113549.2.4": "md4",
    "1.2.840.113549.2.5": "md5",
    "1.3.14.3.2.26": "sha1",
    "1.3.36.3.2.1": "rmd160",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "1.2.156.10197.1.401": "sm3",
}
_OPENSSL_DIGEST_NAMES = {
    "2.16.840.1.101.3.4.2.5": "sha512-224",
    "2.16.840.1.101.3.4.2.6": "sha512-256",
    "2.16.840.1.101.3.4.2.7": "sha3-224",
    "2.16.840.1.101.3.4.2.8": "sha3-256",
    "2.16.840.1.101.3.4.2.9": "sha3-384",
    "2.16.840.1.101.3.4.2.10": "sha3-512",
    "2.16.840.1.101.3.4.2.11": "shake128",
    "2.16.840.1.101.3.4.2.12": "shake256",
}

# Errors asn1crypto and struct raise on malformed input; they are turned into ModuleFileError.
_PARSER_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    AssertionError,
    UnicodeDecodeError,
    struct.error,
    RecursionError,
)


class ModuleFileError(Exception):
    """A module file that cannot be read or is not a loadable module.

    ``code`` is short and stable (for metrics/readiness): empty, unreadable, truncated, not_elf,
    not_module, bad_elf, bad_versions, too_large, bad_compression, bad_signature,
    unsupported_signature.  The message says what and where (offsets into the decompressed data).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ModuleSignature:
    """The appended PKCS#7 signature's identity, as `modinfo` prints it.

    ``signer`` is the CN of the *issuer* in the SignerInfo (kmod falls back to the last name
    attribute when there is no CN); ``key_id`` is the certificate *serial* as uppercase
    colon-separated hex of its minimal big-endian magnitude (kmod: BN_bn2bin), not the SKID.
    ``skid`` is set instead of signer/key_id when the signer is identified by
    subjectKeyIdentifier (`sign-file -k`); Debian's modinfo prints nothing for those.
    """

    id_type: str
    signer: str
    key_id: str
    hash_algo: str
    skid: str | None = None
    # What verifying it takes (exporter/formats/modsig.py), not part of its identity: the digest
    # of the bytes before the signature (None when hashlib has no such digest), the SignerInfo's
    # signature value and algorithm OID, the signed attributes re-encoded as the SET OF that was
    # signed (None without any) and the encapsulated content type.
    content_digest: bytes | None = field(default=None, compare=False, repr=False)
    signature_value: bytes = field(default=b"", compare=False, repr=False)
    signature_algo: str = field(default="", compare=False, repr=False)
    signed_attrs: bytes | None = field(default=None, compare=False, repr=False)
    content_type: str = field(default="1.2.840.113549.1.7.1", compare=False, repr=False)


@dataclass(frozen=True)
class ModuleFile:
    """Loadability facts of one module file.

    ``undefined`` are the global undefined symbols from .symtab that must be found among the
    running kernel's exports, without the ones the loader resolves itself (see
    _LOADER_RESOLVED) and without weak ones (``weak_undefined``: may stay unresolved).
    ``retpoline`` is True/False when `.modinfo` has retpoline=Y/other and None when the key is
    absent.  ``has_versions`` tells whether a ``__versions`` section exists at all (it changes how
    vermagic is compared, see symvers.vermagic_matches).
    """

    name: str | None
    vermagic: str | None
    version: str | None
    srcversion: str | None
    license: str | None
    depends: tuple[str, ...]
    intree: bool
    retpoline: bool | None
    versions: tuple[tuple[str, int], ...]
    undefined: tuple[str, ...]
    signature: ModuleSignature | None
    compression: str
    modinfo: tuple[tuple[str, str], ...]
    has_versions: bool = False
    weak_undefined: tuple[str, ...] = ()
    machine: str = ""
    elf_class: int = 64
    byte_order: str = "little"
    xz_check: int | None = None    # an xz file's check ID (0 none, 1 CRC32, 4 CRC64, 10 SHA-256)

    def modinfo_values(self, key: str) -> tuple[str, ...]:
        """All values of a repeatable .modinfo key (alias, import_ns, firmware, ...)."""
        return tuple(v for k, v in self.modinfo if k == key)

    @property
    def checked_symbols(self) -> tuple[str, ...]:
        """Every symbol name the loader looks up in a kernel's exports for this module: the
        undefined ones, weak ones too (one that is found is checked like any other), and the
        ``__versions`` entries (modpost's module_layout among them)."""
        return (*self.undefined, *self.weak_undefined, *(sym for sym, _ in self.versions))


# ---------------------------------------------------------------------------------------------
# Reading and decompressing


def detect_compression(raw: bytes) -> str:
    """Compression by magic bytes, as libkmod tells them (zstd, xz, gzip), never by file name."""
    return sniff(raw[:MAGIC_MAX], LIBKMOD) or "none"


def decompress_module(raw: bytes, max_bytes: int = DEFAULT_MAX) -> tuple[str, bytes]:
    """Return (compression, decompressed bytes); output beyond ``max_bytes`` is ``too_large``,
    any other fault of the compressed data ``bad_compression`` (with the offset in the file)."""
    fmt = detect_compression(raw)
    if fmt == "none":
        if len(raw) > max_bytes:
            raise ModuleFileError("too_large", f"{len(raw)} bytes is over the {max_bytes}-byte bound")
        return fmt, raw
    try:
        return fmt, decompress(raw, max_bytes, fmt)
    except DecompressError as exc:
        raise _decompress_error(exc) from None


def _decompress_error(exc: DecompressError) -> ModuleFileError:
    code = "too_large" if exc.code == "too_large" else "bad_compression"
    return ModuleFileError(code, f"{exc.detail} (at offset {exc.offset} of the file)")


XZ_CHECK_NAMES = {0: "none", 1: "CRC32", 4: "CRC64", 10: "SHA-256"}


def xz_check(raw: bytes) -> int | None:
    """The integrity check an xz file declares (the low nibble of its stream flags, bytes 6-7 after
    the magic), None for anything that is not xz: the kernel's own decompressor verifies only some."""
    if len(raw) < 8 or not raw.startswith(b"\xfd7zXZ\x00"):
        return None
    return raw[7] & 0x0F


def parse_module_stream(fh: BinaryIO, size: int, max_bytes: int = DEFAULT_MAX) -> ModuleFile:
    """Parse the module file open in ``fh`` (``size`` bytes on disk) without holding it: the
    pieces the checks need are read where they are and the signed content is hashed in
    chunks (exporter.formats.modview); a compressed file is decompressed in passes."""
    if size > max_bytes:
        raise ModuleFileError("too_large", f"file is over the {max_bytes}-byte bound")
    if size == 0:
        raise ModuleFileError("empty", "empty file")
    files = FileView(fh, size)
    fmt = detect_compression(files.pread(0, MAGIC_MAX))
    if fmt == "none":
        return _parse_view(files, "none", lambda name, end: _hash(files.chunks(end), name))
    try:
        parsed = _parse_compressed(fh, size, fmt, max_bytes)
    except DecompressError as exc:
        raise _decompress_error(exc) from None
    check = xz_check(files.pread(0, 8)) if fmt == "xz" else None
    return replace(parsed, xz_check=check) if check is not None else parsed


_MAX_PASSES = 4


def _parse_compressed(fh: BinaryIO, size: int, fmt: str, max_bytes: int) -> ModuleFile:
    """Stream the decompression until every piece the parser asks for is captured: one pass for
    a module that decompresses to at most WHOLE_MAX (kept whole), two for a bigger one (ends and
    section headers, then sections and digest)."""
    first = stream_pass(fh, size, fmt, max_bytes, [(0, HEADER)], tail=TAIL, grow=shdr_window, whole_max=WHOLE_MAX)
    if first.whole is not None:    # small enough to have been kept: parsed from memory
        whole = first.whole
        return _parse_view(BytesView(whole), fmt, lambda name, end: hashlib.new(name, memoryview(whole)[:end]).digest())
    view = SparseView(first.size, first.pieces)
    digest: bytes | None = None
    for _ in range(_MAX_PASSES):
        need, want = _missing(view)
        if want is not None and digest is not None:
            want = None
        if not need and want is None:
            break
        more = stream_pass(fh, size, fmt, max_bytes, need, digest=want)
        if more.size != view.size:
            raise OSError(f"decompressed to {more.size} bytes, then to {view.size}: the file changed while it was read")
        view.pieces.update(more.pieces)
        digest = digest or more.digest
    else:
        raise ModuleFileError("bad_elf", f"the parts the loader reads were still not found after {_MAX_PASSES + 1} passes")
    return _parse_view(view, fmt, lambda name, end: digest)


def _missing(view: SparseView) -> tuple[list[tuple[int, int]], Digest | None]:
    """What the parser would read that ``view`` lacks, and the digest to compute: the trailer
    first (it bounds the ELF), then the section headers, .shstrtab and the needed sections."""
    if view.size == 0:
        return [], None
    try:
        body_len, sig = _read_trailer(view)
    except Missing as m:
        return [(m.start, m.end)], None
    name = _HASHLIB_NAMES.get(sig.hash_algo) if sig is not None else None
    want = Digest(name, body_len) if name else None
    try:
        elf = _Elf(view, body_len)
    except Missing as m:
        return [(m.start, m.end)], want
    return [r for r in elf.needed_ranges() if not view.has(*r)], want


def _hash(chunks: Iterator[bytes | memoryview], name: str) -> bytes:
    h = hashlib.new(name)
    for chunk in chunks:
        h.update(chunk)
    return h.digest()


# ---------------------------------------------------------------------------------------------
# Signature trailer


def _read_trailer(view: View) -> tuple[int, ModuleSignature | None]:
    """(bytes before the signature, the signature without its digest), checked like the
    kernel's mod_check_sig()."""
    size = view.size
    if size < len(SIG_MAGIC) or view.pread(size - len(SIG_MAGIC), len(SIG_MAGIC)) != SIG_MAGIC:
        return size, None
    end = size - len(SIG_MAGIC)
    if end < _MODSIG.size:
        raise ModuleFileError(
            "bad_signature", f"signature magic at offset {end} leaves no room for module_signature"
        )
    ms_off = end - _MODSIG.size
    algo, hash_, id_type, signer_len, key_id_len, pad, sig_len = _MODSIG.unpack(view.pread(ms_off, _MODSIG.size))
    if sig_len == 0 or sig_len >= ms_off:
        raise ModuleFileError(
            "bad_signature",
            f"module_signature at offset {ms_off} has sig_len {sig_len}, past the "
            f"{ms_off} bytes before it",
        )
    if id_type != PKEY_ID_PKCS7:
        raise ModuleFileError(
            "unsupported_signature",
            f"module_signature at offset {ms_off} has id_type {id_type}, not PKCS#7 (2)",
        )
    if algo or hash_ or signer_len or key_id_len or any(pad):
        raise ModuleFileError(
            "bad_signature", f"module_signature at offset {ms_off} has non-zero legacy fields"
        )
    blob_off = ms_off - sig_len
    return blob_off, parse_pkcs7_signature(view.pread(blob_off, sig_len), blob_off)


# hash_algo names (above) that hashlib knows under another or the same name; the kernel's
# crypto API knows these too (sm3 and the rest: the exporter cannot verify, says so)
_HASHLIB_NAMES = {"sha1": "sha1", "sha224": "sha224", "sha256": "sha256", "sha384": "sha384",
                  "sha512": "sha512", "sha3-256": "sha3_256", "sha3-384": "sha3_384", "sha3-512": "sha3_512"}


def parse_pkcs7_signature(blob: bytes, offset: int = 0) -> ModuleSignature:
    """Signer identity of a module's detached PKCS#7 SignedData (first SignerInfo), with what
    verifying it needs (the kernel's pkcs7_parser.c reads the same fields)."""
    from asn1crypto import cms   # ~9 MiB and ~40 ms: imported by the first signature parsed, not by every run

    try:
        info = cms.ContentInfo.load(blob)
        if info["content_type"].dotted != "1.2.840.113549.1.7.2":
            raise ValueError(f"content type {info['content_type'].dotted} is not signedData")
        signed = info["content"]
        signed.native  # parse everything now, as OpenSSL's d2i_PKCS7 does
        signer_infos = signed["signer_infos"]
        if len(signer_infos) == 0:
            raise ValueError("no SignerInfo")
        si = signer_infos[0]
        oid = si["digest_algorithm"]["algorithm"].dotted
        hash_algo = _KMOD30_DIGEST_NAMES.get(oid) or _OPENSSL_DIGEST_NAMES.get(oid, oid)
        attrs = si["signed_attrs"].dump()  # b"" when absent
        verify = dict(
            signature_value=bytes(si["signature"].native),
            signature_algo=si["signature_algorithm"]["algorithm"].dotted,
            # [0] IMPLICIT in the message, signed as the universal SET OF (RFC 5652 5.4)
            signed_attrs=b"\x31" + attrs[1:] if attrs else None,
            content_type=signed["encap_content_info"]["content_type"].dotted,
        )
        sid = si["sid"]
        if sid.name == "issuer_and_serial_number":
            ias = sid.chosen
            return ModuleSignature(
                "PKCS#7",
                name_cn_like_kmod(ias["issuer"]),
                format_key_id(ias["serial_number"].native),
                hash_algo,
                **verify,
            )
        return ModuleSignature("PKCS#7", "", "", hash_algo, skid=bytes(sid.chosen.native).hex(), **verify)
    except _PARSER_ERRORS as e:
        raise ModuleFileError(
            "bad_signature", f"PKCS#7 blob at offset {offset} ({len(blob)} bytes): {e}"
        ) from None


# ---------------------------------------------------------------------------------------------
# ELF


def parse_module(data: bytes, *, compression: str = "none") -> ModuleFile:
    """Parse decompressed module bytes (``compression`` only records what the file was)."""
    view = BytesView(data)
    return _parse_view(view, compression, lambda name, end: _hash(view.chunks(end), name))


def _parse_view(view: View, compression: str, digest_of: Callable[[str, int], bytes | None]) -> ModuleFile:
    if view.size == 0:
        raise ModuleFileError("empty", "empty file")
    head = view.pread(0, MAGIC_MAX)
    fmt = detect_compression(head)
    if fmt != "none" and not head.startswith(b"\x7fELF"):
        raise ModuleFileError("not_elf", f"data is {fmt}-compressed; decompress it first")
    body_len, signature = _read_trailer(view)
    if signature is not None and (name := _HASHLIB_NAMES.get(signature.hash_algo)):
        signature = replace(signature, content_digest=digest_of(name, body_len))
    try:
        return _parse_elf(_Elf(view, body_len), signature, compression)
    except ModuleFileError:
        raise
    except _PARSER_ERRORS as e:
        raise ModuleFileError("bad_elf", f"malformed ELF: {type(e).__name__}: {e}") from None


def _parse_elf(elf: _Elf, signature: ModuleSignature | None, compression: str) -> ModuleFile:
    sections = elf.sections
    modinfo = _read_modinfo(elf, sections.get(".modinfo"))
    this_module = sections.get(".gnu.linkonce.this_module")
    if this_module is None:
        raise ModuleFileError(
            "not_module", "no .gnu.linkonce.this_module section: the kernel refuses it (ENOEXEC)"
        )
    machine = elf.machine
    versions_sec = sections.get("__versions")
    versions = _read_versions(versions_sec, elf, machine) if versions_sec is not None else ()
    undefined, weak = _read_undefined(elf, sections.get(".symtab"), machine)
    first = {}
    for key, value in modinfo:
        first.setdefault(key, value)
    retpoline = first.get("retpoline")
    return ModuleFile(
        name=first.get("name") or _this_module_name(this_module, elf),
        vermagic=first.get("vermagic"),
        version=first.get("version"),
        srcversion=first.get("srcversion"),
        license=first.get("license"),
        depends=tuple(d for d in first.get("depends", "").split(",") if d),
        intree="intree" in first,
        retpoline=None if retpoline is None else retpoline == "Y",
        versions=versions,
        undefined=undefined,
        signature=signature,
        compression=compression,
        modinfo=modinfo,
        has_versions=versions_sec is not None,
        weak_undefined=weak,
        machine=machine,
        elf_class=elf.elfclass,
        byte_order="little" if elf.little_endian else "big",
    )


_EHDR_TAIL = {  # (offset of e_type, struct for e_type..e_shstrndx)
    1: (16, "HHIIIIIHHHHHH"),  # ELFCLASS32
    2: (16, "HHIQQQIHHHHHH"),  # ELFCLASS64
}
_SHDR = {1: "IIIIIIIIII", 2: "IIQQQQIIQQ"}  # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, ...
SHT_SYMTAB, SHT_NOBITS, SHT_DYNSYM = 2, 8, 11
# e_machine names as pyelftools' ENUM_E_MACHINE spells them (ModuleFile.machine and the persistent
# cache keep these; tests/test_modfile.py holds the table equal to pyelftools'); a machine not
# listed here is looked up in pyelftools' table, imported only then (5 MiB and ~65 ms otherwise
# paid by every cold scrape).
_MACHINES = {
    2: "EM_SPARC", 3: "EM_386", 8: "EM_MIPS", 15: "EM_PARISC", 20: "EM_PPC", 21: "EM_PPC64",
    22: "EM_S390", 40: "EM_ARM", 42: "EM_SH", 43: "EM_SPARCV9", 50: "EM_IA_64", 62: "EM_X86_64",
    183: "EM_AARCH64", 243: "EM_RISCV", 258: "EM_LOONGARCH",
}


def machine_name(number: int) -> str:
    """pyelftools' name of an e_machine value (its number, as text, when it has none)."""
    name = _MACHINES.get(number)
    if name is None:
        from elftools.elf.enums import ENUM_E_MACHINE  # only for a machine the table lacks

        # construct's Enum decodes through {value: name}: for a value named twice the last name wins
        name = {v: k for k, v in ENUM_E_MACHINE.items() if k != "_default_"}.get(number, str(number))
    return name


_NEEDED = (".modinfo", ".gnu.linkonce.this_module", "__versions", ".symtab")


@dataclass(frozen=True)
class _Section:
    name: str
    type: int
    offset: int
    size: int
    link: int


class _Elf:
    """An ET_REL module's header and section table, read from a view after the bounds checks
    of the kernel's elf_validity_check(); sections by name (first wins, as find_sec()).
    Section contents are read only when asked for (``data``)."""

    def __init__(self, view: View, body_len: int) -> None:
        self.view = view
        head = view.pread(0, min(HEADER, body_len))
        if not head.startswith(b"\x7fELF"):
            raise ModuleFileError("not_elf", f"no ELF magic at offset 0 (starts with {head[:4]!r})")
        ei_class, ei_data = head[4:5], head[5:6]
        if ei_class not in (b"\x01", b"\x02") or ei_data not in (b"\x01", b"\x02"):
            raise ModuleFileError("bad_elf", f"ELF class/data bytes {head[4:6].hex()} are invalid")
        off, fields = _EHDR_TAIL[ei_class[0]]
        order = "<" if ei_data == b"\x01" else ">"
        if len(head) < off + struct.calcsize(order + fields):
            raise ModuleFileError("truncated", f"ELF header cut at offset {body_len}")
        hdr = struct.unpack_from(order + fields, head, off)
        e_type, shoff, shentsize, shnum, shstrndx = hdr[0], hdr[5], hdr[10], hdr[11], hdr[12]
        if e_type != 1:
            raise ModuleFileError("not_module", f"ELF e_type {e_type}, modules are ET_REL (1)")
        want = 64 if ei_class == b"\x02" else 40
        if shentsize != want:
            raise ModuleFileError("bad_elf", f"e_shentsize {shentsize}, expected {want}")
        if shnum == 0 or shoff + shnum * shentsize > body_len:
            raise ModuleFileError(
                "truncated",
                f"section headers at offset {shoff} ({shnum} x {shentsize} bytes) "
                f"run past the end of the {body_len}-byte ELF",
            )
        if shstrndx >= shnum:
            raise ModuleFileError("bad_elf", f"e_shstrndx {shstrndx} >= e_shnum {shnum}")
        self.elfclass = 64 if ei_class == b"\x02" else 32
        self.little_endian = ei_data == b"\x01"
        self.machine = machine_name(hdr[1])
        self.order = order
        table = view.pread(shoff, shnum * shentsize)
        raw = list(struct.iter_unpack(order + _SHDR[ei_class[0]], table))
        for index, (_, sh_type, _, _, sh_offset, sh_size, *_rest) in enumerate(raw):
            if sh_type != SHT_NOBITS and sh_offset + sh_size > body_len:
                raise ModuleFileError(
                    "truncated",
                    f"section {index} at offset {sh_offset} (+{sh_size} bytes) "
                    f"runs past the end of the {body_len}-byte ELF",
                )
        strs = raw[shstrndx]
        names = b"" if strs[1] == SHT_NOBITS else view.pread(strs[4], strs[5])
        self.by_index = tuple(_Section(_cstring(names, r[0]), r[1], r[4], r[5], r[6]) for r in raw)
        self.sections: dict[str, _Section] = {}
        for sec in self.by_index:
            self.sections.setdefault(sec.name, sec)

    def data(self, sec: _Section) -> bytes:
        """A section's bytes in the file.  SHT_NOBITS has none (its sh_size is whatever the file
        says: 2**60 would be a MemoryError)."""
        return b"" if sec.type == SHT_NOBITS else self.view.pread(sec.offset, sec.size)

    def needed_ranges(self) -> list[tuple[int, int]]:
        """Where the sections the parser reads are (for a view that streams: modview)."""
        secs = [self.sections[n] for n in _NEEDED if n in self.sections]
        symtab = self.sections.get(".symtab")
        if symtab is not None and 0 < symtab.link < len(self.by_index):
            secs.append(self.by_index[symtab.link])
        return [(s.offset, s.offset + s.size) for s in secs if s.type != SHT_NOBITS and s.size]


def _cstring(table: bytes, offset: int) -> str:
    end = table.find(b"\x00", offset)
    return table[offset : end if end >= 0 else len(table)].decode("utf-8", "replace")


def _read_modinfo(elf: _Elf, sec: _Section | None) -> tuple[tuple[str, str], ...]:
    """NUL-separated key=value strings; empty runs skipped (as kmod does)."""
    if sec is None:
        return ()
    pairs = []
    for raw in elf.data(sec).split(b"\x00"):
        if not raw:
            continue
        key, sep, value = raw.decode("utf-8", "replace").partition("=")
        pairs.append((key, value))
    return tuple(pairs)


def _read_versions(sec: _Section, elf: _Elf, machine: str) -> tuple[tuple[str, int], ...]:
    """__versions: struct modversion_info { unsigned long crc; char name[64 - sizeof(long)]; }."""
    data = elf.data(sec)
    if len(data) % 64:
        raise ModuleFileError(
            "bad_versions",
            f"__versions at offset {sec.offset} is {len(data)} bytes, not a multiple of 64",
        )
    word = 8 if elf.elfclass == 64 else 4
    crc_fmt = elf.order + ("Q" if word == 8 else "I")
    entries = []
    for off in range(0, len(data), 64):
        (crc,) = struct.unpack_from(crc_fmt, data, off)
        name = data[off + word : off + 64].split(b"\x00", 1)[0].decode("utf-8", "replace")
        if machine == "EM_PPC64" and name.startswith("."):
            name = name[1:]  # arch/powerpc dedotify_versions()
        entries.append((name, crc))
    return tuple(entries)


_SYM_LAYOUT = {  # Elf32_Sym / Elf64_Sym: (struct fields, index of st_info, index of st_shndx)
    32: ("IIIBBH", 3, 5),
    64: ("IBBHQQ", 1, 3),
}


def _read_undefined(elf: _Elf, symtab: _Section | None, machine: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(strong, weak) undefined symbol names from .symtab, as simplify_symbols() sees them.

    Unpacked with struct (a zfs/nvidia-sized module has thousands of symbols).  Like the kernel,
    entries are sizeof(Elf_Sym) apart whatever sh_entsize says, and names come from the section
    sh_link names."""
    if symtab is None or symtab.type not in (SHT_SYMTAB, SHT_DYNSYM):
        raise ModuleFileError("bad_elf", "no .symtab: the kernel refuses it (stripped module?)")
    fields, info_at, shndx_at = _SYM_LAYOUT[elf.elfclass]
    layout = struct.Struct(elf.order + fields)
    link = symtab.link
    if not 0 < link < len(elf.by_index):
        raise ModuleFileError("bad_elf", f".symtab sh_link {link} is not a section")
    strtab = elf.data(elf.by_index[link])
    data = elf.data(symtab)
    data = data[: len(data) - len(data) % layout.size]
    resolved_by_loader = _LOADER_RESOLVED.get(machine, set())
    strong, weak = [], []
    for sym in layout.iter_unpack(data):
        if sym[shndx_at] != 0 or not sym[0]:   # SHN_UNDEF only; st_name 0 is the empty name
            continue
        end = strtab.find(b"\x00", sym[0])
        name = strtab[sym[0] : end if end >= 0 else len(strtab)].decode("utf-8", "replace")
        if not name or name in resolved_by_loader:
            continue
        if machine == "EM_PPC64" and name.startswith("."):
            name = name[1:]  # ELFv1 dot symbols, arch/powerpc dedotify()
        (weak if sym[info_at] >> 4 == 2 else strong).append(name)  # STB_WEAK
    return tuple(dict.fromkeys(strong)), tuple(dict.fromkeys(weak))


def _this_module_name(sec: _Section, elf: _Elf) -> str | None:
    """struct module's name[] (after enum state and list_head), the kernel's fallback name."""
    off = 24 if elf.elfclass == 64 else 12
    raw = elf.data(sec)[off : off + 64 - (8 if elf.elfclass == 64 else 4)]
    name = raw.split(b"\x00", 1)[0].decode("utf-8", "replace")
    return name or None
