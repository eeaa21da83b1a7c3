"""dnf's holds, duplicates and reboot rule against the real dnf (Debian's dnf 4.14 with
dnf-plugins-core 4.3's versionlock and needs-restarting plugins, unpacked from its .deb:
rpmtools.dnf_plugins) on an rpm --root tree.

Holds: a local repository (createrepo_c) offers a newer version *and* release of every installed
package (and for tool a newer one inside a version glob); `dnf upgrade --assumeno` shows what dnf would install; a package is held when dnf
would not move it.  The exporter's dkms_package_held must name exactly those, for every rule
kind: versionlock.list locks and '!' excludes, exclude=/excludepkgs= in dnf.conf and repo files,
disable_excludes, the plugin switched off.  Each matching rule is cited by its source line in
the unit cases below."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import require_tool, scrape
from rpmtools import Spec, dnf_plugins, install, rpmbuild
from exporter.facts.packages import PackageFacts
from exporter.facts.system import SystemFacts
from exporter.formats.dnfconf import (Rule, fnmatch, held_by_dnf5, held_by_excludes, held_by_versionlock,
                                      parse_ini, parse_locklist, parse_nevra, parse_versionlock_toml, string_list)

K = "5.14.0-427.13.1.el9_4"
INSTALLED = [
    Spec("kernel-core", "5.14.0", "427.13.1.el9_4", provides=(f"kernel = 5.14.0-{'427.13.1.el9_4'}",)),
    Spec("kernel-devel", "5.14.0", "427.13.1.el9_4"),
    Spec("kmod-foo", "2.1", "3.el9", epoch=1),
    Spec("tool", "1.0", "1"),
    Spec("glibc", "2.34", "100.el9"),
    Spec("libfoo", "1.0", "1", arch="noarch"),
]
NEWER = [
    Spec("kernel-core", "5.15.0", "1.el9", provides=("kernel = 5.15.0-1.el9",)),
    Spec("kernel-devel", "5.15.0", "1.el9"),
    Spec("kmod-foo", "3.0", "1.el9", epoch=1),
    Spec("tool", "2.0", "2"),
    Spec("tool", "1.5", "1"),          # matches tool-1*: a glob lock lets it in
    Spec("glibc", "2.35", "1.el9"),
    Spec("libfoo", "2.0", "2", arch="noarch"),
]
NAMES = sorted({s.name for s in INSTALLED})

# (versionlock.list, dnf.conf [main] extra lines, repo extra lines, plugin enabled)
CASES = {
    "nothing": ("", "", "", True),
    "lock as versionlock add writes it": (f"kernel-core-0:5.14.0-{'427.13.1.el9_4'}.*\n", "", "", True),
    "lock NEVR and epoch": ("kmod-foo-1:2.1-3.el9\ntool-1.0-1\n", "", "", True),
    "a bare name locks nothing": ("kmod-foo\n", "", "", True),
    "a version glob locks nothing newer away": ("tool-1*\n", "", "", True),
    "exclude in the locklist": ("!kernel-devel\n#comment\n\n", "", "", True),
    "plugin off": (f"kernel-core-0:5.14.0-{'427.13.1.el9_4'}.*\n", "", "", False),
    "exclude glob in dnf.conf": ("", "exclude=kernel*\n", "", True),
    "excludepkgs list with continuation": ("", "excludepkgs=tool, glibc\n  libfoo.noarch\n", "", True),
    "exclude in the repo file": ("", "", "excludepkgs=kmod-*\n", True),
    "disable_excludes=main": ("", "exclude=kernel*\ndisable_excludes=main\n", "excludepkgs=tool\n", True),
    "disable_excludes=all": ("", "exclude=kernel*\ndisable_excludes=all\n", "excludepkgs=tool\n", True),
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("repo")
    for spec in NEWER:
        built = rpmbuild(spec)
        (path / built.name).write_bytes(built.read_bytes())
    proc = subprocess.run([require_tool("createrepo_c"), "-q", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return path


def make_tree(root: Path, repo: Path, locklist: str, main: str, repo_extra: str, enabled: bool) -> Path:
    install(root, *(rpmbuild(s) for s in INSTALLED), justdb=True, faketime=True)
    (root / "etc/dnf/plugins").mkdir(parents=True, exist_ok=True)
    (root / "etc/yum.repos.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/os-release").write_text('ID="rhel"\nID_LIKE="fedora"\nVERSION_ID="9.4"\n')
    (root / "etc/dnf/dnf.conf").write_text("[main]\ngpgcheck=0\n" + main)
    (root / "etc/yum.repos.d/local.repo").write_text(f"[local]\nname=local\nbaseurl=file://{repo}\ngpgcheck=0\n"
                                                     + repo_extra)
    (root / "etc/dnf/plugins/versionlock.conf").write_text(
        f"[main]\nenabled = {1 if enabled else 0}\nlocklist = /etc/dnf/plugins/versionlock.list\n")
    (root / "etc/dnf/plugins/versionlock.list").write_text(locklist)
    plugin = root / "usr/lib/python3.9/site-packages/dnf-plugins/versionlock.py"
    plugin.parent.mkdir(parents=True, exist_ok=True)
    plugin.write_text("# installed\n")
    return root


def dnf(root: Path, *args: str, home: Path) -> subprocess.CompletedProcess:
    """Debian's dnf on the tree: its rpm reads %_dbpath from ~/.rpmmacros (Debian's default is
    ~/.rpmdb); the plugin's locklist path is made absolute, since the plugin opens it as given."""
    home.mkdir(exist_ok=True)
    (home / ".rpmmacros").write_text("%_dbpath /var/lib/rpm\n")
    confdir = home / "plugins"
    confdir.mkdir(exist_ok=True)
    conf = (root / "etc/dnf/plugins/versionlock.conf").read_text()
    (confdir / "versionlock.conf").write_text(conf.replace("/etc/dnf", f"{root}/etc/dnf"))
    pluginpath, pythonpath = dnf_plugins()
    argv = [require_tool("dnf"), "--installroot", str(root), "--config", str(root / "etc/dnf/dnf.conf"),
            f"--setopt=reposdir={root}/etc/yum.repos.d", f"--setopt=pluginconfpath={confdir}",
            f"--setopt=pluginpath={pluginpath}", f"--setopt=cachedir={home}/cache", "--releasever=9",
            "--disableplugin=needs-restarting", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HOME": str(home), "PYTHONPATH": pythonpath})


def dnf_would_upgrade(root: Path, home: Path) -> set[str]:
    proc = dnf(root, "upgrade", "--assumeno", home=home)
    section, names = None, set()
    for line in proc.stdout.splitlines():
        if re.match(r"^(Upgrading|Installing)( dependencies)?:", line):
            section = line
        elif section and line.startswith(" ") and len(line.split()) >= 4:
            names.add(line.split()[0])
        elif not line.strip():
            section = None
    assert proc.returncode in (0, 1) and ("Operation aborted" in proc.stdout + proc.stderr
                                          or "Nothing to do" in proc.stdout + proc.stderr), proc.stdout + proc.stderr
    return names


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_held_packages_are_the_ones_dnf_will_not_upgrade(tmp_path, repo, case):
    locklist, main, repo_extra, enabled = CASES[case]
    root = make_tree(tmp_path / "root", repo, locklist, main, repo_extra, enabled)
    upgraded = dnf_would_upgrade(root, tmp_path / "home")
    dnf_held = set(NAMES) - upgraded
    facts = scrape(root).facts.get(PackageFacts)
    assert facts is not None and facts.manager == "rpm"
    assert {p.name for p in facts.held} == dnf_held, (case, upgraded)
    if case == "lock as versionlock add writes it":
        out = dnf(root, "-q", "versionlock", "list", home=tmp_path / "home").stdout.split()
        assert out == [f"kernel-core-0:5.14.0-{'427.13.1.el9_4'}.*"]


@pytest.mark.slow
def test_duplicates_are_what_dnf_check_lists(tmp_path):
    """Two tool.x86_64 (an interrupted transaction's mark), two kernel-core (install-only: fine)."""
    root = tmp_path / "dup"
    specs = INSTALLED + [Spec("tool", "1.1", "1"), Spec("kernel-core", "5.14.0", "503.el9",
                                                          provides=("kernel = 5.14.0-503.el9",))]
    install(root, *(rpmbuild(s) for s in specs), justdb=True, faketime=True)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/os-release").write_text('ID="rhel"\nVERSION_ID="9.4"\n')
    home = tmp_path / "home"
    home.mkdir()
    (root / "etc/dnf").mkdir(parents=True, exist_ok=True)
    (root / "etc/dnf/dnf.conf").write_text("[main]\n")
    (root / "etc/dnf/plugins").mkdir(parents=True, exist_ok=True)
    (root / "etc/dnf/plugins/versionlock.conf").write_text("[main]\nenabled=0\n")
    (root / "etc/yum.repos.d").mkdir(parents=True, exist_ok=True)
    proc = dnf(root, "check", "--duplicates", home=home)
    said = re.findall(r"(\S+) is a duplicate with (\S+)", proc.stdout + proc.stderr)
    assert said == [("tool-1.0-1.x86_64", "tool-1.1-1.x86_64")], proc.stdout + proc.stderr
    facts = scrape(root).facts.get(PackageFacts)
    assert [(f.package, f.problem) for f in facts.findings] == [("tool-1.1-1.x86_64", "duplicate")]


@pytest.mark.slow
def test_reboot_required_is_what_needs_restarting_decides(tmp_path):
    """glibc installed after boot, tool before, judged by this machine's boot time on both sides.
    dnf-plugins-core generations disagree on boot time: Debian's 4.3 takes /proc/1's mtime, the
    later ones (and the exporter) max(that, the kernel's boot time). In a container the two can
    be hours apart, so the packages are installed before both and after both: every generation
    gives the same answer, and the exporter must give it too."""
    proc1 = int(os.stat("/proc/1").st_mtime)
    btime = int(next(line.split()[1] for line in open("/proc/stat") if line.startswith("btime ")))
    boot = max(proc1, btime)
    root = tmp_path / "nr"
    install(root, rpmbuild(INSTALLED[3]), justdb=True, faketime=min(proc1, btime) - 86400)
    install(root, rpmbuild(INSTALLED[4]), justdb=True, faketime=boot + 60)
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text('ID="fedora"\nVERSION_ID="40"\n')
    home = tmp_path / "home"
    home.mkdir()
    (home / ".rpmmacros").write_text("%_dbpath /var/lib/rpm\n")
    pluginpath, pythonpath = dnf_plugins()
    proc = subprocess.run([require_tool("dnf"), "--installroot", str(root), "-q", "--setopt=reposdir=/nonexistent",
                           f"--setopt=pluginpath={pluginpath}", "needs-restarting", "-r"], capture_output=True,
                          text=True, env={**os.environ, "HOME": str(home), "PYTHONPATH": pythonpath})
    assert proc.returncode == 1 and "glibc" in proc.stdout and "tool" not in proc.stdout, proc.stdout + proc.stderr
    facts = scrape(root, procfs="/proc").facts.get(SystemFacts)
    assert facts.reboot_required and facts.reboot_required_packages == ("glibc",)
    assert facts.reboot_required_since == boot + 60


# ---------------------------------------------------------------------------------------------
# The matching rules, one by one, with the line of dnf-plugins-core's plugins/versionlock.py or
# libdnf each follows


class P:
    def __init__(self, name, epoch, version, release, arch):
        self.name, self.epoch, self.version, self.release, self.arch = name, epoch, version, release, arch


PKGS = [P("kernel-core", None, "5.14.0", "427.13.1.el9_4", "x86_64"), P("kmod-foo", 1, "2.1", "3.el9", "x86_64"),
        P("tool", None, "1.0", "1", "x86_64")]


def test_locklist_lines():
    """versionlock.py _read_locklist (lines 232-235): '#' only at column 0 starts a comment,
    blank lines are skipped, the rest is stripped; a leading '!' is an exclude (lines 88-90)."""
    rules = parse_locklist("# c\n\n  tool-1.0-1  \n!kernel-devel\n  # not a comment\n", "L")
    assert [(r.spec, r.kind) for r in rules] == [("tool-1.0-1", "lock"), ("kernel-devel", "exclude"),
                                                 ("# not a comment", "lock")]


def test_nevra_forms_are_libdnfs():
    """libdnf/nevra.cpp NEVRA_FORM_REGEX: the arch has no '.', version and release no '-'."""
    n = parse_nevra("kernel-core-0:5.14.0-427.13.1.el9_4.x86_64", "NEVRA")
    assert (n.name, n.epoch, n.version, n.release, n.arch) == ("kernel-core", 0, "5.14.0", "427.13.1.el9_4", "x86_64")
    assert parse_nevra("kernel-core", "NEV") == parse_nevra("kernel-core", "NEV")   # NEV: name kernel, version core
    assert parse_nevra("kernel-core", "NEV").name == "kernel"
    assert parse_nevra("kernel:1", "NAME") is None                                 # no ':' in a name


def test_lock_holds_only_an_exact_version():
    """Lines 100-108 (names of every tried form are locked), 115-118 (other versions excluded)."""
    lock = lambda spec: held_by_versionlock([Rule("L", spec, "lock")], PKGS)  # noqa: E731
    assert set(lock("kernel-core-0:5.14.0-427.13.1.el9_4.*")) == {"kernel-core"}
    assert set(lock("kmod-foo-1:2.1-3.el9")) == {"kmod-foo"}
    assert lock("kmod-foo") == {} and lock("tool-1*") == {}
    assert set(lock("tool-9.9-9")) == {"tool"}        # a version nothing has: every version excluded


def test_excludes_and_globs():
    """libdnf Query::addFilter(HyNevra): globs (C fnmatch) per field; a '*' field is no filter."""
    ex = lambda spec: held_by_excludes([Rule("C", spec, "exclude")], PKGS)  # noqa: E731
    assert set(ex("kernel*")) == {"kernel-core"} and set(ex("*")) == {"kernel-core", "kmod-foo", "tool"}
    assert set(ex("kmod-foo.x86_64")) == {"kmod-foo"} and ex("kmod-foo.noarch") == {}
    assert ex("kernel-core-5.14.0*") == {}            # names a version: newer ones are not excluded
    assert fnmatch("k[!a]rnel", "kernel") and not fnmatch("k[!e]rnel", "kernel") and fnmatch("a\\*", "a*")


def test_ini_and_lists_are_libdnfs():
    """iniparser.cpp: continuation lines, quotes trimmed; OptionStringList: ' ', ',' and '\\n' split."""
    entries = parse_ini("[main]\nexclude=a, b\n  c\nkey = 'q'\n[repo]\nenabled=0\n")
    assert entries == [("main", "exclude", "a, b\nc"), ("main", "key", "q"), ("repo", "enabled", "0")]
    assert string_list("a, b\nc") == ["a", "b", "c"] and string_list("a,,b") == ["a", "", "b"]


def test_dnf5_versionlock_toml():
    """libdnf5 rpm/versionlock_config.cpp: version "1.0" required; entries need a name; invalid
    conditions skipped; only an evr equality keeps newer versions away."""
    text = ('version = "1.0"\n[[packages]]\nname = "kernel-core"\n[[packages.conditions]]\nkey = "evr"\n'
            'comparator = "="\nvalue = "5.14.0-427.13.1.el9_4"\n[[packages]]\nname = "tool"\n'
            '[[packages.conditions]]\nkey = "evr"\ncomparator = ">="\nvalue = "1.0"\n')
    locks = parse_versionlock_toml(text)
    assert [lock.name for lock in locks] == ["kernel-core", "tool"]
    assert set(held_by_dnf5(locks, PKGS, "T")) == {"kernel-core"}
    assert parse_versionlock_toml(text.replace('"1.0"', '"2.0"', 1)) == []
