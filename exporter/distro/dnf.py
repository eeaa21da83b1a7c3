"""dnf's configuration as it bears on a kernel upgrade: which installed packages it holds back
(the versionlock plugin, dnf5's versionlock.toml, ``exclude=`` in dnf.conf and repo files),
which ones it installs side by side (``installonlypkgs``), and the package names after whose
installation ``dnf needs-restarting -r`` asks for a reboot.  Parsing is exporter.formats.dnfconf;
this module finds and reads the files.  Sources: docs/formats.md, "dnf holds".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..formats.dnfconf import (DnfConfError, Rule, append_list, boolean, exclude_options, held_by_dnf5,
                               held_by_excludes, held_by_versionlock, parse_ini, parse_locklist,
                               parse_versionlock_toml)
from ..formats.rpmdb import InstalledPackage
from ..host.context import Context, Unreadable

DNF_CONF = ("/etc/dnf/dnf.conf", "/etc/yum.conf")
REPOS_DIRS = ("/etc/yum.repos.d", "/etc/yum/repos.d", "/etc/distro.repos.d")   # libdnf's reposdir default
PLUGIN_CONF_DIR = "/etc/dnf/plugins"
DNF5_VERSIONLOCK = "/etc/dnf/versionlock.toml"
NEEDS_RESTARTING_DIR = "/etc/dnf/plugins/needs-restarting.d"
# the versionlock plugin must be installed for its list to mean anything (else: /usr/lib/python3.N/...)
DEBIAN_PLUGIN = "/usr/lib/python3/dist-packages/dnf-plugins/versionlock.py"
# dnf/const.py INSTALLONLYPKGS (libdnf ConfigMain's default)
INSTALLONLYPKGS = ("kernel", "kernel-PAE", "installonlypkg(kernel)", "installonlypkg(kernel-module)",
                   "installonlypkg(vm)", "multiversion(kernel)")
# dnf-plugins-core plugins/needs_restarting.py NEED_REBOOT
NEED_REBOOT = ("kernel", "kernel-core", "kernel-rt", "glibc", "linux-firmware", "systemd", "dbus", "dbus-broker",
               "dbus-daemon", "microcode_ctl")
MAX_CONF = 1024 * 1024


@dataclass(frozen=True)
class DnfConfig:
    main: list[tuple[str, str, str]]     # dnf.conf's entries (section, key, value)
    source: str                          # its host path, or ""

    def option(self, key: str, default: str | None = None) -> str | None:
        found = default
        for section, k, value in self.main:
            if section == "main" and k == key:
                found = value
        return found

    def list_option(self, key: str, default: tuple[str, ...] = ()) -> list[str]:
        out = list(default)
        for section, k, value in self.main:
            if section == "main" and k == key:
                out = append_list(out, value)
        return out


def _text(ctx: Context, path: str) -> str | None:
    try:
        return ctx.load(path, lambda b: b.decode("utf-8", "replace"), limit=MAX_CONF, purpose="text")
    except Unreadable:
        return None


def _ini(ctx: Context, path: str) -> list[tuple[str, str, str]] | None:
    """A libdnf .ini file, None when absent; a file dnf would refuse is recorded as an error."""
    try:
        return ctx.load(path, lambda b: parse_ini(b.decode("utf-8", "replace")), limit=MAX_CONF, purpose="dnf-ini")
    except Unreadable:
        return None


def dnf_config(ctx: Context) -> DnfConfig:
    for path in DNF_CONF:
        entries = _ini(ctx, path)
        if entries is not None:
            return DnfConfig(entries, path)
    return DnfConfig([], "")


def installonly(conf: DnfConfig) -> frozenset[str]:
    """The provides that make a package install side by side (kernels), defaults appended to."""
    return frozenset(conf.list_option("installonlypkgs", INSTALLONLYPKGS))


@dataclass(frozen=True)
class HoldRules:
    """Every rule that may hold a package, as read from the files (hashable: the evaluation
    over the installed packages is cached on it and the database, see ``evaluate``)."""

    excludes: tuple[Rule, ...] = ()        # dnf.conf [main] and enabled repos (spec prefixed [repo])
    versionlock: tuple[Rule, ...] = ()     # the plugin's list, when the plugin is on
    dnf5: tuple = ()                       # versionlock.toml entries
    dnf5_source: str = DNF5_VERSIONLOCK


def hold_rules(ctx: Context, conf: DnfConfig) -> HoldRules:
    excludes: list[Rule] = []
    disabled = set(conf.list_option("disable_excludes"))
    if "all" not in disabled:
        if "main" not in disabled and conf.source:
            excludes += [Rule(conf.source, s, "exclude") for s in exclude_options(conf.main, "main")]
        for path, section, specs in _repo_excludes(ctx, conf, disabled):
            excludes += [Rule(path, s, "exclude", section) for s in specs]
    locks: tuple = ()
    text = _text(ctx, DNF5_VERSIONLOCK)
    if text is not None:
        try:
            locks = tuple(parse_versionlock_toml(text))
        except DnfConfError as exc:
            ctx.error(DNF5_VERSIONLOCK, exc)
    return HoldRules(tuple(excludes), tuple(_versionlock(ctx, conf)), locks)


@lru_cache(maxsize=16)
def evaluate(rules: HoldRules, packages: tuple[InstalledPackage, ...]) -> dict[str, Rule]:
    """name -> the rule that keeps every newer version of it from being installed (first rule
    wins: excludes, then versionlock, then dnf5).  Cached: an unchanged host matches no globs."""
    pkgs = list(packages)
    out: dict[str, Rule] = {}
    for name, rule in held_by_excludes(list(rules.excludes), pkgs).items():
        out.setdefault(name, rule)
    for name, rule in held_by_versionlock(list(rules.versionlock), pkgs).items():
        out.setdefault(name, rule)
    for name, rule in held_by_dnf5(list(rules.dnf5), pkgs, rules.dnf5_source).items():
        out.setdefault(name, rule)
    return out


def _repo_excludes(ctx: Context, conf: DnfConfig, disabled: set[str]):
    dirs = conf.list_option("reposdir", REPOS_DIRS)
    for directory in dirs:
        try:
            names = ctx.listdir(directory) or []
        except Unreadable:
            continue
        for name in names:
            if not name.endswith(".repo"):
                continue
            path = f"{directory.rstrip('/')}/{name}"
            entries = _ini(ctx, path)
            for section in dict.fromkeys(s for s, _, _ in entries or ()):
                if section in disabled:
                    continue
                enabled = [boolean(v) for s, k, v in entries if s == section and k == "enabled"]
                if enabled and enabled[-1] is False:
                    continue
                specs = exclude_options(entries, section)
                if specs:
                    yield path, section, specs


def _versionlock(ctx: Context, conf: DnfConfig) -> list[Rule]:
    """The dnf 4 plugin's rules: installed, plugins on in dnf.conf, not disabled in its own conf
    (the pluginconfpath directories, later ones winning), and a locklist named there
    (plugins/versionlock.py config() and _read_locklist())."""
    if boolean(conf.option("plugins") or "1") is False or not _versionlock_plugin_installed(ctx):
        return []
    main: dict[str, str] = {}
    for directory in conf.list_option("pluginconfpath", (PLUGIN_CONF_DIR,)):
        for section, key, value in _ini(ctx, f"{directory.rstrip('/')}/versionlock.conf") or ():
            if section == "main":
                main[key] = value
    if boolean(main.get("enabled", "1")) is False or not main.get("locklist"):
        return []
    text = _text(ctx, main["locklist"])
    return parse_locklist(text, main["locklist"]) if text is not None else []


def _versionlock_plugin_installed(ctx: Context) -> bool:
    """python3-dnf-plugin-versionlock's module, under any python3.N (or Debian's dist-packages)."""
    if ctx.exists(DEBIAN_PLUGIN):
        return True
    try:
        names = ctx.listdir("/usr/lib") or []
    except Unreadable:
        return False
    return any(ctx.exists(f"/usr/lib/{n}/site-packages/dnf-plugins/versionlock.py") for n in names
               if n.startswith("python3"))


def reboot_names(ctx: Context) -> frozenset[str]:
    """NEED_REBOOT plus the names listed in needs-restarting.d/*.conf (one per line)."""
    names = set(NEED_REBOOT)
    try:
        files = ctx.listdir(NEEDS_RESTARTING_DIR) or []
    except Unreadable:
        files = []
    for name in files:
        if name.endswith(".conf"):
            text = _text(ctx, f"{NEEDS_RESTARTING_DIR}/{name}")
            names.update(line.rstrip() for line in (text or "").splitlines() if line.rstrip())
    return frozenset(names)


