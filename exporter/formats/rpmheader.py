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

import hashlib
import struct

# include/rpm/rpmtag.h: rpmTag_e (the ones the exporter reads; region tags from header.h)
RPMTAG_HEADERIMAGE = 61
RPMTAG_HEADERSIGNATURES = 62
RPMTAG_HEADERIMMUTABLE = 63
RPMTAG_HEADERI18NTABLE = 100
RPMTAG_SHA1HEADER = 269
RPMTAG_SHA256HEADER = 273
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
# The type of every tag rpm 4.18 knows (include/rpm/rpmtag.h, the type noted at each tag; rpm's
# tag table is generated from those notes): hdrchkTagType refuses a known tag of another type in
# an immutable region, except that string-class types stand in for each other.
_KNOWN_TAGS = {
    RPM_CHAR_TYPE: (1029,),
    RPM_INT16_TYPE: (1030, 1033,),
    RPM_INT32_TYPE: (277, 1003, 1006, 1008, 1009, 1028, 1031, 1032, 1034, 1037, 1045, 1046, 1048, 1051, 1052, 1053, 1068,
                     1069, 1080, 1095, 1096, 1105, 1106, 1112, 1114, 1116, 1119, 1127, 1128, 1129,
                     1134, 1136, 1138, 1139, 1140, 1141, 1143, 1144, 1145, 1158, 1161, 1162, 1174,
                     1175, 1176, 1177, 1179, 1180, 1184, 1185, 1187, 1189, 1190, 1191, 1192, 1195,
                     5011, 5017, 5018, 5019, 5020, 5021, 5022, 5023, 5024, 5025, 5026, 5027, 5032,
                     5033, 5037, 5045, 5048, 5051, 5054, 5057, 5068, 5070, 5072, 5078, 5080, 5082,
                     5084, 5085, 5091, 5093, 5094,),
    RPM_INT64_TYPE: (270, 271, 5004, 5008, 5009,),
    RPM_STRING_TYPE: (269, 273, 1000, 1001, 1002, 1007, 1010, 1011, 1014, 1015, 1020, 1021, 1022, 1023, 1024, 1025, 1026,
                      1044, 1056, 1057, 1058, 1063, 1064, 1079, 1094, 1122, 1123, 1124, 1125, 1126,
                      1131, 1132, 1137, 1151, 1152, 1155, 1163, 1170, 1181, 1196, 5012, 5013, 5014,
                      5015, 5016, 5034, 5062, 5083, 5095, 5096, 5098, 5099, 5100, 5101,),
    RPM_BIN_TYPE: (259, 260, 261, 262, 267, 268, 1012, 1013, 1043, 1146,),
    RPM_STRING_ARRAY_TYPE: (266, 276, 1017, 1018, 1019, 1027, 1035, 1036, 1039, 1040, 1047, 1049, 1050, 1054, 1055, 1059, 1060,
                            1061, 1062, 1065, 1066, 1067, 1081, 1082, 1085, 1086, 1087, 1088, 1089,
                            1090, 1091, 1092, 1097, 1098, 1099, 1113, 1115, 1117, 1118, 1120, 1121,
                            1133, 1135, 1142, 1147, 1148, 1149, 1153, 1154, 1156, 1157, 1159, 1160,
                            1164, 1165, 1166, 1167, 1168, 1169, 1178, 1182, 1183, 1186, 1188, 5000,
                            5001, 5002, 5003, 5005, 5006, 5007, 5010, 5029, 5030, 5031, 5035, 5036,
                            5038, 5039, 5040, 5041, 5042, 5043, 5044, 5046, 5047, 5049, 5050, 5052,
                            5053, 5055, 5056, 5058, 5059, 5060, 5061, 5066, 5067, 5069, 5071, 5076,
                            5077, 5079, 5081, 5086, 5087, 5088, 5089, 5090, 5092, 5097,),
    RPM_I18NSTRING_TYPE: (1004, 1005, 1016,),
}
_TAG_TYPES = {tag: t for t, tags in _KNOWN_TAGS.items() for tag in tags}

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

    __slots__ = ("_data", "_index", "_region")

    def __init__(self, data: bytes, index: dict[int, _Entry], region: bytes | None = None) -> None:
        self._data = data
        self._index = index
        self._region = region

    def verify_digests(self) -> None:
        """The header digests rpm checks before it trusts an rpmdb header (lib/package.c
        headerCheck): SHA256HEADER and SHA1HEADER over the header magic, the region's il and dl,
        its index entries and data (updateHdrDigests).  A mismatch is RpmHeaderError."""
        if self._region is None:
            return
        for tag, algo, label in ((RPMTAG_SHA256HEADER, "sha256", "SHA256"), (RPMTAG_SHA1HEADER, "sha1", "SHA1")):
            expected = self.string(tag) if tag in self._index else None
            if expected is None:
                continue
            actual = hashlib.new(algo, self._region).hexdigest()
            if actual != expected.lower():
                raise RpmHeaderError(f"Header {label} digest: BAD (Expected {expected} != {actual})")

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
    digest_input = (HEADER_MAGIC + b"\0\0\0\0" + struct.pack(">II", ril, rdl) + blob[8:8 + 16 * ril] + data[:rdl]) \
        if region else None
    return Header(data, index, digest_input)


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
    """hdrblobVerifyInfo: every entry's tag, type, count, alignment and extent, in index order.

    rpm walks each string entry to its last NUL and then requires the next entry (in index
    order) to start after it, and nothing before the region trailer to reach into it.  The same
    is decided here by counting NULs up to that limit (the next entry's offset, the trailer, or
    ``dl``): ``count`` strings fit exactly when that many NULs are there, a C-speed count rather
    than a walk per string (a header holds tens of thousands of file-name strings)."""
    typechk = region in (RPMTAG_HEADERIMMUTABLE, RPMTAG_HEADERIMAGE)
    sizes, aligns, nuls = _TYPE_SIZE, _TYPE_ALIGN, data.count
    trailer_from = rdl - _REGION_TAG_COUNT
    last = len(entries) - 1
    for i, (tag, etype, offset, count) in enumerate(entries):
        size = sizes.get(etype)
        limit = entries[i + 1][2] if i < last else dl
        if region and offset < rdl:
            limit = min(limit, trailer_from)
        limit = min(limit, dl)
        bad = (size is None or tag < RPMTAG_HEADERI18NTABLE or count < 1 or count > dl
               or offset < 0 or offset > dl or offset % aligns.get(etype, 1)
               or (etype != RPM_BIN_TYPE and count > HEADER_ARRAY_MAX)
               or (typechk and not _type_ok(tag, etype)))
        if not bad:
            if size > 0:
                bad = offset + size * count > limit
            elif size == 0 or (etype == RPM_STRING_TYPE and count != 1):
                bad = True
            else:
                bad = offset >= limit or nuls(b"\0", offset, limit) < count
        if bad:
            raise RpmHeaderError(f"tag[{i}]: BAD, tag {tag} type {etype} offset {offset} count {count}")


def _type_ok(tag: int, etype: int) -> bool:
    expected = _TAG_TYPES.get(tag)
    if expected is None or expected == etype:
        return True
    return expected in _STRING_CLASS and etype in _STRING_CLASS

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
