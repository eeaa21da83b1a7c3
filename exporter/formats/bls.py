"""Boot Loader Specification entries (type #1 ``.conf`` files) and systemd-boot's loader.conf.

Both are ``key value`` lines; the first occurrence of a key wins, as in GRUB's blscfg
(systemd-boot keeps the last one).  Sources: docs/formats.md, "Boot loaders".
"""

from __future__ import annotations


def parse_bls_entry(data: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            fields.setdefault(key, value.strip())
    return fields
