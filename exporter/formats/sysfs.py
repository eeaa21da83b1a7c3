"""Kernel knobs as sysfs and securityfs print them: lockdown, module.sig_enforce, boot_params.

Pure parsers of the files' bytes (Documentation/ABI: security/lockdown, module parameters,
x86 boot_params).  Malformed values raise TrustDataError; the caller says which file.
"""

from __future__ import annotations

import re

from .errors import TrustDataError

# arch/x86 boot_params.secure_boot (offset 0x1EC), enum efi_secureboot_mode
_BOOT_PARAMS_SB_OFFSET = 0x1EC


_KERNEL_SB_MODES = {0: "unset", 1: "unknown", 2: "disabled", 3: "enabled"}


def parse_boot_params_secure_boot(raw: bytes) -> str | None:
    """x86 boot_params.secure_boot: unset / unknown / disabled / enabled (None if too short)."""
    if len(raw) <= _BOOT_PARAMS_SB_OFFSET:
        return None
    return _KERNEL_SB_MODES.get(raw[_BOOT_PARAMS_SB_OFFSET], "unknown")


def parse_lockdown(raw: bytes, origin: str = "lockdown") -> str:
    """Active level from securityfs `lockdown` (`[none] integrity confidentiality`)."""
    m = re.search(r"\[([a-z]+)\]", raw.decode("ascii", "replace"))
    if not m:
        raise TrustDataError("bad_lockdown", f"{origin}: no [active] level in {raw[:80]!r}")
    return m.group(1)


def parse_sig_enforce(raw: bytes, origin: str = "sig_enforce") -> bool:
    """`module.sig_enforce` (Y/N)."""
    value = raw.strip()
    if value in (b"Y", b"1"):
        return True
    if value in (b"N", b"0"):
        return False
    raise TrustDataError("bad_sig_enforce", f"{origin}: {raw[:20]!r} is not Y/N")
