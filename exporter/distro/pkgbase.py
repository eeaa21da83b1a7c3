"""Which package installed a kernel release (/lib/modules/K/pkgbase).

Arch names the boot files after the kernel's package, not its release: /boot/vmlinuz-linux and
/boot/initramfs-linux.img belong to the release whose /usr/lib/modules/K/pkgbase says "linux".
The kernel, initramfs and bootloader collectors ask on every host (the file is simply absent
elsewhere), so this lives apart from the Arch backend and its pacman parsers, which only an
Arch host loads.
"""

from __future__ import annotations

import re

from ..host.context import Context, Unreadable

_PKGBASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
MODULES_ROOT = "/lib/modules"


def read_pkgbase(ctx: Context, kernel: str) -> str | None:
    """The package name a kernel release was installed by (/lib/modules/K/pkgbase), or None."""
    try:
        raw = ctx.load(f"{MODULES_ROOT}/{kernel}/pkgbase", bytes, limit=4096, purpose="raw")
    except Unreadable:
        return None
    text = (raw or b"").decode("ascii", "replace").strip()
    return text if _PKGBASE.fullmatch(text) else None


def release_of_pkgbase(ctx: Context, name: str) -> str | None:
    """The one installed release whose pkgbase is ``name`` (None when none or several are)."""
    try:
        releases = ctx.listdir(MODULES_ROOT) or []
    except Unreadable:
        return None
    found = [k for k in releases if read_pkgbase(ctx, k) == name]
    return found[0] if len(found) == 1 else None
