"""Metrics of --collector.system: the reboot-required flag and room on /boot."""

from __future__ import annotations

from ...facts.system import SystemFacts
from ...scrape import Scrape
from .families import Families


def section(out: Families, scrape: Scrape) -> None:
    s = scrape.facts.get(SystemFacts)
    if s is None:
        return
    out.gauge("dkms_reboot_required", "1 when the distribution flags a pending reboot "
              "(/run/reboot-required).").add_metric([], 1 if s.reboot_required else 0)
    since = out.gauge("dkms_reboot_required_since_timestamp_seconds", "When the reboot-required flag was "
                      "set (its mtime).")
    if s.reboot_required_since is not None:
        since.add_metric([], s.reboot_required_since)
    pkgs = out.gauge("dkms_reboot_required_package", "1 for each package that asked for the pending reboot "
                     "(/run/reboot-required.pkgs).", ["package"])
    for name in s.reboot_required_packages:
        pkgs.add_metric([name], 1)
    if s.boot_free_bytes is not None:
        out.gauge("dkms_boot_free_bytes", "Free space on the filesystem holding /boot.").add_metric(
            [], s.boot_free_bytes)
        out.gauge("dkms_boot_size_bytes", "Size of the filesystem holding /boot.").add_metric(
            [], s.boot_size_bytes or 0)
