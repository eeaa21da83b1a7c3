"""--collector.os: which distribution this is (os-release, else its package database), and so
which family's backend reads the packages and words the fix commands."""

from __future__ import annotations

from ..distro import detect
from ..facts.os import OsFacts
from ..host.context import Context
from . import register


@register("os", OsFacts)
def collect_os(ctx: Context) -> OsFacts:
    distro, release, evidence = detect(ctx)
    return OsFacts(distro.family, release.get("ID", ""), release.get("VERSION_ID", ""),
                   release.get("PRETTY_NAME", ""), evidence)
