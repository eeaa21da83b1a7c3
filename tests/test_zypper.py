"""SUSE: zypper's package locks, against the real zypper (Debian's zypper 1.14 with libzypp 17):
`zypper --root R addlock` writes /etc/zypp/locks, `zypper --root R locks` names each lock, and
`zypper --root R -v locks --solvables` lists the installed packages each one keeps, read from
an rpmdb the real rpm wrote."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import rpmtools
from testkit import require_tool
from exporter.formats.zypplocks import (ZyppLocksError, edition_match, judge, parse_locks, split_escaped)
from exporter.formats.versions import rpmvercmp

# --- the parser and the matcher, on the records libzypp's own locks(5) shows -----------------

DOC = """\
# a comment line
type: package
solvable_name: k3b
match_type: exact
case_sensitive: on

type: package
solvable_name: cross-*-gcc-icecream-backend
match_type: glob
case_sensitive: on
garbage line ends the record
solvable_name: gcc
match_type: glob
version: > 4.2

solvable_name: kde

query_string: kde
solvable_name:
solvable_summary:
solvable_description:
"""


def test_locks5_examples():
    k3b, cross, gcc, kde, anything = parse_locks(DOC)
    assert (k3b.names, k3b.mode, k3b.case_sensitive, k3b.kinds, k3b.line) == (("k3b",), "exact", True, ("package",), 2)
    assert judge(k3b, "k3b", "1-1", "x86_64") and not judge(k3b, "K3b", "1-1", "x86_64")
    assert judge(cross, "cross-arm-gcc-icecream-backend", "1-1", "x86_64")
    assert (gcc.op, gcc.edition) == (">", "4.2")
    assert judge(gcc, "gcc", "4.3-1", "x86_64") and not judge(gcc, "gcc", "4.2-7", "x86_64")
    # substring and case-insensitive by default
    assert judge(kde, "plasma-KDE-addons", "1-1", "noarch") and kde.label == "kde"
    # summary and description are not in what the exporter reads: a name match decides, else unknown
    assert judge(anything, "kdebase", "1-1", "x86_64") is True
    assert judge(anything, "plasma", "1-1", "x86_64") is None


def test_match_modes_status_repo_kind_and_versions():
    rec = lambda *lines: parse_locks("\n".join(lines) + "\n")[0]
    assert judge(rec("solvable_name: ^kernel-(default|azure)-devel$", "match_type: regex"),
                 "kernel-azure-devel", "1-1", "noarch")
    assert not judge(rec("solvable_name: devel", "match_type: word"), "kernel-develop", "1-1", "x86_64")
    assert judge(rec("solvable_name: devel", "match_type: word"), "kernel-devel", "1-1", "x86_64")
    assert not judge(rec("solvable_name: vim", "install_status: not-installed"), "vim", "9-1", "x86_64")
    assert not judge(rec("solvable_name: vim", "repo: oss"), "vim", "9-1", "x86_64")
    assert judge(rec("solvable_name: vim", "repo: @System"), "vim", "9-1", "x86_64")
    assert not judge(rec("solvable_name: vim", "type: pattern"), "vim", "9-1", "x86_64")
    assert not judge(rec("solvable_name: patch:vim"), "vim", "9-1", "x86_64")
    assert judge(rec("solvable_name: kernel-default < 6.4.0-150600.23.30"), "kernel-default",
                 "6.4.0-150600.23.25.1", "x86_64")
    assert judge(rec("solvable_name: gcc", "version: 13"), "gcc", "13-150500.1", "x86_64")   # no op: ==
    assert not judge(rec("solvable_name: gcc", "version: =~ 13"), "gcc", "13-1", "x86_64")   # unknown op
    # the bsc#1112911 rewrite of an old complex lock
    lock = rec(r'complex: AttrMatchData solvable:name kernel C SolvableRange\ >\ 1\ \"\"')
    assert (lock.names, lock.op, lock.edition) == (("kernel",), ">", "1")
    assert split_escaped(r'a\ b "c d" ""') == ["a b", "c d", ""]


def test_edition_match_is_libsolvs_match_mode():
    assert edition_match("6.4.0-150600.23.25.1", "6.4.0") == 0          # no release in the lock: any
    assert edition_match("1:2.0-1", "2.0") == 1                         # a written epoch outranks none
    assert edition_match("2.0-1", "0:2.0") == 0
    assert edition_match("2.0-1", "2.0-2") == -1
    assert edition_match("1.0_1-1", "1.0.1") == rpmvercmp("1.0_1", "1.0.1") == 0


def test_bounds():
    with pytest.raises(ZyppLocksError):
        parse_locks("solvable_name: " + "x" * 5000 + "\n")
    with pytest.raises(ZyppLocksError):
        parse_locks("solvable_name: a\n\n" * 10_002)
    assert parse_locks("") == () and parse_locks("\n\n#x\n") == ()
    assert parse_locks("no colon here\n") == ()


# --- against the real zypper -------------------------------------------------------------------

PACKAGES = [
    rpmtools.Spec("kernel-default", "6.4.0", "150600.23.25.1"),
    rpmtools.Spec("kernel-default", "6.4.0", "150600.23.30.1"),
    rpmtools.Spec("kernel-default-devel", "6.4.0", "150600.23.25.1", arch="noarch"),
    rpmtools.Spec("kernel-azure-devel", "6.4.0", "150600.8.11.1", arch="noarch"),
    rpmtools.Spec("nvidia-open-driver-G06-signed-kmp-default", "550.127.05_k6.4.0_150600.23.25", "150600.3.1"),
    rpmtools.Spec("gcc13", "13.2.1", "150500.1"),
    rpmtools.Spec("Vim", "9.1.0330", "150500.20.9.1"),
    rpmtools.Spec("vim-data", "9.1.0330", "1", epoch=2, arch="noarch"),
    rpmtools.Spec("patterns-base-base", "20200124", "150600.32.1"),
]

ADDLOCK = [  # what an administrator types: zypper addlock [OPTIONS] ARG
    ["kernel-default-devel"], ["kernel-*-devel"], ["*-kmp-default"], ["kernel-default < 6.4.0-150600.23.30"],
    ["kernel-default >= 6.4.0-150600.23.30"], ["kernel-default-devel <= 6.4.0"], ["vim-data = 2:9.1.0330"],
    ["vim-data = 9.1.0330"], ["vim"], ["Vim"], ["gcc1?"], ["-t", "pattern", "gcc13"], ["-t", "patch", "Vim"],
    ["[kK]ernel-azure*"], ["kernel-default != 6.4.0-150600.23.25.1"], ["nothing-matches"],
]

HANDWRITTEN = """\
solvable_name: kern

solvable_name: Kernel-Default
match_type: exact

solvable_name: ^(gcc|vim)
match_type: regex

solvable_name: data
match_type: word

solvable_name: vim
case_sensitive: off
match_type: glob

solvable_name: Vim
install_status: not-installed

solvable_name: kernel-default
version: 6.4.0-150600.23.30.1

solvable_arch: noarch

solvable_name: gcc13
type: product

solvable_name: kernel-default-devel
repo: @System
"""


def zypper(root: Path, *args: str) -> str:
    argv = [require_tool("zypper"), "--non-interactive", "--root", str(root), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"$ {' '.join(argv)}\nexit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def zypper_locks(root: Path) -> list[tuple[str, set[str]]]:
    """(Name column, installed packages it keeps) per lock of `zypper -v locks --solvables`."""
    out, current = [], None
    for line in zypper(root, "-v", "locks", "--solvables").splitlines():
        m = re.match(r"^\s*\d+\s*\|\s*(.*?)\s*\|\s*\d+\s*\|", line)
        if m:
            current = (m[1], set())
            out.append(current)
            continue
        m = re.match(r"^\s+(?:Keep installed\s*:\s*)?(\S+) \(@System\)$", line)
        if m and current is not None:      # one per line, or "Keep installed : [N]" then N lines
            current[1].add(m[1])
    return out


def nevra(spec: rpmtools.Spec) -> str:
    evr = f"{spec.epoch}:{spec.version}-{spec.release}" if spec.epoch else f"{spec.version}-{spec.release}"
    return f"{spec.name}-{evr}.{spec.arch}"


@pytest.fixture(scope="module")
def zypp_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("zypp")
    rpmtools.install(root, *(rpmtools.rpmbuild(s) for s in PACKAGES), justdb=True)
    (root / "etc/zypp").mkdir(parents=True)
    for args in ADDLOCK:
        zypper(root, "addlock", *args)
    return root


@pytest.mark.slow
def test_addlock_writes_what_the_parser_reads(zypp_root):
    """Every record zypper addlock wrote is one lock, named as `zypper locks` names it."""
    locks = parse_locks((zypp_root / "etc/zypp/locks").read_text())
    listed = [name for name, _ in zypper_locks(zypp_root)]
    assert sorted(lk.label for lk in locks) == sorted(listed)
    assert len(locks) == len(ADDLOCK)


@pytest.mark.slow
@pytest.mark.parametrize("extra", ["", HANDWRITTEN])
def test_held_packages_are_zyppers(zypp_root, tmp_path, extra):
    """For each lock, the installed packages the exporter judges it keeps equal the ones zypper
    lists under it (Keep installed); a lock on attributes the exporter cannot see is None."""
    root = tmp_path / "root"
    shutil.copytree(zypp_root, root, symlinks=True)
    locks_file = root / "etc/zypp/locks"
    if extra:
        locks_file.write_text(locks_file.read_text() + "\n" + extra)
    locks = parse_locks(locks_file.read_text())
    real = zypper_locks(root)
    assert [lk.label for lk in locks] == [name for name, _ in real] or \
        sorted(lk.label for lk in locks) == sorted(name for name, _ in real)
    by_label: dict[str, list[set[str]]] = {}
    for name, kept in real:
        by_label.setdefault(name, []).append(kept)
    for lock in locks:
        ours = {nevra(s) for s in PACKAGES if judge(lock, s.name, nevra(s)[len(s.name) + 1:].rsplit(".", 1)[0],
                                                     s.arch)}
        assert ours in by_label[lock.label], (lock, ours, by_label[lock.label])
