"""GRUB's own files: grub.cfg's menu and default, and grubenv.

grub.cfg's 00_header boots ``next_entry`` once when grub-reboot set it, else its ``set
default=`` value, which is ``${saved_entry}`` for GRUB_DEFAULT=saved.  An entry is a number, an
id, or a title, and ``>`` walks into submenus ("1>2", "gnulinux-advanced-UUID>
gnulinux-6.1.0-27-amd64-advanced-UUID").  The chosen entry's ``linux`` line names the image.
Sources: docs/formats.md, "Boot loaders".
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

# the kernel release in an image path: /vmlinuz-6.1.0-27-amd64, /boot/vmlinuz-linux (Arch pkgbase)
IMAGE_IN_PATH = re.compile(r"(?:vmlinuz|vmlinux|Image|bzImage)-([^\s/]+)")


@dataclass
class MenuEntry:
    title: str
    entry_id: str | None
    kernel: str | None = None
    children: list["MenuEntry"] = field(default_factory=list)
    submenu: bool = False


def parse_grubenv(data: bytes) -> dict[str, str]:
    """grubenv: a 1024-byte block of ``name=value`` lines after a '#' signature, '#' padding.

    As GRUB's envblk.c reads it, left to right: a backslash takes the next byte literally (so
    grub-editenv's backslash + newline is a newline inside the value, and backslash + 'n' is an
    'n'); an unescaped newline ends the value; lines starting with '#' are comments."""
    env: dict[str, str] = {}
    text = data.decode("utf-8", "replace")
    i, n = 0, len(text)
    while i < n:
        end = text.find("\n", i)
        end = n if end < 0 else end
        if text.startswith("#", i) or "=" not in text[i:end]:
            i = end + 1
            continue
        eq = text.index("=", i)
        name, value, j = text[i:eq], [], eq + 1
        while j < n and text[j] != "\n":
            if text[j] == "\\" and j + 1 < n:
                j += 1
            value.append(text[j])
            j += 1
        env[name] = "".join(value)
        i = j + 1
    return env


def parse_grub_cfg(text: str) -> tuple[list[MenuEntry], list[str]]:
    """Top-level menu and the top-level ``set default=`` values in file order."""
    root = MenuEntry("", None, submenu=True)
    stack = [root]
    defaults: list[str] = []
    depth_other = 0   # braces of functions / if-blocks we do not model
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head = line.split(None, 1)[0]
        if head in ("menuentry", "submenu"):
            entry = _menu_line(line, head == "submenu")
            stack[-1].children.append(entry)
            stack.append(entry)
            continue
        if line == "}" or line.startswith("}"):
            if depth_other:
                depth_other -= 1
            elif len(stack) > 1:
                stack.pop()
            continue
        if line.endswith("{"):
            depth_other += 1
            continue
        if head in ("linux", "linuxefi", "linux16") and len(stack) > 1:
            m = IMAGE_IN_PATH.search(line)
            if m and stack[-1].kernel is None:
                stack[-1].kernel = m.group(1)
            continue
        m = re.match(r'^set\s+default=(["\']?)(.*)\1\s*$', line)
        if m and len(stack) == 1:
            defaults.append(m.group(2))
    return root.children, defaults


def _menu_line(line: str, submenu: bool) -> MenuEntry:
    try:
        words = shlex.split(line.rstrip("{").strip(), posix=True)
    except ValueError:
        words = line.split()
    title = words[1] if len(words) > 1 else ""
    entry_id = None
    for i, w in enumerate(words):
        if w in ("$menuentry_id_option", "--id", "${menuentry_id_option}") and i + 1 < len(words):
            entry_id = words[i + 1]
    return MenuEntry(title, entry_id, submenu=submenu)


def select_entry(menu: list[MenuEntry], spec: str) -> MenuEntry | None:
    """Resolve a GRUB default: index, id or title, with '>' into submenus."""
    level = menu
    chosen = None
    for part in spec.split(">"):
        chosen = None
        if is_index(part):
            i = int(part)
            chosen = level[i] if i < len(level) else None
        else:
            chosen = next((e for e in level if e.entry_id == part), None) or \
                next((e for e in level if e.title == part), None)
        if chosen is None:
            return None
        level = chosen.children
    return chosen


def is_index(spec: str) -> bool:
    """An entry number as GRUB's grub_strtoul reads one: ASCII digits ('²' and '٣' are titles),
    and short enough to be an index (longer overflows, which GRUB treats as no entry)."""
    return spec.isascii() and spec.isdigit() and len(spec) <= 18
