"""os-release(5): ``KEY=value`` lines, values optionally in single or double quotes.

Double-quoted values take backslash escapes for ``\\``, ``"``, ``$`` and `````; comments and
blank lines are skipped, as systemd's parse_env_file() reads the file.
"""

from __future__ import annotations

import re

_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_ESCAPE = re.compile(r'\\([\\"$`])')


def parse_os_release(data: bytes) -> dict[str, str]:
    """{KEY: value} of an os-release file's bytes."""
    out: dict[str, str] = {}
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        m = _LINE.match(line)
        if not m:
            continue
        key, value = m.group(1), m.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = _ESCAPE.sub(r"\1", value[1:-1])
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        out[key] = value
    return out
