"""What depmod knows about a kernel's modules: /lib/modules/K/modules.dep(.bin).

modname rule (kmod): basename up to the first '.', with '-' replaced by '_'.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from functools import cached_property

INDEX_MAGIC = 0xB007F457
INDEX_VERSION_MAJOR = 0x0002
MAX_INDEX_NODES = 1_000_000


class DepmodError(ValueError):
    """A depmod output file is malformed."""


def modname_of_path(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    return base.split(".", 1)[0].replace("-", "_")


@dataclass(frozen=True)
class ModulesDep:
    paths: dict[str, str]          # modname -> path relative to /lib/modules/K
    compressed_suffix: str         # what dkms's set_module_suffix would pick: "", ".gz", ".xz", ".zst"

    def __contains__(self, modname: str) -> bool:
        return modname in self.paths

    @cached_property
    def in_tree(self) -> tuple[str, ...]:
        """Paths under kernel/, sorted; computed once per parse (a distro kernel lists ~4,000),
        not on every scrape."""
        return tuple(sorted(rel for rel in self.paths.values() if rel.startswith("kernel/")))


def parse_modules_dep(data: bytes) -> ModulesDep:
    """modules.dep text: ``relpath: dep dep ...`` per line."""
    paths: dict[str, str] = {}
    suffix = ""
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        head, sep, _ = raw.partition(b":")
        if not sep:
            raise DepmodError(f"modules.dep line {lineno}: no ':'")
        rel = sys.intern(head.decode("utf-8", "surrogateescape").strip())  # kernels share most paths
        paths.setdefault(sys.intern(modname_of_path(rel)), rel)
    text_suffixes = data  # dkms greps for '\.gz:' then '\.xz:' then '\.zst:'; the last found wins
    for candidate in (b".gz:", b".xz:", b".zst:"):
        if candidate in text_suffixes:
            suffix = candidate[:-1].decode()
    return ModulesDep(paths, suffix)


def parse_modules_dep_bin(data: bytes) -> ModulesDep:
    """modules.dep.bin, kmod's trie index (libkmod-index.c), for hosts without the text file."""
    if len(data) < 12:
        raise DepmodError("modules.dep.bin: truncated header")
    magic, version, root = struct.unpack_from(">III", data, 0)
    if magic != INDEX_MAGIC or (version >> 16) != INDEX_VERSION_MAJOR:
        raise DepmodError(f"modules.dep.bin: bad magic {magic:#x} or version {version:#x}")
    paths: dict[str, str] = {}
    stack: list[tuple[int, bytes]] = [(root, b"")]
    seen = 0
    while stack:
        offset, prefix = stack.pop()
        seen += 1
        if seen > MAX_INDEX_NODES:
            raise DepmodError("modules.dep.bin: too many nodes (loop?)")
        pos = offset & 0x0FFFFFFF
        if pos >= len(data):
            raise DepmodError(f"modules.dep.bin: node offset {pos} past the end")
        if offset & 0x80000000:
            end = data.find(b"\0", pos)
            if end < 0:
                raise DepmodError(f"modules.dep.bin: unterminated prefix at {pos}")
            prefix += data[pos:end]
            pos = end + 1
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
                    stack.append((child, prefix + bytes([first + i])))
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
                rel = value.partition(":")[0]
                paths.setdefault(prefix.decode("utf-8", "surrogateescape"), rel)
    suffix = ""
    for candidate in (".gz", ".xz", ".zst"):
        if any(p.endswith(candidate) for p in paths.values()):
            suffix = candidate
    return ModulesDep(paths, suffix)
