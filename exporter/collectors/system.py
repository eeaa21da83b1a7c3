"""--collector.system: host facts around a reboot: the distribution's reboot-required flag, and room on /boot."""

from __future__ import annotations

import psutil

from ..facts.system import SystemFacts
from ..host.context import Context, Unreadable
from . import register


@register("system", SystemFacts)
def collect_system(ctx: Context) -> SystemFacts:
    flag = "/run/reboot-required"
    st = ctx.stat(flag) or ctx.stat("/var/run/reboot-required")
    pkgs: tuple[str, ...] = ()
    try:
        raw = ctx.load(f"{flag}.pkgs", bytes, limit=1024 * 1024, purpose="raw")
        if raw:
            pkgs = tuple(dict.fromkeys(l.strip() for l in raw.decode("utf-8", "replace").splitlines() if l.strip()))
    except Unreadable:
        pass
    free = size = None
    try:
        usage = psutil.disk_usage(str(ctx.fs.path("/boot")))
        free, size = usage.free, usage.total
    except OSError as exc:
        ctx.error("/boot", exc)
    return SystemFacts(st is not None, st.st_mtime if st else None, pkgs, free, size)
