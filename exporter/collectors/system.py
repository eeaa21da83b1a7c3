"""--collector.system: host facts around a reboot: the distribution's reboot-required signal
(its backend decides: /run/reboot-required on Debian, `dnf needs-restarting -r`'s rule on RHEL),
and room on /boot."""

from __future__ import annotations

import psutil

from ..distro import detect
from ..facts.system import SystemFacts
from ..host.context import Context
from . import register


@register("system", SystemFacts)
def collect_system(ctx: Context) -> SystemFacts:
    distro, _, _ = detect(ctx)
    reboot = distro.reboot_required(ctx)
    free = size = None
    try:
        usage = psutil.disk_usage(str(ctx.fs.path("/boot")))
        free, size = usage.free, usage.total
    except OSError as exc:
        ctx.error("/boot", exc)
    return SystemFacts(reboot.required, reboot.since, reboot.packages, free, size)
