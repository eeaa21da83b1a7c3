"""Every file a scrape reads on the real Debian trees, damaged one at a time (tests/damage_sweep.py).

The scenarios are the real-host build's hosts that are not ready, each for another reason: a
module unsigned under Secure Boot (signed_sb_on: real signed and unsigned DKMS modules, Secure
Boot on), a DKMS build not installed (dkms_uninstalled), an early-boot module missing from the
next initramfs (early_boot_missing) and a stale one (initramfs_stale).  No damage of any file the
exporter reads there may crash it or pass the host as ready.

Excepted, because the kernel itself then boots without the reason for "not ready":
- the firmware's Secure Boot state (SecureBoot, SetupMode): any byte there is a state the kernel
  reads, and an empty variable is as good as none: Secure Boot off, acpi_call loads;
- /proc/sys/kernel/osrelease: cut in half it names a kernel that is not installed (as after an
  Arch upgrade), and the modules a running kernel's packages need go with it; a real host still
  has them in /proc/modules (loaded out-of-tree modules are needed), which these trees lack.

The sweep found, and these now guard: an empty, foreign or cut /boot/config-K read as a config
without lockdown or forced signatures; a SecureBoot byte other than 0 and 1 read as "cannot
tell"; an empty, foreign or cut dkms.conf read as a module DKMS does not mean to build; a running
kernel's initramfs that cannot be listed read as "nothing needed in early boot"; a garbled
osrelease read as a running kernel.  Each passed its host as ready.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest
from damage_sweep import sweep

from .conftest import RealHost
from .test_dependencies import copy_tree

pytestmark = pytest.mark.realhost

EXCEPTED = ("/sys/firmware/efi/efivars/SecureBoot-", "/sys/firmware/efi/efivars/SetupMode-",
            "/proc/sys/kernel/osrelease")


@pytest.mark.parametrize("scenario, must_read", [
    ("signed_sb_on", ("/boot/config-{new}", "/usr/lib/modules/{new}/updates/dkms/acpi_call.ko*",
                      "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c")),
    ("dkms_uninstalled", ("/usr/src/v4l2loopback-*/dkms.conf",)),
    ("early_boot_missing", ("/boot/initrd.img-{old}", "/boot/initrd.img-{new}")),
    ("initramfs_stale", ("/boot/initrd.img-{new}",)),
])
def test_no_damaged_file_crashes_a_collector_or_passes_the_host(realhost: RealHost, tmp_path: Path,
                                                               scenario: str, must_read: tuple[str, ...]) -> None:
    root = copy_tree(realhost, scenario, tmp_path / "tree")
    base, files, failures = sweep(root, EXCEPTED)
    assert base == "not_ready"
    names = {"new": realhost.env["NEW_KERNEL"], "old": realhost.env["OLD_KERNEL"]}
    # each finding's files are among those damaged (globs: trixie compresses modules, has another v4l2loopback)
    for pattern in must_read:
        assert fnmatch.filter(files, pattern.format(**names)), (pattern, files)
    assert not failures, "\n".join(failures)
