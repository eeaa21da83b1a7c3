"""--collector.packages: the package manager's view (installed, held, half-configured packages),
read by the host's distribution backend (dpkg today; rpm and pacman with their backends)."""

from __future__ import annotations

from ..distro import detect
from ..facts.packages import PackageFacts
from ..host.context import Context
from . import register


@register("packages", PackageFacts)
def collect_packages(ctx: Context) -> PackageFacts:
    distro, _, _ = detect(ctx)
    return distro.read_packages(ctx)
