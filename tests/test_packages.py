"""The Debian package, built and installed for real.

deploy/debian/build.sh builds prometheus-dkms-exporter with dpkg-buildpackage (debhelper,
pybuild); lintian judges it; `apt-get install ./….deb` installs it into a clean debootstrap'd
Debian 12 tree (tests/packages/debian_tree.sh), which resolves the runtime dependencies from
Debian 12's own python3-* packages. Inside that tree: the installed file list (dpkg -L),
`systemd-analyze verify` on the installed units, what postinst enabled, the packaged exporter
answering the example hosts exactly as the golden files say (so on Debian 12's library
versions), the installed kernel hook writing dkms.prom, and a purge that leaves nothing.

Cold: the tree's debootstrap (about 3 min) and the runtime dependencies' download; warm: about
2 min (the build, lintian, a copy of the tree, apt-get update and install).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from example_hosts import EXAMPLES
from test_golden import GOLDEN, normalise
from testkit import REPO, require_tool, slow_artifact

pytestmark = pytest.mark.slow

PACKAGE = "prometheus-dkms-exporter"
PRIVATE = f"/usr/share/{PACKAGE}"
TREE_SCRIPT = REPO / "tests/packages/debian_tree.sh"
UNITS = ["dkms-exporter.service", "dkms-exporter-textfile.service", "dkms-exporter-textfile.timer"]
DEBIAN_HOSTS = ["reboot-trap", "healthy", "many-problems"]

# Everything the package installs apart from the Python code (checked against git below).
EXPECTED_FILES = {
    "/etc/apt/apt.conf.d/99dkms-exporter",
    "/etc/default/dkms-exporter",
    "/etc/kernel/postinst.d/zzz-dkms-exporter",
    "/etc/kernel/postrm.d/zzz-dkms-exporter",
    *(f"/lib/systemd/system/{unit}" for unit in UNITS),
    "/usr/bin/dkms-exporter",
    *(f"/usr/share/doc/{PACKAGE}/{name}" for name in
      ["README.md.gz", "changelog.gz", "copyright", "deploy.md.gz", "metrics.md.gz", "runbooks.md.gz"]),
    f"/usr/share/lintian/overrides/{PACKAGE}",
    "/usr/share/man/man1/dkms-exporter.1.gz",
    f"{PRIVATE}/dkms-exporter",
    *(f"{PRIVATE}/dkms_exporter-0.1.0.dist-info/{name}" for name in
      ["METADATA", "RECORD", "WHEEL", "entry_points.txt", "top_level.txt"]),
    f"{PRIVATE}/exporter/web/runbooks.html",
    f"/usr/share/python3/runtime.d/{PACKAGE}.rtupdate",
}
CONFFILES = {"/etc/apt/apt.conf.d/99dkms-exporter", "/etc/default/dkms-exporter",
             "/etc/kernel/postinst.d/zzz-dkms-exporter", "/etc/kernel/postrm.d/zzz-dkms-exporter"}


def run(*argv: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False)


def in_tree(tree: Path, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """A command inside the tree as root, with a clean non-interactive environment."""
    env = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LC_ALL=C.UTF-8",
           "DEBIAN_FRONTEND=noninteractive"]
    return run(*env, "chroot", tree, *argv, timeout=timeout)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args} exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The .deb (and .changes) deploy/debian/build.sh makes from this checkout."""
    slow_artifact("the Debian package build (dpkg-buildpackage)")
    for tool in ("dpkg-buildpackage", "dh", "help2man"):
        require_tool(tool)
    out = tmp_path_factory.mktemp("deb")
    stdout = ok(run(REPO / "deploy/debian/build.sh", out))
    deb = Path(stdout.strip().splitlines()[-1].removeprefix("DEB="))
    assert deb.is_file() and deb.name == f"{PACKAGE}_0.1.0_all.deb"
    return deb


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Iterator[Path]:
    """A clean Debian 12 tree (debootstrap minbase + systemd), this module's own copy."""
    slow_artifact("a debootstrap'd Debian 12 tree")
    require_tool("debootstrap")
    if os.geteuid() != 0:
        pytest.fail("the install test needs root (debootstrap, chroot, mount)")
    dest = tmp_path_factory.mktemp("debian-tree") / "tree"
    try:
        ok(run(TREE_SCRIPT, "prepare", dest, timeout=1200))
        yield dest
    finally:
        run(TREE_SCRIPT, "release", dest)


@pytest.fixture(scope="module")
def installed(built, tree) -> Path:
    (tree / "tmp" / built.name).write_bytes(built.read_bytes())
    ok(in_tree(tree, "apt-get", "install", "-y", "-q", "-o", "Dpkg::Use-Pty=0", f"/tmp/{built.name}"))
    return tree


def test_lintian_is_clean_but_for_the_justified_overrides(built):
    lintian = require_tool("lintian")
    changes = built.with_name(built.name.replace(".deb", ".changes"))
    result = run(lintian, "-I", "-E", "--pedantic", "--tag-display-limit", "0", changes)
    tags = [line for line in (result.stdout + result.stderr).splitlines()
            if re.match(r"^[EWIPX]: ", line)]
    assert result.returncode == 0 and tags == [], "\n".join(tags)


def test_installed_with_debian_12s_own_dependencies(installed):
    assert ok(in_tree(installed, "dpkg-query", "-W", "-f=${Status}", PACKAGE)) == "install ok installed"
    depends = ok(in_tree(installed, "dpkg-query", "-W", "-f=${Depends}", PACKAGE))
    for dep in ("python3-prometheus-client (>= 0.16)", "python3-cryptography (>= 38)", "python3-zstandard (>= 0.20)"):
        assert dep in depends
    # what apt resolved them to: Debian 12's versions
    assert ok(in_tree(installed, "dpkg-query", "-W", "-f=${Version}", "python3-prometheus-client")).startswith("0.16.")


def test_installed_file_list(installed):
    listed = set(ok(in_tree(installed, "dpkg", "-L", PACKAGE)).split("\n")) - {""}
    files = {p for p in listed if not (installed / p.lstrip("/")).is_dir()}   # /lib is a symlink (merged /usr)
    tracked = ok(run("git", "-C", REPO, "ls-files", "exporter/*.py")).split()
    code = {f"{PRIVATE}/{path}" for path in tracked}
    assert files - code == EXPECTED_FILES
    assert code <= files, sorted(code - files)
    assert (installed / "usr/bin/dkms-exporter").resolve() == installed / PRIVATE.lstrip("/") / "dkms-exporter"
    conffiles = ok(in_tree(installed, "dpkg-query", "-W", "-f=${Conffiles}", PACKAGE))
    assert {line.split()[0] for line in conffiles.strip().splitlines()} == CONFFILES
    # the private directory is byte-compiled by postinst (py3compile), nothing in dist-packages
    assert list((installed / PRIVATE.lstrip("/") / "exporter").glob("__pycache__/*.pyc"))
    assert not (installed / "usr/lib/python3/dist-packages/exporter").exists()


def test_units_verify_inside_the_tree(installed):
    # man-db: the units' Documentation=man:dkms-exporter(1) is checked by running man
    ok(in_tree(installed, "apt-get", "install", "-y", "-q", "-o", "Dpkg::Use-Pty=0", "man-db"))
    result = in_tree(installed, "systemd-analyze", "verify", *(f"/lib/systemd/system/{u}" for u in UNITS))
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr
    for unit in UNITS:
        text = (installed / "lib/systemd/system" / unit).read_text()
        assert "/usr/local/bin" not in text and "Documentation=man:dkms-exporter(1)" in text
    assert "ExecStart=/usr/bin/dkms-exporter " in (installed / "lib/systemd/system/dkms-exporter.service").read_text()


def test_postinst_enabled_serve_but_not_the_textfile_timer(installed):
    wants = installed / "etc/systemd/system/multi-user.target.wants/dkms-exporter.service"
    assert os.readlink(wants) == "/lib/systemd/system/dkms-exporter.service"
    assert not (installed / "etc/systemd/system/timers.target.wants/dkms-exporter-textfile.timer").exists()


@pytest.mark.parametrize("name", DEBIAN_HOSTS)
def test_the_packaged_exporter_answers_as_the_golden_files(installed, name):
    """Debian 12's python3 and libraries (client_python 0.16, cryptography 38, ...) give the
    same check and metrics output as the development venv the golden files come from."""
    host = installed / "srv/hosts" / name
    if not host.exists():
        EXAMPLES[name](host)
    # --no-cache.dir: the golden files are made without the persistent cache (tests/conftest.py)
    check = in_tree(installed, "dkms-exporter", "check", "--no-cache.dir", "--path.rootfs", f"/srv/hosts/{name}")
    assert check.stdout == (GOLDEN / f"{name}.check.txt").read_text(), check.stderr
    assert check.returncode == (0 if name == "healthy" else 1)
    metrics = ok(in_tree(installed, "dkms-exporter", "metrics", "--no-cache.dir", "--path.rootfs", f"/srv/hosts/{name}"))
    assert normalise(metrics) == (GOLDEN / f"{name}.prom").read_text()


def test_the_packaged_exporter_on_the_tree_itself_is_undecidable(installed):
    """A minbase tree has no kernel: never a guessed "ready"."""
    check = in_tree(installed, "dkms-exporter", "check")
    assert check.returncode == 2 and "UNKNOWN" in check.stdout
    assert ok(in_tree(installed, "dkms-exporter", "--version")).strip() == "dkms-exporter 0.1.0"


def test_the_installed_kernel_hook_writes_dkms_prom(installed):
    """No systemd runs in the tree, so the hook runs /usr/bin/dkms-exporter itself."""
    textfile = installed / "var/lib/prometheus/node-exporter"
    textfile.mkdir(parents=True, exist_ok=True)
    result = ok(in_tree(installed, "/etc/kernel/postinst.d/zzz-dkms-exporter", "6.1.0-28-amd64", "/boot/vmlinuz-6.1.0-28-amd64"))
    assert result == ""
    assert "dkms_textfile_last_run_timestamp_seconds" in (textfile / "dkms.prom").read_text()


def test_purge_leaves_nothing_behind(installed):
    ok(in_tree(installed, "apt-get", "purge", "-y", "-q", "-o", "Dpkg::Use-Pty=0", PACKAGE))
    for path in EXPECTED_FILES | {PRIVATE, "/etc/systemd/system/multi-user.target.wants/dkms-exporter.service"}:
        assert not os.path.lexists(installed / path.lstrip("/")), path
