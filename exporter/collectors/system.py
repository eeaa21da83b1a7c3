"""--collector.system: host facts around a reboot: the distribution's reboot-required signal
(its backend decides: /run/reboot-required on Debian, `dnf needs-restarting -r`'s rule on RHEL),
and room on /boot."""

from __future__ import annotations

import os

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
        # what df and psutil.disk_usage report: blocks available to unprivileged writers, and the
        # filesystem's size (statvfs directly: psutil cost every run ~25 ms of imports and 2.6 MiB)
        st = os.statvfs(ctx.fs.path("/boot"))
        free, size = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    except OSError as exc:
        ctx.error("/boot", exc)
    return SystemFacts(reboot.required, reboot.since, reboot.packages, free, size)
