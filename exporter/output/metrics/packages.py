"""Metrics of --collector.packages: held and half-configured packages."""

from __future__ import annotations

from ...facts.packages import PackageFacts
from ...scrape import Scrape
from .families import Families


def section(out: Families, scrape: Scrape) -> None:
    p = scrape.facts.get(PackageFacts)
    if p is None or not p.present:
        return
    held = out.gauge("dkms_package_held", "1 for each package kept from upgrades (apt-mark hold; dnf versionlock "
                     "or an exclude= of it); kind is kernel-image, kernel-headers, kernel-meta, dkms, kmod, boot or "
                     "other.", ["package", "kind"])
    for name, kind in dict.fromkeys((pkg.name, pkg.kind) for pkg in p.held):   # rpm: kernels share a name
        held.add_metric([name, kind], 1)
    unconf = out.gauge("dkms_package_unconfigured", "1 for each package the manager's own check lists: `dpkg "
                       "--audit` (state: its heading: half-configured, unpacked, half-installed, triggers-awaited, "
                       "triggers-pending, reinstreq, missing-list, missing-md5sums, no-arch, unknown-arch) or, on "
                       "rpm hosts, `dnf check --duplicates` (duplicate) and headers rpm skips (corrupt-header).",
                       ["package", "state"])
    for finding in p.findings:
        unconf.add_metric([finding.package, finding.problem], 1)
    out.gauge("dkms_packages_unconfigured", "How many packages the manager's own check lists.").add_metric(
        [], len({f.package for f in p.findings}))
