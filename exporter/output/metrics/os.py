"""Metrics of --collector.os: the distribution, and so which family's backend read the host."""

from __future__ import annotations

from ...facts.os import OsFacts
from ...scrape import Scrape
from .families import Families


def section(out: Families, scrape: Scrape) -> None:
    found = scrape.facts.get(OsFacts)
    if found is None:
        return
    out.gauge("dkms_os_info", "1, labeled by the host's distribution family (debian, rhel, suse, arch, unknown: "
              "it chooses the package reader and the words of the fix commands), os-release ID and VERSION_ID.",
              ["family", "id", "version_id"]).add_metric([found.family, found.id, found.version_id], 1)
