"""A kernel's exported symbols with their CRCs: Module.symvers, and the symvers files RHEL/SUSE ship.

Format (scripts/mod/modpost.c write_dump()): ``0xCRC<TAB>symbol<TAB>module<TAB>EXPORT_...[<TAB>ns]``.
The checks a loader makes against them are in exporter.verdict.loader.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

from .decompress import MAGIC_MAX, decompress, sniff
from .jsoncodec import Codec

MAX_BYTES = 8 * 1024 * 1024
"""Bound on a symvers file, as read and as decompressed.  Real ones are a few MB: Debian 12's
6.1 Module.symvers is 1.7 MB (24,683 exports, 335 KB gzip'd); the /boot/symvers-K.gz of the
RPM distributions is the same modpost output, gzip'd.  8 MiB leaves room for a kernel with
several times as many exports, while a bomb stopped there costs less memory than parsing
Debian's real file (13.5 MiB Python-heap peak), and a file of distinct lines at the bound
(~8 bytes of heap per byte of text once parsed) peaks near 65 MiB."""

COMPRESSIONS = ("gzip", "xz")
"""What symvers-K.gz / .xz files are decompressed from (told by magic, not by name)."""


class SymversError(Exception):
    """A Module.symvers line that is not `0xCRC<TAB>symbol<TAB>module<TAB>EXPORT_...[<TAB>ns]`."""

    def __init__(self, line_no: int, message: str) -> None:
        super().__init__(f"Module.symvers line {line_no}: {message}")
        self.line_no = line_no


@dataclass(frozen=True, slots=True)
class Export:
    """One exported symbol: ``module`` is `vmlinux` or the module path without .ko.

    A kernel has ~25,000 of these, held for as long as its symvers file is unchanged: slots
    and the interned column values in parse_module_symvers keep a table at ~4.9 instead of
    ~8.8 MiB (tracemalloc, 25,000 exports)."""

    crc: int
    module: str
    export_type: str
    namespace: str = ""

    @property
    def gpl_only(self) -> bool:
        return self.export_type.endswith("_GPL")


class ExportTable(dict[str, Export]):
    """A kernel's exports (symbol -> Export) with the whole-table summaries the loader checks
    need, derived once per table instead of once per module per scrape: the table is cached by
    the symvers file's identity, so an unchanged kernel costs nothing proportional to its
    ~25,000 exports on a warm scrape.  ``memo`` holds per-module results keyed by the checker
    (see exporter.verdict.loader); it lives and dies with the table.  Treat it as read-only
    after parsing: the summaries are not recomputed when it changes.

    A *slice* (``wanted`` set, see parse_module_symvers) holds only the exports of the symbols
    the kernel's out-of-tree modules use, while its summaries and its truth value still
    describe the whole file: a few hundred rows instead of ~25,000 (about 4.9 MiB less per
    kernel, held for as long as the file is unchanged).  Whether it can answer for a module is
    ``covers``; one it does not cover must never be judged "Unknown symbol" from it."""

    wanted: frozenset[str] | None = None                  # None: every export of the file
    _summary: tuple[int, bool, frozenset[str]] | None = None   # a slice's (total, has_crcs, module_names)

    @cached_property
    def has_crcs(self) -> bool:
        """Any non-zero CRC: the kernel was built with CONFIG_MODVERSIONS."""
        if self._summary is not None:
            return self._summary[1]
        return any(e.crc for e in self.values())

    @cached_property
    def module_names(self) -> frozenset[str]:
        """modnames of every module that exports something here (``vmlinux`` included)."""
        if self._summary is not None:
            return self._summary[2]
        return frozenset(module_name_of(m) for m in {e.module for e in self.values()})

    @property
    def total(self) -> int:
        """Exports in the whole file (a slice holds fewer)."""
        return self._summary[0] if self._summary is not None else len(self)

    def __bool__(self) -> bool:
        return self.total > 0

    def covers(self, symbols) -> bool:
        """Does this table hold every one of ``symbols`` the file exports?"""
        return self.wanted is None or self.wanted.issuperset(symbols)

    @cached_property
    def memo(self) -> dict:
        return {}


def make_slice(rows, wanted: frozenset[str] | None, total: int, has_crcs: bool,
               module_names: frozenset[str]) -> ExportTable:
    """An ExportTable of ``rows`` (symbol, Export) that stands for a file of ``total`` export
    lines (``wanted`` None: all of them)."""
    table = ExportTable(rows)
    table.wanted = wanted
    table._summary = (total, has_crcs, module_names)
    return table


_NEW = object.__new__
_SET_CRC, _SET_MODULE, _SET_TYPE, _SET_NS = (Export.__dict__[f].__set__ for f in ("crc", "module", "export_type", "namespace"))


def _export(crc: int, module: str, export_type: str, namespace: str) -> Export:
    """Export(crc, module, export_type, namespace) without the frozen dataclass' __init__ (an
    object.__setattr__ per field): half the cost, for the ~25,000 built per table."""
    e = _NEW(Export)
    _SET_CRC(e, crc)
    _SET_MODULE(e, module)
    _SET_TYPE(e, export_type)
    _SET_NS(e, namespace)
    return e


def parse_symvers_file(data: bytes, max_bytes: int = MAX_BYTES,
                       wanted: frozenset[str] | None = None) -> ExportTable:
    """A Module.symvers file's exports (only ``wanted`` ones, if given: a slice); gzip or xz
    data (by magic, whatever the name) is decompressed first, to at most ``max_bytes``
    (DecompressError beyond, or if it is damaged)."""
    if sniff(data[:MAGIC_MAX]) in COMPRESSIONS:
        data = decompress(data, max_bytes)
    return _parse_lines(_lines_of(data), wanted)


def _lines_of(data: bytes) -> Iterable[str]:
    """The lines of ``data``, decoded one at a time.  A line ends at LF and nowhere else, as
    modpost's reader (scripts/mod/modpost.c read_dump, get_line) ends it: a CR or any other
    character str.splitlines would split at stays in its column.  splitlines() on the decoded
    file held the text twice over (~4 MiB for a 1.7 MB file) beside the bytes; and its 25,000
    line objects, freed while the parsed rows lived on between them, left the heap ~1.9 MiB
    bigger per kernel for good (pymalloc cannot return an arena with one object still in it)."""
    for raw in io.BytesIO(data):
        yield (raw[:-1] if raw[-1:] == b"\n" else raw).decode("utf-8", "replace")


def parse_module_symvers(text: str, wanted: frozenset[str] | None = None) -> ExportTable:
    """Parse Module.symvers: 5 columns (crc, symbol, module, type, namespace; 5.8+), 4 columns
    (before namespaces) and the 5.4-5.7 order with the namespace third; lines end at LF.

    With ``wanted``, every line is still checked and summarised (a damaged file is an error
    whatever is asked of it) but only the wanted symbols are kept: see ExportTable."""
    return _parse_lines(text.split("\n"), wanted)


def _parse_lines(lines: Iterable[str], wanted: frozenset[str] | None) -> ExportTable:
    """parse_module_symvers over lines however they were split."""
    exports = ExportTable()
    seen: dict[str, str] = {}    # one str object per distinct module / type / namespace
    intern = seen.setdefault
    total, any_crc, modules = 0, False, set()
    for line_no, line in enumerate(lines, 1):
        cols = line.split("\t")
        n = len(cols)
        # the common line (modpost's 5.8+ order, or 4 columns), checked as the general path
        # below would; anything else takes that path (~25,000 lines per kernel: this is most
        # of a cold scrape's symvers cost)
        if (n == 5 or n == 4) and cols[3][:7] == "EXPORT_" and cols[1] and not (
                cols[0][:7] == "EXPORT_" or cols[1][:7] == "EXPORT_" or cols[2][:7] == "EXPORT_"):
            try:
                crc = int(cols[0], 16)
            except ValueError:
                raise SymversError(line_no, f"CRC {cols[0]!r} is not hex") from None
            total += 1
            any_crc = any_crc or crc != 0
            module = intern(cols[2], cols[2])
            modules.add(module)
            if wanted is None or cols[1] in wanted:
                ns = cols[4] if n == 5 else ""
                exports[cols[1]] = _export(crc, module, intern(cols[3], cols[3]), intern(ns, ns))
            continue
        found = _parse_line(line_no, line, cols, intern)
        if found is not None:
            total += 1
            any_crc = any_crc or found[1].crc != 0
            modules.add(found[1].module)
            if wanted is None or found[0] in wanted:
                exports[found[0]] = found[1]
    # summaries over every line: a module with an export line is described by the file, even
    # where a duplicate symbol (modpost refuses those) left another module's row in the table
    return make_slice(exports, wanted, total, any_crc, frozenset(map(module_name_of, modules)))


def _parse_line(line_no: int, line: str, cols: list[str], intern) -> tuple[str, Export] | None:
    """One line in any accepted layout (the 5.4-5.7 order, with the namespace third): its
    (symbol, Export), None for a blank line, or SymversError saying why not."""
    if not line.strip():
        return None
    type_col = next((i for i, c in enumerate(cols) if c.startswith("EXPORT_")), None)
    if len(cols) not in (4, 5) or type_col not in (3, 4) or (type_col == 4 and len(cols) != 5):
        raise SymversError(line_no, f"unexpected columns {cols!r}")
    try:
        crc = int(cols[0], 16)
    except ValueError:
        raise SymversError(line_no, f"CRC {cols[0]!r} is not hex") from None
    if not cols[1]:
        raise SymversError(line_no, "empty symbol name")
    if type_col == 3:
        module, namespace = cols[2], cols[4] if len(cols) == 5 else ""
    else:
        namespace, module = cols[2], cols[3]
    kind = cols[type_col]
    return cols[1], Export(crc, intern(module, module), intern(kind, kind), intern(namespace, namespace))


def module_name_of(symvers_module: str) -> str:
    """modname of a Module.symvers module column (`drivers/media/mc/mc` -> `mc`)."""
    return symvers_module.rsplit("/", 1)[-1].replace("-", "_")








def _table_rows(table: ExportTable) -> dict:
    """Columns: symbols and CRCs as they are; module, type and namespace as indexes into their
    distinct values (a whole table has ~25,000 exports from a few thousand modules); a slice's
    wanted symbols and whole-file summaries beside them."""
    out: dict[str, object] = {"sym": list(table), "crc": [e.crc for e in table.values()]}
    for col, attr in (("mod", "module"), ("type", "export_type"), ("ns", "namespace")):
        index: dict[str, int] = {}
        out[col + "_i"] = [index.setdefault(getattr(e, attr), len(index)) for e in table.values()]
        out[col] = list(index)
    out["slice"] = {"wanted": None if table.wanted is None else sorted(table.wanted), "total": table.total,
                    "has_crcs": table.has_crcs, "module_names": sorted(table.module_names)}
    return out


def _table_from_rows(data: object) -> ExportTable:
    """An ExportTable from the columns _table_rows wrote; ValueError for anything else."""
    cols = ("sym", "crc", "mod", "mod_i", "type", "type_i", "ns", "ns_i")
    if not isinstance(data, dict) or set(data) != {*cols, "slice"} or not all(type(data[c]) is list for c in cols):
        raise ValueError("export table: not the columns this version writes")
    n = len(data["sym"])
    kinds = {"sym": str, "crc": int, "mod": str, "type": str, "ns": str, "mod_i": int, "type_i": int, "ns_i": int}
    for col, kind in kinds.items():
        if set(map(type, data[col])) - {kind}:
            raise ValueError(f"export table: column {col} holds something other than {kind.__name__}")
    if any(len(data[c]) != n for c in ("crc", "mod_i", "type_i", "ns_i")):
        raise ValueError("export table: columns of different lengths")
    try:
        rows = zip(data["sym"], data["crc"], map(data["mod"].__getitem__, data["mod_i"]),
                   map(data["type"].__getitem__, data["type_i"]), map(data["ns"].__getitem__, data["ns_i"]))
        if any(data[c] and min(data[c]) < 0 for c in ("mod_i", "type_i", "ns_i")):
            raise IndexError
        table = ExportTable((sym, _export(crc, mod, kind, ns)) for sym, crc, mod, kind, ns in rows)   # distinct values: shared
    except IndexError:
        raise ValueError("export table: an index beyond its column") from None
    if len(table) != n:
        raise ValueError("export table: a symbol twice")
    sliced = data["slice"]
    if (not isinstance(sliced, dict) or set(sliced) != {"wanted", "total", "has_crcs", "module_names"}
            or type(sliced["total"]) is not int or type(sliced["has_crcs"]) is not bool
            or not all(type(sliced[c]) is list and all(type(v) is str for v in sliced[c])
                       for c in ("wanted", "module_names") if c == "module_names" or sliced[c] is not None)):
        raise ValueError("export table: a slice without the summaries this version writes")
    wanted = None if sliced["wanted"] is None else frozenset(sliced["wanted"])
    if (wanted is not None and not wanted.issuperset(table)) or sliced["total"] < n:
        raise ValueError("export table: a slice holding symbols it did not ask for")
    return make_slice(table, wanted, sliced["total"], sliced["has_crcs"], frozenset(sliced["module_names"]))


# export tables as the persistent cache keeps them: one row per symbol, not one object each
CODEC = Codec("symvers-slice", (Export,), custom={ExportTable: (_table_rows, _table_from_rows)})
