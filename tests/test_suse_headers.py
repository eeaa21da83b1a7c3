"""SUSE: the headers package of kernel K is kernel-FLAVOUR-devel of the VERSION-RELEASE of the
kernel package that owns /usr/lib/modules/K/kernel/ (found in the ndb rpmdb), checked against
the real rpm's `rpm -qf` and `rpm -q` on the same headers (slow: rpmbuild)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_headers_package_is_the_kernel_packages_devel_per_rpm(tmp_path):
    from example_hosts import SL_NEW, SL_OLD, suse_trap
    from rpmtools import install, rpm, rpmbuild
    h = suse_trap(tmp_path / "root")
    metrics = subprocess.run([sys.executable, "-m", "exporter", "--path.rootfs", str(h.root), "metrics"], cwd=REPO,
                             capture_output=True, text=True, timeout=120, check=True).stdout
    said = dict(re.findall(r'^dkms_kernel_headers_package_installed\{kernel="([^"]+)",package="([^"]+)"\} 1\.0$',
                           metrics, re.M))
    said_missing = dict(re.findall(
        r'^dkms_kernel_headers_package_installed\{kernel="([^"]+)",package="([^"]+)"\} 0\.0$', metrics, re.M))
    # rpm's view of the same headers: the builder's packages recorded again (sqlite) in the tree
    install(h.root, *(rpmbuild(s) for s, _ in h.specs), justdb=True)
    for k in (SL_OLD, SL_NEW):
        owner = rpm(h.root, "-qf", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}",
                    f"/usr/lib/modules/{k}/kernel/drivers/net/e1000e.ko").stdout
        devel = owner.replace("kernel-default-", "kernel-default-devel-", 1)
        installed = rpm(h.root, "-q", devel, check=False).returncode == 0
        assert (said if installed else said_missing).get(k) == devel, (k, owner, said, said_missing)
    assert set(said) == {SL_OLD} and set(said_missing) == {SL_NEW}
