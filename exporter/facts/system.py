"""Facts of the system collector: the reboot-required flag and room on /boot."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RebootRequired:
    """The distribution's own "a reboot is needed" (Debian: /run/reboot-required; RHEL: what
    `dnf needs-restarting -r` decides)."""

    required: bool
    since: float | None                  # when it became needed (flag mtime; first install after boot)
    packages: tuple[str, ...]
    known: bool = True                   # False: the evidence could not be read


@dataclass(frozen=True)
class SystemFacts:
    reboot_required: bool
    reboot_required_since: float | None   # mtime of the flag file
    reboot_required_packages: tuple[str, ...]
    boot_free_bytes: int | None
    boot_size_bytes: int | None
