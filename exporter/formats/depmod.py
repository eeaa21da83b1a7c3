"""What depmod knows about a kernel's modules: /lib/modules/K/modules.dep(.bin).

modname rule (kmod): basename up to the first '.', with '-' replaced by '_'.
"""

from __future__ import annotations

import heapq
import struct
import sys
from dataclasses import dataclass, field

from .jsoncodec import Codec

INDEX_MAGIC = 0xB007F457
INDEX_VERSION_MAJOR = 0x0002
MAX_INDEX_NODES = 1_000_000
MAX_KEY_BYTES = 4096  # module names are < 56 bytes (MODULE_NAME_LEN); a longer key is corrupt


class DepmodError(ValueError):
    """A depmod output file is malformed."""


def modname_of_path(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    return base.split(".", 1)[0].replace("-", "_")


@dataclass(frozen=True)
class ModulesDep:
    paths: dict[str, str]          # modname -> path relative to /lib/modules/K
    compressed_suffix: str         # what dkms's set_module_suffix would pick: "", ".gz", ".xz", ".zst"
    deps: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """relpath -> the relpaths modprobe loads before it (modules.dep's right-hand side: depmod
    writes the transitive closure, loaded in reverse order).  Only lines with dependencies."""

    def __contains__(self, modname: str) -> bool:
        return modname in self.paths

    def first_in_tree(self, count: int) -> tuple[str, ...]:
        """The ``count`` first paths under kernel/, in sorted order; computed once per parse and
        count (a distro kernel lists ~4,000, and a timer run would sort them all for a few)."""
        memo = self.__dict__.setdefault("_first_in_tree", {})
        hit = memo.get(count)
        if hit is None:
            hit = memo[count] = tuple(heapq.nsmallest(count, (rel for rel in self.paths.values()
                                                              if rel.startswith("kernel/"))))
        return hit


def parse_modules_dep(data: bytes) -> ModulesDep:
    """modules.dep text: ``relpath: dep dep ...`` per line."""
    paths: dict[str, str] = {}
    deps: dict[str, tuple[str, ...]] = {}
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        head, sep, tail = raw.partition(b":")
        if not sep:
            raise DepmodError(f"modules.dep line {lineno}: no ':'")
        rel = sys.intern(head.decode("utf-8", "surrogateescape").strip())  # kernels share most paths
        paths.setdefault(sys.intern(modname_of_path(rel)), rel)
        if tail.strip():
            deps.setdefault(rel, _dep_list(tail))
    return ModulesDep(paths, modules_dep_suffix(data), deps)


def modules_dep_suffix(data: bytes) -> str:
    """The compression suffix dkms's set_module_suffix picks from modules.dep text: it greps for
    ".gz:", then ".xz:", then ".zst:" (the dots escaped), and the last one found wins ("" when
    none is)."""
    suffix = ""
    for candidate in (b".gz:", b".xz:", b".zst:"):
        if candidate in data:
            suffix = candidate[:-1].decode()
    return suffix


def _dep_list(tail: bytes) -> tuple[str, ...]:
    return tuple(sys.intern(d) for d in tail.decode("utf-8", "surrogateescape").split())


def parse_modules_dep_bin(data: bytes) -> ModulesDep:
    """modules.dep.bin, kmod's trie index (libkmod-index.c), for hosts without the text file."""
    if len(data) < 12:
        raise DepmodError("modules.dep.bin: truncated header")
    magic, version, root = struct.unpack_from(">III", data, 0)
    if magic != INDEX_MAGIC or (version >> 16) != INDEX_VERSION_MAJOR:
        raise DepmodError(f"modules.dep.bin: bad magic {magic:#x} or version {version:#x}")
    paths: dict[str, str] = {}
    deps: dict[str, tuple[str, ...]] = {}
    # Depth-first over the trie with one key buffer: a stack entry is (node offset, key length
    # before the node, the child character that leads to it).  kmod writes every node once, so a
    # node reached twice is a loop: refused, which bounds the walk by the file's size.
    key = bytearray()
    stack: list[tuple[int, int, int | None]] = [(root, 0, None)]
    queued = {root & 0x0FFFFFFF}
    while stack:
        offset, keep, char = stack.pop()
        del key[keep:]
        if char is not None:
            key.append(char)
        if len(queued) > MAX_INDEX_NODES:
            raise DepmodError("modules.dep.bin: too many nodes")
        pos = offset & 0x0FFFFFFF
        if pos >= len(data):
            raise DepmodError(f"modules.dep.bin: node offset {pos} past the end")
        if offset & 0x80000000:
            end = data.find(b"\0", pos)
            if end < 0:
                raise DepmodError(f"modules.dep.bin: unterminated prefix at {pos}")
            key += data[pos:end]
            pos = end + 1
        if len(key) > MAX_KEY_BYTES:
            raise DepmodError(f"modules.dep.bin: key longer than {MAX_KEY_BYTES} bytes at {pos}")
        if offset & 0x20000000:
            if pos + 2 > len(data):
                raise DepmodError(f"modules.dep.bin: truncated children at {pos}")
            first, last = data[pos], data[pos + 1]
            pos += 2
            count = last - first + 1
            if count < 0 or pos + 4 * count > len(data):
                raise DepmodError(f"modules.dep.bin: bad child table at {pos}")
            children = struct.unpack_from(f">{count}I", data, pos)
            pos += 4 * count
            for i, child in enumerate(children):
                if child:
                    if child & 0x0FFFFFFF in queued:
                        raise DepmodError(f"modules.dep.bin: node {child & 0x0FFFFFFF:#x} reached twice (loop)")
                    queued.add(child & 0x0FFFFFFF)
                    stack.append((child, len(key), first + i))
        if offset & 0x40000000:
            if pos + 4 > len(data):
                raise DepmodError(f"modules.dep.bin: truncated values at {pos}")
            (count,) = struct.unpack_from(">I", data, pos)
            pos += 4
            for _ in range(count):
                end = data.find(b"\0", pos + 4)
                if pos + 4 > len(data) or end < 0:
                    raise DepmodError(f"modules.dep.bin: truncated value at {pos}")
                value = data[pos + 4:end].decode("utf-8", "surrogateescape")
                pos = end + 1
                rel, _, tail = value.partition(":")
                paths.setdefault(key.decode("utf-8", "surrogateescape"), rel)
                if tail.strip():
                    deps.setdefault(rel, _dep_list(tail.encode("utf-8", "surrogateescape")))
    suffix = ""
    for candidate in (".gz", ".xz", ".zst"):
        if any(p.endswith(candidate) for p in paths.values()):
            suffix = candidate
    return ModulesDep(paths, suffix, deps)


def parse_modules_builtin(data: bytes) -> frozenset[str]:
    """modules.builtin: one ``kernel/<path>.ko`` per line for every module built into the image
    (kbuild writes it; depmod copies it).  modprobe answers ``builtin NAME`` for those, and the
    kernel has them without a file: a dependency on one is met."""
    return frozenset(modname_of_path(line.strip()) for line in
                     data.decode("utf-8", "surrogateescape").splitlines() if line.strip())


@dataclass(frozen=True)
class Need:
    """A module another module needs loaded first, as depmod and modprobe resolve it for K."""

    name: str                 # modname
    rel: str | None           # its path in K's modules.dep; None: K's depmod index has no such module
    why: str                  # "depends=", "symbol NAME", "needed by NAME", "modules.dep"


def module_needs(own_name: str, own_rel: str, depends: tuple[str, ...], undefined: tuple[str, ...],
                 dep: ModulesDep, exports=None, builtin: frozenset[str] | None = None,
                 renamed: dict[str, str] | None = None) -> tuple[Need, ...]:
    """Every module K must have for this one to load, in modprobe's terms.

    depmod resolves a module's undefined symbols to the modules that export them and writes the
    closure to modules.dep; modprobe loads those first; the kernel's simplify_symbols() then
    finds each symbol in a loaded module or says "Unknown symbol".  So a module needs: each
    ``depends=`` name modpost wrote into it, the exporter (per K's Module.symvers, ``exports``:
    symbol -> Export) of each symbol it imports, what modules.dep lists for those and for the
    module itself.  A module built into K (modules.builtin) is met without a file; vmlinux's
    exports need nothing.  Whether each file exists is for the caller to ask.

    ``depends=`` holds the names modpost knew at build time, the kernel's names for the modules
    (their .modinfo ``name=``); depmod indexes files by file name.  DKMS's DEST_MODULE_NAME
    renames files (Debian's nvidia-kernel-dkms installs nvidia-modeset as
    nvidia-current-modeset.ko), so ``renamed`` maps such a kernel name to the indexed file that
    carries it; the need is then that file, under its index name."""
    seen: dict[str, Need] = {}

    def add(name: str, rel: str | None, why: str) -> None:
        if name != own_name and name not in seen and not (builtin and name in builtin):
            seen[name] = Need(name, rel, why)

    direct = [(d.replace("-", "_"), "depends=") for d in depends]
    if exports:
        for sym in undefined:
            e = exports.get(sym)
            if e is not None and e.module != "vmlinux":
                direct.append((modname_of_path(e.module), f"symbol {sym}"))
    for name, why in direct:
        rel = dep.paths.get(name)
        if rel is None and renamed and name in renamed:
            rel = renamed[name]
            name = modname_of_path(rel)
        add(name, rel, why)
        for r in dep.deps.get(rel, ()) if rel else ():
            add(modname_of_path(r), r, f"needed by {name}")
    for r in dep.deps.get(own_rel, ()):
        add(modname_of_path(r), r, "modules.dep")
    return tuple(seen.values())


# modules.dep(.bin) indexes and modules.builtin as the persistent cache keeps them (the
# reference candidates are derived again)
CODEC = Codec("modules.dep", (ModulesDep,))
BUILTIN_CODEC = Codec("modules.builtin")
