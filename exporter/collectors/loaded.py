"""--collector.loaded: what runs now: loaded modules and their taint flags, and modprobe blacklists.

An out-of-tree module loaded now (taint O) must keep working after the reboot even when DKMS
does not manage it (vendor packages, akmods): readiness rule 3.
"""

from __future__ import annotations

import re

from ..config import modname
from ..facts.loaded import LoadedFacts, LoadedModule
from ..formats.procfs import parse_proc_modules
from ..host.context import Context, Unreadable
from . import register

MODPROBE_DIRS = ("/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/usr/lib/modprobe.d",
                 "/lib/modprobe.d")
_BLACKLIST = re.compile(r"^\s*blacklist\s+(\S+)", re.M)


@register("loaded", LoadedFacts, readiness=True)
def collect_loaded(ctx: Context) -> LoadedFacts:
    try:
        rows = ctx.load_local(ctx.fs.proc("modules"), parse_proc_modules, limit=4 * 1024 * 1024,
                              purpose="proc-modules") or ()
        mods = tuple(LoadedModule(modname(name), taint) for name, taint in rows)
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
