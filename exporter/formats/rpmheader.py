"""rpm header blobs: the package records of every rpmdb backend (sqlite, Berkeley DB, ndb).

A blob is what rpm stores per installed package (rpm's lib/header.c ``headerExport``; the
``8e ad e8 01`` magic of package files is not stored): big-endian ``il`` (entries) and ``dl``
(data bytes), ``il`` index entries of tag, type, offset, count, then ``dl`` bytes of data.  The
first entry is usually the immutable region (tag 63): the entries of the package file as built;
entries after the region ("dribbles", e.g. INSTALLTIME) were added at install time and replace
region entries of the same tag.  The checks are rpm's own (``hdrblobInit``,
``hdrblobVerifyRegion``, ``hdrblobVerifyInfo``): a blob rpm would refuse is refused here, with
rpm's reason.  Tag numbers and type codes are rpm's include/rpm/rpmtag.h names.
Sources: docs/formats.md, "rpm headers".
"""

from __future__ import annotations

import struct

# include/rpm/rpmtag.h: rpmTag_e (the ones the exporter reads; region tags from header.h)
RPMTAG_HEADERIMAGE = 61
RPMTAG_HEADERSIGNATURES = 62
RPMTAG_HEADERIMMUTABLE = 63
RPMTAG_HEADERI18NTABLE = 100
RPMTAG_NAME = 1000
RPMTAG_VERSION = 1001
RPMTAG_RELEASE = 1002
RPMTAG_EPOCH = 1003
RPMTAG_BUILDTIME = 1006
RPMTAG_INSTALLTIME = 1008
RPMTAG_ARCH = 1022
RPMTAG_OLDFILENAMES = 1027
RPMTAG_SOURCERPM = 1044
RPMTAG_PROVIDENAME = 1047
RPMTAG_REQUIRENAME = 1049
RPMTAG_PROVIDEFLAGS = 1112
RPMTAG_PROVIDEVERSION = 1113
RPMTAG_DIRINDEXES = 1116
RPMTAG_BASENAMES = 1117
RPMTAG_DIRNAMES = 1118
RPMTAG_INSTALLTID = 1128

# include/rpm/rpmtag.h: rpmTagType_e
RPM_NULL_TYPE = 0
RPM_CHAR_TYPE = 1
RPM_INT8_TYPE = 2
RPM_INT16_TYPE = 3
RPM_INT32_TYPE = 4
RPM_INT64_TYPE = 5
RPM_STRING_TYPE = 6
RPM_BIN_TYPE = 7
RPM_STRING_ARRAY_TYPE = 8
RPM_I18NSTRING_TYPE = 9

_STRING_CLASS = (RPM_STRING_TYPE, RPM_STRING_ARRAY_TYPE, RPM_I18NSTRING_TYPE)
_INT_FORMATS = {RPM_CHAR_TYPE: "B", RPM_INT8_TYPE: "B", RPM_INT16_TYPE: "H", RPM_INT32_TYPE: "I",
                RPM_INT64_TYPE: "Q"}
# lib/header.c typeSizes / typeAlign (-1: variable length)
_TYPE_SIZE = {RPM_NULL_TYPE: 0, RPM_CHAR_TYPE: 1, RPM_INT8_TYPE: 1, RPM_INT16_TYPE: 2, RPM_INT32_TYPE: 4,
              RPM_INT64_TYPE: 8, RPM_STRING_TYPE: -1, RPM_BIN_TYPE: 1, RPM_STRING_ARRAY_TYPE: -1,
              RPM_I18NSTRING_TYPE: -1}
_TYPE_ALIGN = {RPM_INT16_TYPE: 2, RPM_INT32_TYPE: 4, RPM_INT64_TYPE: 8}
# the types rpm knows for the tags read here (hdrchkTagType: a known tag of another type is refused)
_TAG_TYPES = {RPMTAG_EPOCH: RPM_INT32_TYPE, RPMTAG_BUILDTIME: RPM_INT32_TYPE, RPMTAG_INSTALLTIME: RPM_INT32_TYPE,
              RPMTAG_PROVIDEFLAGS: RPM_INT32_TYPE, RPMTAG_DIRINDEXES: RPM_INT32_TYPE,
              RPMTAG_INSTALLTID: RPM_INT32_TYPE}
_STRING_TAGS = (RPMTAG_NAME, RPMTAG_VERSION, RPMTAG_RELEASE, RPMTAG_ARCH, RPMTAG_SOURCERPM, RPMTAG_PROVIDENAME,
                RPMTAG_REQUIRENAME, RPMTAG_PROVIDEVERSION, RPMTAG_BASENAMES, RPMTAG_DIRNAMES, RPMTAG_OLDFILENAMES)

HEADER_TAGS_MAX = 0x0000FFFF
HEADER_DATA_MAX = 0x0FFFFFFF
HEADER_ARRAY_MAX = 0x000FFFFF
HEADER_MAX_BYTES = 256 * 1024 * 1024
_ENTRY = struct.Struct(">iIiI")     # tag, type, offset (signed: region trailers), count
_REGION_TAG_COUNT = 16


class RpmHeaderError(ValueError):
    """A blob rpm would refuse (its words where it has them: "region trailer: BAD", ...)."""


# an index entry: (tag, type, offset, count), as struct unpacks it (tuples: a header has ~50)
_Entry = tuple


class Header:
    """One parsed blob: its index (region entries replaced by dribbles) over its data."""

    __slots__ = ("_data", "_index")

    def __init__(self, data: bytes, index: dict[int, _Entry]) -> None:
        self._data = data
        self._index = index

    def __contains__(self, tag: int) -> bool:
        return tag in self._index

    def tags(self) -> list[int]:
        return sorted(self._index)

    def strings(self, tag: int) -> list[str]:
        """A string-class entry as a list (STRING: one item); [] when absent."""
        e = self._index.get(tag)
        if e is None:
            return []
        _, etype, offset, ecount = e
        if etype not in _STRING_CLASS:
            raise RpmHeaderError(f"tag {tag}: type {etype} where a string was expected")
        count = 1 if etype == RPM_STRING_TYPE else ecount
        out, pos = [], offset
        for _ in range(count):
            end = self._data.index(b"\0", pos)     # verified to exist when the blob was parsed
            out.append(self._data[pos:end].decode("utf-8", "replace"))
            pos = end + 1
        return out

    def string(self, tag: int) -> str | None:
        """The first string of a string-class entry (rpm's headerGetString), None when absent."""
        found = self.strings(tag)
        return found[0] if found else None

    def integers(self, tag: int) -> list[int]:
        e = self._index.get(tag)
        if e is None:
            return []
        _, etype, offset, count = e
        fmt = _INT_FORMATS.get(etype)
        if fmt is None:
            raise RpmHeaderError(f"tag {tag}: type {etype} where an integer was expected")
        return list(struct.unpack_from(f">{count}{fmt}", self._data, offset))

    def integer(self, tag: int) -> int | None:
        found = self.integers(tag)
        return found[0] if found else None

    def filenames(self) -> list[str]:
        """The package's paths: DIRNAMES[DIRINDEXES[i]] + BASENAMES[i] (OLDFILENAMES in rpm 3 headers)."""
        basenames = self.strings(RPMTAG_BASENAMES)
        if not basenames:
            return self.strings(RPMTAG_OLDFILENAMES)
        dirnames, indexes = self.strings(RPMTAG_DIRNAMES), self.integers(RPMTAG_DIRINDEXES)
        if len(indexes) != len(basenames) or any(i >= len(dirnames) for i in indexes):
            raise RpmHeaderError("BASENAMES, DIRINDEXES and DIRNAMES do not agree")
        return [dirnames[i] + b for i, b in zip(indexes, basenames)]


def parse_header(blob: bytes) -> Header:
    """Parse an rpmdb header blob (no magic) the way rpm's headerImport reads it."""
    if len(blob) < 8:
        raise RpmHeaderError("hdr length: BAD")
    il, dl = struct.unpack_from(">II", blob)
    if il > HEADER_TAGS_MAX:
        raise RpmHeaderError(f"hdr tags: BAD, no. of tags({il}) out of range")
    if dl > HEADER_DATA_MAX:
        raise RpmHeaderError(f"hdr data: BAD, no. of bytes({dl}) out of range")
    pvlen = 8 + 16 * il + dl
    if pvlen >= HEADER_MAX_BYTES or pvlen != len(blob):
        raise RpmHeaderError(f"blob size({len(blob)}): BAD, 8 + 16 * il({il}) + dl({dl})")
    if il < 1:
        raise RpmHeaderError("region: no tags")
    entries = list(_ENTRY.iter_unpack(blob[8:8 + 16 * il]))
    data = blob[8 + 16 * il:]
    region, ril, rdl = _region(entries, data, dl, il)
    _verify_entries(entries[1:] if region else entries, data, dl, region, rdl)
    index: dict[int, _Entry] = {e[0]: e for e in (entries[1:ril] if region else entries)}
    for e in entries[ril:] if region else ():   # dribbles replace duplicate region entries
        index[e[0]] = e
        if e[0] == RPMTAG_BASENAMES:
            index.pop(RPMTAG_OLDFILENAMES, None)
    return Header(data, index)


def _region(entries: list[_Entry], data: bytes, dl: int, il: int) -> tuple[int, int, int]:
    """(region tag, ril, rdl) per hdrblobVerifyRegion; region tag 0 for a header without one."""
    tag, etype, offset, count = entries[0]
    if tag not in (RPMTAG_HEADERIMAGE, RPMTAG_HEADERSIGNATURES, RPMTAG_HEADERIMMUTABLE):
        return 0, il, dl
    if etype != RPM_BIN_TYPE or count != _REGION_TAG_COUNT:
        raise RpmHeaderError(f"region tag: BAD, tag {tag} type {etype} offset {offset} count {count}")
    if offset < 0 or offset + _REGION_TAG_COUNT > dl:
        raise RpmHeaderError(f"region offset: BAD, tag {tag} type {etype} offset {offset} count {count}")
    ttag, ttype, toffset, tcount = _ENTRY.unpack_from(data, offset)
    if tag == RPMTAG_HEADERSIGNATURES and ttag == RPMTAG_HEADERIMAGE:
        ttag = RPMTAG_HEADERSIGNATURES
    if ttag != tag or ttype != RPM_BIN_TYPE or tcount != _REGION_TAG_COUNT:
        raise RpmHeaderError(f"region trailer: BAD, tag {ttag} type {ttype} offset {-toffset} count {tcount}")
    size = -toffset
    rdl = offset + _REGION_TAG_COUNT
    ril = size // 16
    if size % 16 or not 0 <= ril <= il or rdl > dl:
        raise RpmHeaderError(f"region {tag} size: BAD, ril {ril} il {il} rdl {rdl} dl {dl}")
    return tag, max(ril, 1), rdl


def _verify_entries(entries: list[_Entry], data: bytes, dl: int, region: int, rdl: int) -> None:
    """hdrblobVerifyInfo: every entry's tag, type, count, alignment and extent, in index order."""
    typechk = region in (RPMTAG_HEADERIMMUTABLE, RPMTAG_HEADERIMAGE)
    end = 0
    sizes, aligns, find = _TYPE_SIZE, _TYPE_ALIGN, data.find
    trailer_from = rdl - _REGION_TAG_COUNT
    for i, (tag, etype, offset, count) in enumerate(entries):
        size = sizes.get(etype)
        bad = (size is None or end > offset or tag < RPMTAG_HEADERI18NTABLE or count < 1 or count > dl
               or offset < 0 or offset > dl or offset % aligns.get(etype, 1)
               or (etype != RPM_BIN_TYPE and count > HEADER_ARRAY_MAX)
               or (typechk and not _type_ok(tag, etype)))
        length = -1
        if not bad:
            if size >= 0:
                length = size * count if dl - offset >= size * count else -1
            elif etype != RPM_STRING_TYPE or count == 1:
                pos = offset
                for _ in range(count):
                    nul = find(b"\0", pos, dl)
                    if nul < 0:
                        pos = -1
                        break
                    pos = nul + 1
                length = pos - offset if pos >= 0 else -1
        if bad or length <= 0 or offset + length > dl or (region and offset + length > trailer_from and offset < rdl):
            raise RpmHeaderError(f"tag[{i}]: BAD, tag {tag} type {etype} offset {offset} count {count} "
                                 f"len {max(length, 0)}")
        end = offset + length


def _type_ok(tag: int, etype: int) -> bool:
    if tag in _STRING_TAGS:
        return etype in _STRING_CLASS
    expected = _TAG_TYPES.get(tag)
    return expected is None or expected == etype

RPM_LEAD_MAGIC = b"\xed\xab\xee\xdb"
HEADER_MAGIC = b"\x8e\xad\xe8\x01"
_LEAD_SIZE = 96


def parse_package_header(head: bytes) -> Header:
    """The main header of a package file (.rpm, .src.rpm) from its first bytes: the 96-byte
    lead, the signature header (magic, region 62, padded to 8 bytes), then the header, as rpm's
    rpmReadPackageFile lays them out (lib/package.c, lib/rpmlead.c).  ``head`` must hold both."""
    if head[:4] != RPM_LEAD_MAGIC or len(head) < _LEAD_SIZE:
        raise RpmHeaderError("lead magic: BAD (not an rpm package file)")
    sig_blob, _ = _with_magic(head, _LEAD_SIZE, "signature ")
    parse_header(sig_blob)     # rpm refuses the package when its signature header is bad
    blob, _ = _with_magic(head, _LEAD_SIZE + _padded(len(sig_blob) + 8), "")
    return parse_header(blob)


def _padded(n: int) -> int:
    return n + (8 - n % 8) % 8


def _with_magic(data: bytes, at: int, what: str) -> tuple[bytes, int]:
    if data[at:at + 4] != HEADER_MAGIC or len(data) < at + 16:
        raise RpmHeaderError(f"{what}hdr magic: BAD")
    il, dl = struct.unpack_from(">II", data, at + 8)
    if il > HEADER_TAGS_MAX or dl > HEADER_DATA_MAX:
        raise RpmHeaderError(f"{what}hdr size: BAD, il {il} dl {dl}")
    end = at + 16 + 16 * il + dl
    if end > len(data):
        raise RpmHeaderError(f"{what}header ends at byte {end}, past the {len(data)} bytes read")
    return data[at + 8:end], end
