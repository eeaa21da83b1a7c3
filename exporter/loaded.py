"""What runs now: loaded modules and their taint flags, and modprobe blacklists.

An out-of-tree module loaded now (taint O) must keep working after the reboot even when DKMS
does not manage it (vendor packages, akmods): readiness rule 3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .config import modname
from .context import Context, Unreadable

MODPROBE_DIRS = ("/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/usr/lib/modprobe.d",
                 "/lib/modprobe.d")
_BLACKLIST = re.compile(r"^\s*blacklist\s+(\S+)", re.M)


@dataclass(frozen=True)
class LoadedModule:
    name: str
    taint: str          # letters as /proc/modules prints them, e.g. "OE"

    @property
    def out_of_tree(self) -> bool:
        return "O" in self.taint


@dataclass(frozen=True)
class LoadedFacts:
    modules: tuple[LoadedModule, ...]
    blacklisted: frozenset[str]       # modnames blacklisted in modprobe.d

    @property
    def out_of_tree(self) -> list[str]:
        return sorted(m.name for m in self.modules if m.out_of_tree)


def parse_proc_modules(data: bytes) -> tuple[LoadedModule, ...]:
    """/proc/modules: ``name size refs deps state address [(taint)]``."""
    mods = []
    for line in data.decode("utf-8", "replace").splitlines():
        words = line.split()
        if len(words) < 6:
            continue
        taint = ""
        if len(words) > 6 and words[6].startswith("("):
            taint = words[6].strip("()")
        mods.append(LoadedModule(modname(words[0]), taint))
    return tuple(mods)


def collect_loaded(ctx: Context) -> LoadedFacts:
    try:
        mods = ctx.load_local(ctx.fs.proc("modules"), parse_proc_modules, limit=4 * 1024 * 1024,
                              purpose="proc-modules") or ()
    except Unreadable:
        mods = ()
    blacklisted: set[str] = set()
    for directory in MODPROBE_DIRS:
        for name in ctx.listdir(directory) or []:
            if not name.endswith(".conf"):
                continue
            try:
                text = ctx.load(f"{directory}/{name}", lambda b: b.decode("utf-8", "replace"), limit=1 << 20,
                                purpose="text")
            except Unreadable:
                continue
            blacklisted.update(modname(m) for m in _BLACKLIST.findall(text or ""))
    return LoadedFacts(tuple(mods), frozenset(blacklisted))
