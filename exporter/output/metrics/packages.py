"""Metrics of --collector.packages: held and half-configured packages."""

from __future__ import annotations

from ...facts.packages import PackageFacts
from ...scrape import Scrape
from .families import Families


def section(out: Families, scrape: Scrape) -> None:
    p = scrape.facts.get(PackageFacts)
    if p is None or not p.present:
        return
    held = out.gauge("dkms_package_held", "1 for each package on hold (apt-mark hold); kind is kernel-image, "
                     "kernel-headers, kernel-meta, dkms, boot or other.", ["package", "kind"])
    for pkg in p.held:
        held.add_metric([pkg.name, pkg.kind], 1)
    unconf = out.gauge("dkms_package_unconfigured", "1 for each package `dpkg --audit` lists; state is the "
                       "audit heading (half-configured, unpacked, half-installed, triggers-awaited, "
                       "triggers-pending, reinstreq, missing-list, missing-md5sums, no-arch, unknown-arch).",
                       ["package", "state"])
    for finding in p.findings:
        unconf.add_metric([finding.package, finding.problem], 1)
    out.gauge("dkms_packages_unconfigured", "How many packages `dpkg --audit` lists.").add_metric(
        [], len({f.package for f in p.findings}))
