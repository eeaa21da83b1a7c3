"""Arch: pacman's local database, pacman.conf holds and pacman's version order, against the real
pacman, pacman-conf and vercmp (Debian's pacman-package-manager and makepkg)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacmantools import Pkg, install, pacman, vercmp
from testkit import require_tool
from exporter.distro.arch import ARCH, headers_package_name, hold_rules, read_local_db
from exporter.formats.pacman import PacmanConfError, parse_desc, parse_files, parse_pacman_conf, sections
from exporter.formats.versions import alpm_vercmp, rpmvercmp
from exporter.host.cache import FileCache
from exporter.host.context import Context
from exporter.host.rootfs import HostFS
from exporter.config import Config


def context(root: Path) -> Context:
    return Context(HostFS(str(root)), FileCache(), Config())


# --- vercmp -------------------------------------------------------------------------------------

_piece = st.one_of(st.from_regex(r"[0-9]{1,3}", fullmatch=True), st.from_regex(r"0[0-9]{1,2}", fullmatch=True),
                   st.from_regex(r"[a-zA-Z]{1,3}", fullmatch=True),
                   st.sampled_from([".", "..", "_", "+", "~", "^", "é", "-", ":", "1:", "2:"]))
version = st.lists(_piece, min_size=1, max_size=7).map("".join)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.data_too_large, HealthCheck.too_slow])
@given(st.lists(st.tuples(version, version), min_size=40, max_size=40))
def test_vercmp_is_pacmans(pairs):
    pairs += [(a, a) for a, _ in pairs[:5]]
    pairs = [(a, b) for a, b in pairs if {a, b} != {"-h", "--help"}]   # the tool cannot be asked that
    expected = vercmp(pairs)
    bad = [(a, b, alpm_vercmp(a, b), e) for (a, b), e in zip(pairs, expected) if alpm_vercmp(a, b) != e]
    assert not bad, bad[:5]


# where pacman and rpm part ways (and the kernel releases Arch ships)
FIXED = [("1.0a", "1.0"), ("1.0", "1..0"), ("1.0~rc1", "1.0"), ("1.0^git1", "1.0.1"), ("1.0", "1.0-2"),
         ("1:1.0-1", "2.0-1"), ("6.9.7.arch1-1", "6.10.arch1-1"), ("6.6.36-1", "6.6.36-2"), ("a", "1"),
         ("1.0.", "1.0"), ("1_0", "1.0"),
         ("-h", "0"), ("1", "-h"), ("-h", "-h")]   # "-h" first is the tool's usage request: asked the other way


def test_vercmp_fixed_cases_and_where_rpm_differs():
    expected = vercmp(FIXED)
    assert [alpm_vercmp(a, b) for a, b in FIXED] == expected
    assert alpm_vercmp("1.0a", "1.0") == -1 and rpmvercmp("1.0a", "1.0") == 1
    assert alpm_vercmp("1.0", "1..0") == -1 and rpmvercmp("1.0", "1..0") == 0
    ordered = sorted(["6.10.2-arch1-1", "6.9.7-arch1-1", "6.9.10-arch1-1"], key=ARCH.release_key)
    assert ordered == ["6.9.7-arch1-1", "6.9.10-arch1-1", "6.10.2-arch1-1"]


# --- pacman.conf ---------------------------------------------------------------------------------


def pacman_conf(conf: Path, key: str) -> tuple[int, list[str]]:
    proc = subprocess.run([require_tool("pacman-conf"), "--config", str(conf), key], capture_output=True,
                          text=True, timeout=60)
    return proc.returncode, proc.stdout.split()


CONFS = {
    "plain": ({"pacman.conf": "[options]\nIgnorePkg = linux-headers nvidia*  # keep\nIgnorePkg=zfs-dkms\n"
               "IgnoreGroup = gnome\n#IgnorePkg = commented\n[core]\nIgnorePkg = not-options\n"}),
    "include": ({"pacman.conf": "[options]\nInclude = {d}/pacman.d/*.conf\nIgnorePkg = after\n[extra]\n"
                 "Include = {d}/mirrorlist\n",
                 "pacman.d/10-a.conf": "IgnorePkg = from-a\n", "pacman.d/20-b.conf": "IgnorePkg = from-b\n"
                 "IgnoreGroup = grp-b\n", "mirrorlist": "Server = file:///nonexistent/$repo\n"}),
    "section-in-include": ({"pacman.conf": "[options]\nInclude = {d}/inc\nIgnorePkg = lost\n",
                            "inc": "IgnorePkg = kept\n[core]\n"}),
    "missing-include": ({"pacman.conf": "[options]\nInclude = {d}/nothing-here\nIgnorePkg = x\n"}),
    "outside-section": ({"pacman.conf": "IgnorePkg = x\n[options]\n"}),
    "loop": ({"pacman.conf": "[options]\nInclude = {d}/pacman.conf\n"}),
}


@pytest.mark.parametrize("name", sorted(CONFS))
def test_pacman_conf_holds_are_pacman_confs(tmp_path, name):
    for rel, text in CONFS[name].items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text.replace("{d}", str(tmp_path)))
    conf = tmp_path / "pacman.conf"
    load = lambda p: Path(p).read_bytes() if Path(p).is_file() else None           # noqa: E731
    glob = lambda p: sorted(str(x) for x in Path("/").glob(p.lstrip("/")))          # noqa: E731
    results = {key: pacman_conf(conf, key) for key in ("IgnorePkg", "IgnoreGroup")}
    if any(code != 0 for code, _ in results.values()):
        with pytest.raises(PacmanConfError):
            parse_pacman_conf(str(conf), load, glob)
        return
    rules = parse_pacman_conf(str(conf), load, glob)
    for key, (_, words) in results.items():
        assert [r.pattern for r in rules if r.kind == key] == words, key


def test_hold_rules_read_under_the_root(tmp_path):
    (tmp_path / "etc/pacman.d").mkdir(parents=True)
    (tmp_path / "etc/pacman.conf").write_text("[options]\nInclude = /etc/pacman.d/*.conf\n")
    (tmp_path / "etc/pacman.d/holds.conf").write_text("IgnorePkg = linux-headers\n")
    rules = hold_rules(context(tmp_path))
    assert [(r.pattern, r.source) for r in rules] == [("linux-headers", "/etc/pacman.d/holds.conf")]


# --- the local database --------------------------------------------------------------------------


def test_desc_sections_and_damage():
    desc = b"%NAME%\nfoo\n\n%VERSION%\n1:2.0-3\n\n%URL%\n\n\n%GROUPS%\na\nb\n\n%INSTALLDATE%\nbad\n\n%NAME%\nlater\n"
    p = parse_desc(desc)
    assert (p.name, p.version, p.groups, p.installdate) == ("foo", "1:2.0-3", ("a", "b"), None)
    assert sections(b"%FILES%\nusr/\nusr/x\n")["FILES"] == ["usr/", "usr/x"]
    for bad in (b"", b"%NAME%\nfoo\n", b"\x00\xff" * 100, b"%VERSION%\n1-1\n"):
        with pytest.raises(ValueError):
            parse_desc(bad)


@pytest.mark.slow
def test_local_db_and_holds_are_pacmans(tmp_path):
    """Packages built by makepkg, installed by pacman -U --root; the exporter's packages, versions,
    groups and holds against pacman -Q, -Qi, -Ql and what pacman -Su --print would skip."""
    root = tmp_path / "root"
    pkgs = [Pkg("linux", "6.9.7.arch1", base="linux", files={"/usr/lib/modules/6.9.7-arch1-1/pkgbase": "linux\n"}),
            Pkg("linux-headers", "6.9.7.arch1", base="linux",
                files={"/usr/lib/modules/6.9.7-arch1-1/build/Makefile": "# headers\n"}),
            Pkg("nvidia-dkms", "550.90.07", rel="3", epoch=1, groups=("drivers",)),
            Pkg("zfs-dkms", "2.2.4", groups=("zfs", "drivers")), Pkg("dkms", "3.0.13", arch="any")]
    (root / "etc/pacman.d").mkdir(parents=True)
    install(root, pkgs)
    (root / "etc/pacman.conf").write_text("[options]\nArchitecture = auto\nSigLevel = Never\nIgnorePkg = linux-head*\n"
                                          "Include = /etc/pacman.d/*.conf\n")
    (root / "etc/pacman.d/holds.conf").write_text("IgnoreGroup = zfs\n")
    # pacman does not prefix Include with --root: the tool's copy names the files under the tree
    tool_conf = tmp_path / "pacman.conf"
    tool_conf.write_text((root / "etc/pacman.conf").read_text().replace("/etc/pacman.d", f"{root}/etc/pacman.d"))
    facts = ARCH.read_packages(context(root))
    q = dict(line.split() for line in pacman(root, "-Q", config=tool_conf).stdout.splitlines())
    assert {p.name: p.version for p in facts.packages} == q
    info = pacman(root, "-Qi", config=tool_conf).stdout
    groups = dict(re.findall(r"^Name\s+: (\S+)$.*?^Groups\s+: ([^\n]*)$", info, re.M | re.S))
    ctx = context(root)
    local, _ = read_local_db(ctx, ctx.listdir("/var/lib/pacman/local"))
    assert {p.name: " ".join(sorted(p.groups)) or "None" for p in local} == \
        {n: " ".join(sorted(g.split())) for n, g in groups.items()}
    files = pacman(root, "-Ql", "linux", config=tool_conf).stdout.split()[1::2]
    db = root / "var/lib/pacman/local/linux-6.9.7.arch1-1/files"
    assert [f"{root.resolve()}/{f}" for f in parse_files(db.read_bytes())] == files
    # pacman -Su with a newer version of each in a repo: the ones it ignores are the holds
    repo = tmp_path / "repo"
    repo.mkdir()
    newer = [Pkg(p.name, p.version, rel=str(int(p.rel) + 1), epoch=p.epoch, arch=p.arch, base=p.base,
                 groups=p.groups, files=p.files) for p in pkgs]
    from pacmantools import makepkg
    built = [makepkg(p) for p in newer]
    subprocess.run([require_tool("repo-add"), "-q", str(repo / "test.db.tar.gz"), *map(str, built)], check=True,
                   capture_output=True)
    for b in built:
        (repo / b.name).write_bytes(b.read_bytes())
    tool_conf.write_text(tool_conf.read_text() + f"[test]\nServer = file://{repo}\n")
    pacman(root, "-Sy", config=tool_conf)
    proc = pacman(root, "-Su", "--print", "--print-format", "%n", config=tool_conf)
    upgraded = set(proc.stdout.split())
    pending = pacman(root, "-Qu", config=tool_conf).stdout
    ignored = set(re.findall(r"^(\S+) .* \[ignored\]$", pending, re.M))
    assert ignored
    assert {p.name for p in facts.held} == ignored
    assert upgraded == set(q) - ignored
    held_by = {p.name: p.held_by for p in facts.held}
    assert held_by == {"linux-headers": "/etc/pacman.conf", "zfs-dkms": "/etc/pacman.d/holds.conf"}


def test_damaged_local_db_entries_are_findings(tmp_path):
    local = tmp_path / "var/lib/pacman/local"
    for entry, desc in (("good-1.0-1", "%NAME%\ngood\n\n%VERSION%\n1.0-1\n"), ("nodesc-1.0-1", None),
                        ("badname", "%NAME%\nbadname\n\n%VERSION%\n1-1\n"),
                        ("other-2.0-1", "%NAME%\nmismatch\n\n%VERSION%\n2.0-1\n"),
                        ("empty-1.0-1", "")):
        (local / entry).mkdir(parents=True)
        if desc is not None:
            (local / entry / "desc").write_text(desc)
    (local / "ALPM_DB_VERSION").write_text("9\n")
    ctx = context(tmp_path)
    facts = ARCH.read_packages(ctx)
    assert [p.name for p in facts.packages] == ["good", "mismatch"]
    assert {(f.package, f.problem) for f in facts.findings} == {
        ("nodesc-1.0-1", "corrupt-entry"), ("badname", "invalid-entry"), ("other-2.0-1", "inconsistent-entry"),
        ("empty-1.0-1", "corrupt-entry")}


def test_headers_package_names():
    assert headers_package_name("6.9.7-arch1-1") == "linux-headers"
    assert headers_package_name("6.6.36-1-lts") == "linux-lts-headers"
    assert headers_package_name("6.9.7-zen1-1-zen") == "linux-zen-headers"
    assert headers_package_name("6.9.7-hardened1-1-hardened") == "linux-hardened-headers"


@pytest.mark.slow
def test_headers_package_is_named_by_pkgbase_on_a_pacman_db(tmp_path):
    """A kernel whose release does not say its package (a custom pkgbase): the headers package
    and its fix come from /usr/lib/modules/K/pkgbase; the kinds come from the names in the local
    database pacman -U wrote (linux-headers is the headers, not a meta package)."""
    import json
    import sys
    from archbuilder import ArchHost
    root = tmp_path / "root"
    custom, lts = "6.10.2-1-custom", "6.6.36-1-lts"
    h = ArchHost(root)
    h.kernel(lts, pkgbase="linux-lts")
    h.kernel(custom, running=True, headers=False, pkgbase="linux-mine")
    h.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
    h.dkms_build("acpi-call", "1.2.2", lts, dest=["acpi_call"])
    h.pkg("acpi_call-dkms", "1.2.2", "3").pkg("linux-api-headers", "6.10", "1", arch="any")
    h.loaded(("acpi_call", "OE"))
    h.systemd_boot("linux-mine")
    h.finish()
    q = pacman(root, "-Q").stdout.split()[::2]
    facts = ARCH.read_packages(context(root))
    assert sorted(p.name for p in facts.packages) == sorted(q)
    kinds = {p.name: p.kind for p in facts.packages}
    # linux-api-headers is the C library's copy of the UAPI headers (Debian's linux-libc-dev)
    assert (kinds["linux-lts"], kinds["linux-lts-headers"], kinds["linux-api-headers"]) == \
        ("kernel-image", "kernel-headers", "other"), kinds
    repo = Path(__file__).resolve().parents[1]
    run = lambda *a: subprocess.run([sys.executable, "-m", "exporter", "--path.rootfs", str(root), *a],  # noqa: E731
                                    cwd=repo, capture_output=True, text=True, timeout=120)
    doc = json.loads(run("check", "--json", "--kernel", custom).stdout)
    fixes = {p["fix"] for k in doc["kernels"] for m in k["modules"] for p in m["problems"]}
    assert any(f.startswith("pacman -S linux-mine-headers") for f in fixes), fixes
    metrics = run("metrics").stdout
    assert f'dkms_kernel_headers_package_installed{{kernel="{custom}",package="linux-mine-headers"}} 0.0' in metrics
    assert f'dkms_kernel_headers_package_installed{{kernel="{lts}",package="linux-lts-headers"}} 1.0' in metrics
    assert 'dkms_package_info{' not in metrics or 'kind="kernel-meta"' not in metrics
