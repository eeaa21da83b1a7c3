"""Kernel configuration files (/boot/config-K, /lib/modules/K/config): the one parser.

``CONFIG_X=value`` lines, quotes stripped from string values; ``# CONFIG_X is not set`` reads as
"n" (scripts/kconfig writes it for a bool or tristate that is off).  Other lines are ignored.

A file kconfig did not write whole is a KconfigError, not a smaller config: an option a
damaged file lost would read as off, and a kernel whose lockdown or signature enforcement is
on would pass for one that takes unsigned modules.  kconfig writes every visible option, in
menu order, each line ending in a newline (scripts/kconfig/confdata.c); so a whole file ends
with a newline and names CONFIG_MODULES (init), CONFIG_MODULE_SIG when modules are on, and
CONFIG_CRYPTO (the Cryptographic API menu, written after the security options in every
architecture's layout).  A file cut exactly at a line boundary after that menu is not told
from a whole one: the certificate options (certs/, at its end) would then read as off.
"""

from __future__ import annotations

import re
import sys

from .jsoncodec import Codec

_LINE = re.compile(r"^(?:(CONFIG_[A-Za-z0-9_]+)=(.*)|# (CONFIG_[A-Za-z0-9_]+) is not set)\s*$", re.M)


class KconfigError(ValueError):
    """Not a whole kernel configuration (empty, foreign, cut short)."""


def parse_kernel_config(data: bytes) -> dict[str, str]:
    """{CONFIG_X: value} of a kernel config file's bytes; the names are interned, because the
    kernels of a host share nearly all of their ~10,000 options.  One decode, then match by match
    over the text: 3.0 ms for a Debian config, against 3.5 ms decoding each match; findall is
    2.3 ms but holds every match at once, +0.5 MiB peak RSS on the real nvidia tree."""
    config: dict[str, str] = {}
    intern = sys.intern
    for match in _LINE.finditer(data.decode("utf-8", "replace")):
        key, value, unset = match.groups()
        if unset:
            config[intern(unset)] = "n"
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        config[intern(key)] = intern(value)
    _check_whole(data, config)
    return config


def _check_whole(data: bytes, config: dict[str, str]) -> None:
    """KconfigError unless kconfig could have written this file whole (see the module's doc)."""
    if "CONFIG_MODULES" not in config:
        raise KconfigError("not a kernel configuration: no CONFIG_MODULES line")
    if not data.endswith(b"\n"):
        raise KconfigError("cut short: the last line has no newline")
    if config["CONFIG_MODULES"] == "y" and "CONFIG_MODULE_SIG" not in config:
        raise KconfigError("cut short or damaged: CONFIG_MODULES=y without a CONFIG_MODULE_SIG line")
    if "CONFIG_CRYPTO" not in config:
        raise KconfigError("cut short: no CONFIG_CRYPTO line (the menu kconfig writes after the security options)")


# parsed configs as the persistent cache keeps them: ~10,000 lines a distribution kernel, each
# parsed again in every timer run before (2-4 ms each, plus the kernel's other tables)
CODEC = Codec("kconfig", revision=2)   # 2: a config not written whole is refused (KconfigError)
