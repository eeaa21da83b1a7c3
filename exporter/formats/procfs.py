"""Files of /proc as the kernel prints them."""

from __future__ import annotations


def parse_proc_modules(data: bytes) -> tuple[tuple[str, str], ...]:
    """/proc/modules: ``name size refs deps state address [(taint)]`` -> (name, taint letters)."""
    mods = []
    for line in data.decode("utf-8", "replace").splitlines():
        words = line.split()
        if len(words) < 6:
            continue
        taint = ""
        if len(words) > 6 and words[6].startswith("("):
            taint = words[6].strip("()")
        mods.append((words[0], taint))
    return tuple(mods)
