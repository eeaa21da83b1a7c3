"""Facts of the bootloader collector: which kernel the boot loader starts next, and how."""

from __future__ import annotations

from dataclasses import dataclass

from ..formats.bls import SdBootEntry


@dataclass(frozen=True)
class BootFacts:
    loader: str                 # grub | grub-bls | grub2-bls (SUSE sdbootutil) | systemd-boot | unknown
    next_boot: str | None       # kernel release, None when it cannot be determined
    entry: str                  # how it was chosen, for humans ("saved_entry=1>2")
    detail: str = ""            # why next_boot is None, or a caveat
    config_mtime: float | None = None
    entries: tuple[SdBootEntry, ...] = ()   # systemd-boot: its menu (type #1 and #2) in its order
    default_id: str | None = None           # systemd-boot: the id of the entry it boots next
