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
# modules loaded at every boot by name: systemd-modules-load (modules-load.d(5)), Debian's
# /etc/modules, and initramfs-tools' /etc/initramfs-tools/modules (copied into the initramfs and
# loaded there); one module per line, maybe with arguments, '#' or ';' comments
MODULES_LOAD_DIRS = ("/etc/modules-load.d", "/run/modules-load.d", "/usr/local/lib/modules-load.d",
                     "/usr/lib/modules-load.d", "/lib/modules-load.d")
MODULES_LOAD_FILES = ("/etc/modules", "/etc/initramfs-tools/modules")


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
    return LoadedFacts(tuple(mods), frozenset(blacklisted), _boot_listed(ctx))


def _boot_listed(ctx: Context) -> frozenset[str]:
    """The modules the host loads by name at every boot (early or from modules-load.d)."""
    files = list(MODULES_LOAD_FILES)
    for directory in MODULES_LOAD_DIRS:
        files += [f"{directory}/{n}" for n in sorted(ctx.listdir(directory) or []) if n.endswith(".conf")]
    names: set[str] = set()
    for path in files:
        try:
            text = ctx.load(path, lambda b: b.decode("utf-8", "replace"), limit=1 << 20, purpose="text")
        except Unreadable:
            continue
        for line in (text or "").splitlines():
            word = line.split("#", 1)[0].split(";", 1)[0].split()
            if word:
                names.add(modname(word[0]))
    return frozenset(names)
