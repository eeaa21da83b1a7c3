"""--collector.bootloader: which kernel the boot loader starts next: GRUB (grub.cfg + grubenv),
GRUB with BLS entries (blscfg), or systemd-boot (loader.conf + EFI variables; type #1 entries
and unified kernel images).
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..distro import detect
from ..distro.pkgbase import release_of_pkgbase
from ..facts.bootloader import BootFacts
from ..facts.kernel import MODULES_ROOT
from ..formats.bls import (SdBootEntry, blscfg_order, parse_bls_entry, parse_loader_conf, parse_sdboot_entry,
                           pick_name_version_sort_key, sdboot_order, split_tries, valid_entry_name)
from ..formats.efi import LOADER_GUID, efi_string
from ..formats.osrelease import parse_os_release
from ..formats.pe import Uki, read_uki
from ..formats.grub import IMAGE_IN_PATH, MenuEntry, is_index, parse_grub_cfg, parse_grubenv, select_entry
from ..formats.versions import release_key
from ..host.context import Context, Unreadable
from ..host.reader import open_regular
from . import register

# RHEL 8 on EFI keeps the real grub.cfg in the ESP (RHEL 9 leaves a stub there that loads /boot/grub2's)
GRUB_CFGS = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg") + tuple(
    f"/boot/efi/EFI/{vendor}/grub.cfg" for vendor in ("redhat", "centos", "rocky", "almalinux", "fedora"))
GRUBENVS = ("/boot/grub/grubenv", "/boot/grub2/grubenv")
ESP_DIRS = ("/boot/efi", "/efi", "/boot")
MAX_CFG = 4 * 1024 * 1024
UKI_DIR = "EFI/Linux"


@register("bootloader", BootFacts, readiness=True)
def collect_bootloader(ctx: Context) -> BootFacts:
    facts = _choose(ctx)
    if facts.next_boot and not ctx.is_dir(f"{MODULES_ROOT}/{facts.next_boot}"):
        release = release_of_pkgbase(ctx, facts.next_boot)   # Arch: vmlinuz-<pkgbase>
        if release is not None:
            return replace(facts, next_boot=release, detail=f"/boot/vmlinuz-{facts.next_boot} is the image of "
                           f"{release} ({MODULES_ROOT}/{release}/pkgbase)")
    return facts


def _choose(ctx: Context) -> BootFacts:
    sd = _systemd_boot(ctx) or _grub2_bls(ctx)
    if sd is not None:
        return sd
    for cfg_path in GRUB_CFGS:
        try:
            loaded = ctx.load(cfg_path, _decode_and_parse, limit=MAX_CFG, purpose="grub.cfg")
        except Unreadable:
            return BootFacts("grub", None, "", f"{cfg_path} unreadable")
        if loaded is None:
            continue
        text, parsed = loaded
        env = _grubenv(ctx, cfg_path.rsplit("/", 1)[0] + "/grubenv")
        st = ctx.stat(cfg_path)
        if re.search(r"^\s*blscfg\b", text, re.M):
            facts = _bls(ctx, env, st.st_mtime if st else None, _blscfg_variant(ctx))
        else:
            facts = grub_next_boot(text, env, st.st_mtime if st else None, parsed)
        if facts.next_boot is None and not parsed[0] and not _LOADS_MORE.search(text):
            return _boots_nothing(ctx, cfg_path, facts)
        return facts
    if ctx.listdir("/boot/loader/entries", must_be_dir=True):
        return _bls(ctx, {}, None, _blscfg_variant(ctx))
    return BootFacts("unknown", None, "", "no grub.cfg, BLS entries or systemd-boot loader.conf found")


_LOADS_MORE = re.compile(r"^\s*(?:configfile|source|normal|legacy_configfile)\b", re.M)


def _boots_nothing(ctx: Context, cfg_path: str, facts: BootFacts) -> BootFacts:
    """grub.cfg gives GRUB an empty menu (no menuentry, no BLS entry, nothing it loads): GRUB
    then stops at its command line (grub-core/normal/main.c runs the menu only when it has
    entries), so the next boot comes up in no kernel.  An empty, cut or overwritten grub.cfg
    looks like this; it is a read error (readiness unknown), never "assume the newest"."""
    ctx.error(cfg_path, "no menu entry: GRUB would stop at its command line")
    return replace(facts, next_boot=None,
                   detail=f"{cfg_path} gives GRUB no menu entry: it would stop at its command line")


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _decode_and_parse(data: bytes) -> tuple[str, tuple[list[MenuEntry], list[str]]]:
    """The text and its parsed menu, cached together by the file's identity: a warm scrape
    does not tokenise grub.cfg again (shlex over every menuentry line was most of its cost)."""
    text = _decode(data)
    return text, parse_grub_cfg(text)


def _grubenv(ctx: Context, path: str) -> dict[str, str]:
    try:
        return ctx.load(path, parse_grubenv, limit=65536, purpose="grubenv") or {}
    except Unreadable:
        return {}


def grub_next_boot(cfg: str, env: dict[str, str], mtime: float | None = None,
                   parsed: tuple[list[MenuEntry], list[str]] | None = None) -> BootFacts:
    """The kernel GRUB boots next from grub.cfg's text (or its ``parsed`` menu, which is only
    read) and grubenv."""
    menu, defaults = parsed if parsed is not None else parse_grub_cfg(cfg)
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


def _blscfg_variant(ctx: Context) -> str:
    distro, release, _ = detect(ctx)
    return distro.blscfg_variant(release)


def _bls_files(ctx: Context, directory: str) -> list[tuple[str, dict[str, str]]]:
    """(id, fields) of every readable entry, in file-name order (GRUB reads the directory in the
    file system's order, which for these few files is not known from here)."""
    entries = []
    for name in ctx.listdir(directory, must_be_dir=True) or []:
        if not name.endswith(".conf"):
            continue
        try:
            fields = ctx.load(f"{directory}/{name}", parse_bls_entry, limit=65536, purpose="bls")
        except Unreadable:
            continue
        if fields:
            entries.append((name[:-5], fields))
    return entries


def _bls_entries(ctx: Context, directory: str) -> list[tuple[str, dict[str, str]]]:
    """systemd-boot's entries, newest version first, then file name."""
    entries = _bls_files(ctx, directory)
    entries.sort(key=lambda e: e[0], reverse=True)
    entries.sort(key=lambda e: release_key(_bls_kernel(e[1]) or "0"), reverse=True)
    return entries


def _bls_kernel(fields: dict[str, str]) -> str | None:
    """The release an entry boots: from the image's name, else its ``version`` (sdbootutil writes
    ``SNAPSHOT@RELEASE`` there and names the image /TOKEN/RELEASE/linux-HASH)."""
    m = IMAGE_IN_PATH.search(fields.get("linux", ""))
    version = re.sub(r"^[0-9]+@", "", fields.get("version", ""))
    return m.group(1) if m else (version or None)


SUSE_BOOTLOADER = "/etc/sysconfig/bootloader"


def _grub2_bls(ctx: Context) -> BootFacts | None:
    """SUSE's grub2-bls (sdbootutil, /etc/sysconfig/bootloader LOADER_TYPE="grub2-bls"): GRUB
    reading the ESP's loader/entries; the default is what `sdbootutil set-default` set: the
    LoaderEntryDefault variable, else ``default=`` in the grubenv next to GRUB on the ESP
    (EFI/<distribution>/grubenv); neither: the newest entry."""
    try:
        raw = ctx.load(SUSE_BOOTLOADER, bytes, limit=65536, purpose="raw")
    except Unreadable:
        return None
    m = re.search(rb'^\s*LOADER_TYPE\s*=\s*["\']?([A-Za-z0-9_-]+)', raw or b"", re.M)
    if not m or m.group(1) != b"grub2-bls":
        return None
    for esp in ESP_DIRS:
        entries = _bls_entries(ctx, f"{esp}/loader/entries")
        if not entries:
            continue
        default = None
        for vendor in sorted(ctx.listdir(f"{esp}/EFI") or []):
            env = _grubenv(ctx, f"{esp}/EFI/{vendor}/grubenv")
            if env.get("default"):
                default = env["default"]
                break
        chosen, how = _default_entry(entries, default, lambda name: _efi_string(ctx, name) or None)
        return BootFacts("grub2-bls", _bls_kernel((chosen or entries[0])[1]), how.replace("loader.conf default",
                         "grubenv default"), "", None)
    return None


def _bls(ctx: Context, env: dict[str, str], mtime: float | None, variant: str) -> BootFacts:
    """GRUB's blscfg: its own menu order (formats.bls.blscfg_order), then the default as GRUB
    resolves it (next_entry, else saved_entry: index, id or title; not found: the first)."""
    entries = blscfg_order(_bls_files(ctx, "/boot/loader/entries"), variant)
    if not entries:
        return BootFacts("grub-bls", None, "", "blscfg in grub.cfg but no /boot/loader/entries", mtime)
    spec = env.get("next_entry") or env.get("saved_entry") or ""
    how = (f"next_entry={spec}" if env.get("next_entry") else f"saved_entry={spec}") if spec else "newest BLS entry"
    chosen = None
    if spec:
        if is_index(spec) and int(spec) < len(entries):
            chosen = entries[int(spec)]
        chosen = chosen or next((e for e in entries if e[0] == spec or e[1].get("title") == spec), None)
        if chosen is None:
            how += " (not found: first entry)"
    chosen = chosen or entries[0]
    return BootFacts("grub-bls", _bls_kernel(chosen[1]), how, "", mtime)


def _systemd_boot(ctx: Context) -> BootFacts | None:
    """systemd-boot's default entry (boot.c, config_select_default_entry): the first of
    LoaderEntryOneShot, LoaderEntryDefault and loader.conf's ``default`` whose glob matches an
    entry; ``@saved`` in either of the last two stands for LoaderEntryLastBooted; one that
    matches nothing falls through to the next; none matching: the first entry."""
    menu = systemd_boot_menu(ctx)
    if menu is None:
        return None
    chosen = menu.default or menu.entries[0]
    return BootFacts("systemd-boot", chosen.kernel, menu.how, "", None, menu.entries, chosen.id)


@dataclass(frozen=True)
class SdBootMenu:
    esp: str
    entries: tuple[SdBootEntry, ...]      # in menu order
    default: SdBootEntry | None           # None: no rule matched (the first entry boots)
    how: str

    def entry_for(self, kernel: str) -> SdBootEntry | None:
        """The entry systemd-boot boots ``kernel`` with: the default entry when it boots that
        kernel, else the first entry in menu order that does."""
        chosen = self.default or self.entries[0]
        if chosen.kernel == kernel:
            return chosen
        return next((e for e in self.entries if e.kernel == kernel), None)


def systemd_boot_menu(ctx: Context) -> SdBootMenu | None:
    """systemd-boot's menu as ``bootctl list`` shows it: on the first ESP with a loader.conf,
    type #1 entries (loader/entries/*.conf) and type #2 UKIs (EFI/Linux/*.efi) of the ESP and
    of an XBOOTLDR partition mounted at /boot, in sdboot_order; None when there is none."""
    for esp in ESP_DIRS:
        conf_path = f"{esp}/loader/loader.conf"
        try:
            conf = ctx.load(conf_path, parse_loader_conf, limit=65536, purpose="loader.conf")
        except Unreadable:
            continue
        if conf is None:
            continue
        found = _type1(ctx, esp, "esp") + _type2(ctx, esp, "esp")
        xbootldr = _xbootldr(ctx, esp)
        if xbootldr:
            found += _type1(ctx, xbootldr, "xbootldr") + _type2(ctx, xbootldr, "xbootldr")
        entries = tuple(sdboot_order(found))
        if not entries:
            continue
        chosen, how = _default_entry(entries, conf.get("default") or None,
                                     lambda name: _efi_string(ctx, name) or None)
        return SdBootMenu(esp, entries, chosen, how)
    return None


def _xbootldr(ctx: Context, esp: str) -> str | None:
    """/boot as the Extended Boot Loader partition beside an ESP elsewhere: only when it is a
    mount point of its own (bootctl's find_xbootldr also checks the partition type, which a file
    tree cannot show); a /boot directory on the root file system is no partition sd-boot reads."""
    if esp == "/boot":
        return None
    boot, root = ctx.stat("/boot"), ctx.stat("/")
    if boot is None or root is None or boot.st_dev == root.st_dev:
        return None
    return "/boot"


def _type1(ctx: Context, root: str, source: str) -> list[SdBootEntry]:
    """Type #1 entries as bootspec.c boot_entries_find_type1 reads them."""
    directory = f"{root}/loader/entries"
    out = []
    for name in ctx.listdir(directory) or []:
        if not name.lower().endswith(".conf"):
            continue
        entry_id, left, done = split_tries(name)
        if not valid_entry_name(entry_id):
            continue
        try:
            fields = ctx.load(f"{directory}/{name}", parse_sdboot_entry, limit=65536, purpose="bls-sdboot")
        except Unreadable:
            continue
        if fields is None:
            continue
        out.append(SdBootEntry(entry_id, "type1", source, f"{directory}/{name}", _bls_kernel(fields),
                               fields.get("title"), fields.get("sort-key"), fields.get("machine-id"),
                               fields.get("version"), left, done))
    return out


def _type2(ctx: Context, root: str, source: str) -> list[SdBootEntry]:
    """Type #2 entries (UKIs) as bootspec.c boot_entries_find_unified reads them: one per
    profile; a UKI that cannot be parsed is no entry (bootctl and sd-boot pass over it), and
    is reported as a read error of this collector."""
    directory = f"{root}/{UKI_DIR}"
    out: list[SdBootEntry] = []
    for name in ctx.listdir(directory) or []:
        if not name.lower().endswith(".efi"):
            continue
        path = f"{directory}/{name}"
        uki = load_uki(ctx, path)
        if uki is None:
            continue
        out.extend(_uki_entries(uki, name, path, source))
    return out


def load_uki(ctx: Context, path: str) -> Uki | None:
    """A UKI's headers and small sections, cached by the file's identity; None when absent,
    not a regular file or not a UKI; a damaged one is reported (ctx.error) and None."""
    st = ctx.lstat(path)
    if st is None or not stat.S_ISREG(st.st_mode):    # bootctl: dirent_is_file, O_NOFOLLOW
        return None
    try:
        return ctx.compute(path, "uki", lambda local, _st: _read_uki(local, path))
    except Unreadable:
        return None


def _read_uki(local, hostpath: str) -> Uki | None:
    with open_regular(local) as fh:
        return read_uki(fh, os.fstat(fh.fileno()).st_size, hostpath)


def _uki_entries(uki: Uki, name: str, path: str, source: str) -> list[SdBootEntry]:
    """bootspec.c boot_entry_load_unified, per profile."""
    stripped, left, done = split_tries(name)
    if not valid_entry_name(stripped):
        return []
    out = []
    for p in uki.profiles:
        osrel = parse_os_release(p.osrel.encode())
        picked = pick_name_version_sort_key(osrel)
        if picked is None:
            continue
        title, version, sort_key = picked
        prof = parse_os_release(p.profile.encode()) if p.profile is not None else {}
        entry_id, without = stripped, None
        if prof.get("ID") or p.number > 0:
            without = stripped
            entry_id = f"{stripped}@{prof['ID']}" if prof.get("ID") else f"{stripped}@{p.number}"
        out.append(SdBootEntry(entry_id, "type2", source, path, uki.uname, title, sort_key, None, version,
                               left, done, p.number, without))
    return out


def _default_entry(entries, conf_default: str | None, efivar: Callable[[str], str | None]):
    """(the chosen entry or None, how) by systemd-boot's rule; `efivar` reads a loader variable."""
    saved = efivar("LoaderEntryLastBooted")
    default_var = efivar("LoaderEntryDefault")
    tried: list[str] = []
    candidates = [("LoaderEntryOneShot", efivar("LoaderEntryOneShot"))]
    if default_var == "@saved":
        candidates.append(("LoaderEntryDefault=@saved: LoaderEntryLastBooted", saved))
    else:
        candidates.append(("LoaderEntryDefault", default_var))
    if conf_default == "@saved":
        # "No need to do the same thing twice": LastBooted was tried already through the variable.
        candidates.append(("loader.conf default @saved: LoaderEntryLastBooted",
                           None if default_var == "@saved" else saved))
    else:
        candidates.append(("loader.conf default", conf_default))
    for source, pattern in candidates:
        if not pattern:
            continue
        found = _match_glob(entries, pattern)
        if found is not None:
            return found, "; ".join([*tried, f"{source}={pattern}"])
        tried.append(f"{source}={pattern} (matches no entry)")
    return None, "; ".join([*tried, "first entry"])


def _match_glob(entries, pattern: str):
    """The first entry whose id the glob matches; systemd-boot folds both to lower case.  An
    SdBootEntry's id keeps its ``.conf``/``.efi`` (as sd-boot's and bootctl's do); SUSE's
    grub2-bls entries are (id without .conf, fields), so ``.conf`` is dropped from the pattern
    for those."""
    pattern = pattern.lower()
    if entries and isinstance(entries[0], SdBootEntry):
        return next((e for e in entries if fnmatch.fnmatchcase(e.id.lower(), pattern)), None)
    pattern = pattern[:-5] if pattern.endswith(".conf") else pattern
    return next((e for e in entries if fnmatch.fnmatchcase(e[0].lower(), pattern)), None)


def _efi_string(ctx: Context, name: str) -> str | None:
    try:
        raw = ctx.load_local(ctx.fs.sys(f"firmware/efi/efivars/{name}-{LOADER_GUID}"), bytes,
                             limit=65536, purpose="raw")
    except Unreadable:
        return None
    return efi_string(raw)
