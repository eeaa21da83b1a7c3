"""Which kernel the bootloader starts next: GRUB (grub.cfg + grubenv), BLS, systemd-boot.

GRUB: grub.cfg's 00_header boots ``next_entry`` once when grub-reboot set it, else its
``set default=`` value, which is ``${saved_entry}`` for GRUB_DEFAULT=saved.  An entry is a
number, an id, or a title, and ``>`` walks into submenus ("1>2", "gnulinux-advanced-UUID>
gnulinux-6.1.0-27-amd64-advanced-UUID").  The chosen entry's ``linux`` line names the image.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from .context import Context, Unreadable
from .versioning import release_key

GRUB_CFGS = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")
GRUBENVS = ("/boot/grub/grubenv", "/boot/grub2/grubenv")
ESP_DIRS = ("/boot/efi", "/efi", "/boot")
LOADER_GUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
MAX_CFG = 4 * 1024 * 1024
_IMAGE_IN_PATH = re.compile(r"(?:vmlinuz|vmlinux|Image|bzImage)-([^\s/]+)")


class BootConfigError(ValueError):
    """A bootloader file cannot be parsed."""


@dataclass
class MenuEntry:
    title: str
    entry_id: str | None
    kernel: str | None = None
    children: list["MenuEntry"] = field(default_factory=list)
    submenu: bool = False


@dataclass(frozen=True)
class BootFacts:
    loader: str                 # grub | grub-bls | systemd-boot | unknown
    next_boot: str | None       # kernel release, None when it cannot be determined
    entry: str                  # how it was chosen, for humans ("saved_entry=1>2")
    detail: str = ""            # why next_boot is None, or a caveat
    config_mtime: float | None = None


def collect_bootloader(ctx: Context) -> BootFacts:
    sd = _systemd_boot(ctx)
    if sd is not None:
        return sd
    for cfg_path in GRUB_CFGS:
        try:
            text = ctx.load(cfg_path, _decode, limit=MAX_CFG, purpose="text")
        except Unreadable:
            return BootFacts("grub", None, "", f"{cfg_path} unreadable")
        if text is None:
            continue
        env = _grubenv(ctx, cfg_path.rsplit("/", 1)[0] + "/grubenv")
        st = ctx.stat(cfg_path)
        if re.search(r"^\s*blscfg\b", text, re.M):
            return _bls(ctx, env, st.st_mtime if st else None)
        return grub_next_boot(text, env, st.st_mtime if st else None)
    if ctx.listdir("/boot/loader/entries"):
        return _bls(ctx, {}, None)
    return BootFacts("unknown", None, "", "no grub.cfg, BLS entries or systemd-boot loader.conf found")


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


_GRUBENV_ESCAPE = re.compile(r"\\(.)", re.S)


def parse_grubenv(data: bytes) -> dict[str, str]:
    """grubenv: 1024-byte block of name=value lines, '#' padding, backslash escapes."""
    env: dict[str, str] = {}
    text = data.decode("utf-8", "replace")
    for line in text.split("\n"):
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        # left to right, as grub's envblk reads it: "\n" is a newline, "\x" is x (so a value
        # holding a backslash and an n, written "\\n", is not mangled into backslash-newline)
        env[name] = _GRUBENV_ESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)
    return env


def _grubenv(ctx: Context, path: str) -> dict[str, str]:
    try:
        return ctx.load(path, parse_grubenv, limit=65536, purpose="grubenv") or {}
    except Unreadable:
        return {}


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
            m = _IMAGE_IN_PATH.search(line)
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


def grub_next_boot(cfg: str, env: dict[str, str], mtime: float | None = None) -> BootFacts:
    menu, defaults = parse_grub_cfg(cfg)
    if env.get("next_entry"):
        spec, how = env["next_entry"], f"next_entry={env['next_entry']}"
    else:
        spec = next((d for d in reversed(defaults) if "next_entry" not in d), "0")
        how = f"default={spec}"
        if "saved_entry" in spec:
            spec = env.get("saved_entry") or "0"
            how = f"saved_entry={spec}"
    entry = select_entry(menu, spec)
    if entry is None:
        entry, how = (menu[0] if menu else None), f"{how} (not found: GRUB falls back to entry 0)"
    while entry is not None and entry.submenu:
        entry = entry.children[0] if entry.children else None
    if entry is None or entry.kernel is None:
        return BootFacts("grub", None, how, "the selected GRUB entry boots no Linux kernel", mtime)
    return BootFacts("grub", entry.kernel, how, "", mtime)


def select_entry(menu: list[MenuEntry], spec: str) -> MenuEntry | None:
    """Resolve a GRUB default: index, id or title, with '>' into submenus."""
    level = menu
    chosen = None
    for part in spec.split(">"):
        chosen = None
        if _is_index(part):
            i = int(part)
            chosen = level[i] if i < len(level) else None
        else:
            chosen = next((e for e in level if e.entry_id == part), None) or \
                next((e for e in level if e.title == part), None)
        if chosen is None:
            return None
        level = chosen.children
    return chosen


def _is_index(spec: str) -> bool:
    """An entry number as GRUB's grub_strtoul reads one: ASCII digits ('²' and '٣' are titles),
    and short enough to be an index (longer overflows, which GRUB treats as no entry)."""
    return spec.isascii() and spec.isdigit() and len(spec) <= 18


def parse_bls_entry(data: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            fields.setdefault(key, value.strip())
    return fields


def _bls_entries(ctx: Context, directory: str) -> list[tuple[str, dict[str, str]]]:
    entries = []
    for name in ctx.listdir(directory) or []:
        if not name.endswith(".conf"):
            continue
        try:
            fields = ctx.load(f"{directory}/{name}", parse_bls_entry, limit=65536, purpose="bls")
        except Unreadable:
            continue
        if fields:
            entries.append((name[:-5], fields))
    # BLS order: newest version first, then file name
    entries.sort(key=lambda e: e[0], reverse=True)
    entries.sort(key=lambda e: release_key(_bls_kernel(e[1]) or "0"), reverse=True)
    return entries


def _bls_kernel(fields: dict[str, str]) -> str | None:
    m = _IMAGE_IN_PATH.search(fields.get("linux", ""))
    return m.group(1) if m else (fields.get("version") or None)


def _bls(ctx: Context, env: dict[str, str], mtime: float | None) -> BootFacts:
    entries = _bls_entries(ctx, "/boot/loader/entries")
    if not entries:
        return BootFacts("grub-bls", None, "", "blscfg in grub.cfg but no /boot/loader/entries", mtime)
    spec = env.get("next_entry") or env.get("saved_entry") or ""
    how = f"saved_entry={spec}" if spec else "newest BLS entry"
    chosen = None
    if spec:
        if _is_index(spec) and int(spec) < len(entries):
            chosen = entries[int(spec)]
        chosen = chosen or next((e for e in entries if e[0] == spec or e[1].get("title") == spec), None)
        if chosen is None:
            how += " (not found: first entry)"
    chosen = chosen or entries[0]
    return BootFacts("grub-bls", _bls_kernel(chosen[1]), how, "", mtime)


def _systemd_boot(ctx: Context) -> BootFacts | None:
    """systemd-boot: one-shot / default EFI variables, then loader.conf's default glob."""
    for esp in ESP_DIRS:
        conf_path = f"{esp}/loader/loader.conf"
        try:
            conf = ctx.load(conf_path, parse_bls_entry, limit=65536, purpose="bls")
        except Unreadable:
            continue
        if conf is None:
            continue
        entries = _bls_entries(ctx, f"{esp}/loader/entries")
        if not entries:
            continue
        oneshot = _efi_string(ctx, "LoaderEntryOneShot")
        default = _efi_string(ctx, "LoaderEntryDefault")
        pattern = oneshot or default or conf.get("default", "")
        how = ("LoaderEntryOneShot" if oneshot else "LoaderEntryDefault" if default else "loader.conf default") \
            + f"={pattern}" if pattern else "first entry"
        chosen = _match_glob(entries, pattern) if pattern and pattern != "@saved" else None
        chosen = chosen or entries[0]
        return BootFacts("systemd-boot", _bls_kernel(chosen[1]), how, "", None)
    return None


def _match_glob(entries: list[tuple[str, dict[str, str]]], pattern: str):
    import fnmatch
    pattern = pattern[:-5] if pattern.endswith(".conf") else pattern
    return next((e for e in entries if fnmatch.fnmatchcase(e[0], pattern)), None)


def _efi_string(ctx: Context, name: str) -> str | None:
    try:
        raw = ctx.load_local(ctx.fs.sys(f"firmware/efi/efivars/{name}-{LOADER_GUID}"), bytes,
                             limit=65536, purpose="raw")
    except Unreadable:
        return None
    if not raw or len(raw) < 6:
        return None
    return raw[4:].decode("utf-16-le", "replace").rstrip("\0") or None
