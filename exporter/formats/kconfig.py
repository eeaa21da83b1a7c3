"""Kernel configuration files (/boot/config-K, /lib/modules/K/config): the one parser.

``CONFIG_X=value`` lines, quotes stripped from string values; ``# CONFIG_X is not set`` reads as
"n" (scripts/kconfig writes it for a bool or tristate that is off).  Other lines are ignored.
"""

from __future__ import annotations

import re
import sys

from .jsoncodec import Codec

_LINE = re.compile(rb"^(?:(CONFIG_[A-Za-z0-9_]+)=(.*)|# (CONFIG_[A-Za-z0-9_]+) is not set)\s*$", re.M)


def parse_kernel_config(data: bytes) -> dict[str, str]:
    """{CONFIG_X: value} of a kernel config file's bytes; the names are interned, because the
    kernels of a host share nearly all of their ~10,000 options."""
    config: dict[str, str] = {}
    for m in _LINE.finditer(data):
        if m.group(3):
            config[sys.intern(m.group(3).decode())] = "n"
            continue
        value = m.group(2).decode("utf-8", "replace").strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        config[sys.intern(m.group(1).decode())] = sys.intern(value)
    return config


# parsed configs as the persistent cache keeps them: ~10,000 lines a distribution kernel, and
# ~7 ms each to parse again in every timer run
CODEC = Codec("kconfig")
