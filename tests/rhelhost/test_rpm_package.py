"""The RPM, built by the real rpmbuild (deploy/rpm/build.sh) and installed by the real rpm with
--root into a copy of the RHEL 9-layout tree (tests/rhelhost/build.py's rhel9_healthy).

That tree's rpm database holds what the builder recorded (kernels, kernel-devel, dkms, ...), and
no Python and no shell package: the layout trees are made from Debian's kernels and carry no
interpreter rpm knows of.  So rpm's
dependency check must fail, naming exactly the Python runtime the package requires; the test
asserts that list, then installs with --nodeps (for that reason only) and checks what rpm
recorded and put on disk: the file list, the config files, `rpm -V`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rpmtools import rpm
from testkit import REPO, require_tool

pytestmark = pytest.mark.rhelhost

PRIVATE = "/usr/share/dkms-exporter"
UNITS = ["dkms-exporter.service", "dkms-exporter-textfile.service", "dkms-exporter-textfile.timer"]
EXPECTED_FILES = {
    "/etc/default/dkms-exporter",
    "/etc/dnf/plugins/post-transaction-actions.d/dkms-exporter.action",
    "/etc/kernel/postinst.d/zzz-dkms-exporter",
    "/etc/kernel/postrm.d/zzz-dkms-exporter",
    "/usr/bin/dkms-exporter",
    *(f"/usr/lib/systemd/system/{unit}" for unit in UNITS),
    f"{PRIVATE}/dkms-exporter",
    *(f"{PRIVATE}/dkms_exporter-0.1.0.dist-info/{name}" for name in
      ["METADATA", "RECORD", "WHEEL", "entry_points.txt", "top_level.txt"]),
    f"{PRIVATE}/exporter/web/runbooks.html",
    *(f"/usr/share/doc/dkms-exporter-0.1.0/{name}" for name in ["README.md", "deploy.md", "metrics.md", "runbooks.md"]),
    "/usr/share/licenses/dkms-exporter-0.1.0/LICENSE.notice",
}
# /bin/sh for the scriptlets: the tree's shell is Debian's dash, which its rpmdb does not record
MISSING_IN_THE_TREE = {
    "/bin/sh", "/usr/bin/python3", "python3 >= 3.11", "python3-asn1crypto >= 1.5", "python3-bcrypt >= 3.2",
    "python3-cryptography >= 38", "python3-lz4 >= 4.0", "python3-prometheus_client >= 0.16",
    "python3-pyelftools >= 0.29", "python3-pyyaml >= 6.0", "python3-zstandard >= 0.20",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    require_tool("rpmbuild")
    out = tmp_path_factory.mktemp("rpm")
    proc = subprocess.run([REPO / "deploy/rpm/build.sh", out], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    path = Path(proc.stdout.strip().splitlines()[-1].removeprefix("RPM="))
    assert path.name == "dkms-exporter-0.1.0-1.noarch.rpm"
    return path


@pytest.fixture(scope="module")
def tree(rhelhost, tmp_path_factory) -> Path:
    """A copy of rhel9_healthy: files hardlinked (rpm only adds new ones), the rpmdb copied."""
    dest = tmp_path_factory.mktemp("rhel9") / "tree"
    subprocess.run(["cp", "-al", rhelhost.tree("rhel9_healthy"), dest], check=True, timeout=600)
    shutil.rmtree(dest / "var/lib/rpm")
    shutil.copytree(rhelhost.tree("rhel9_healthy") / "var/lib/rpm", dest / "var/lib/rpm")
    return dest


def test_rpm_names_exactly_the_python_runtime_the_tree_lacks(built, tree):
    proc = rpm(tree, "-i", str(built), check=False)
    assert proc.returncode != 0 and "Failed dependencies" in proc.stderr
    missing = set(re.findall(r"^\s+(.+?) is needed by dkms-exporter-0\.1\.0-1\.noarch$", proc.stderr, re.M))
    assert missing == MISSING_IN_THE_TREE


def test_installed_file_list_config_files_and_verify(built, tree):
    rpm(tree, "-i", "--nodeps", str(built))      # --nodeps: the Python runtime above, nothing else
    listed = set(rpm(tree, "-ql", "dkms-exporter").stdout.split())
    files = {p for p in listed if not (tree / p.lstrip("/")).is_dir()}
    tracked = subprocess.run(["git", "-C", REPO, "ls-files", "exporter/*.py"], capture_output=True, text=True,
                             check=True).stdout.split()
    code = {f"{PRIVATE}/{path}" for path in tracked}
    assert files - code == EXPECTED_FILES
    assert code <= files
    assert set(rpm(tree, "-qc", "dkms-exporter").stdout.split()) == {
        "/etc/default/dkms-exporter", "/etc/dnf/plugins/post-transaction-actions.d/dkms-exporter.action"}
    verify = rpm(tree, "-V", "--nodeps", "dkms-exporter", check=False)
    assert verify.returncode == 0 and verify.stdout == "", verify.stdout + verify.stderr
    for unit in UNITS:
        text = (tree / "usr/lib/systemd/system" / unit).read_text()
        assert "/usr/local/bin" not in text
    assert "ExecStart=/usr/bin/dkms-exporter " in (tree / "usr/lib/systemd/system/dkms-exporter.service").read_text()
    assert (tree / "usr/bin/dkms-exporter").is_symlink()
