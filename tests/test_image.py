"""The container image, built from deploy/kubernetes/Containerfile by buildah, and run.

The Containerfile's base (debian:bookworm-slim) cannot be pulled on the test machines (they reach
Debian's mirrors, not registries), so the base is the package test's own debootstrap'd Debian 12
tree (tests/packages/debian_tree.sh base), committed as a local image and passed as
``--build-arg BASE``.  Everything after FROM is the file as shipped: the .deb
deploy/debian/build.sh makes from this checkout, installed by apt from Debian's archive.  The image
must then answer the example hosts exactly as the golden files say, on Debian 12's interpreter and
libraries, with its code byte-compiled (the DaemonSet's root filesystem is read-only).

Cold: the base's debootstrap (shared with tests/test_packages.py, about 1-3 min); warm: about
30 s (the .deb, two commits of a 260 MB tree with buildah's vfs driver, apt-get install).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from example_hosts import EXAMPLES
from test_golden import GOLDEN, normalise
from test_packages import DEBIAN_HOSTS, TREE_SCRIPT, ok, run
from testkit import REPO, require_tool, slow_artifact

from exporter import __version__
from exporter.web.server import DEFAULT_PORT

pytestmark = pytest.mark.slow

CONTAINERFILE = REPO / "deploy/kubernetes/Containerfile"
BASE_IMAGE = "localhost/dkms-exporter-test-base:bookworm"
IMAGE = f"localhost/dkms-exporter:{__version__}"
CODE = "/usr/share/prometheus-dkms-exporter/exporter"


@dataclass
class Built:
    buildah: list[str]     # buildah with this module's own storage (nothing lands in the machine's)
    container: str         # a working container of the image
    hosts: Path            # example hosts, mounted read-only at /host one at a time

    def run(self, *argv: str, host: str | None = None) -> subprocess.CompletedProcess[str]:
        mount = ["-v", f"{self.hosts / host}:/host:ro"] if host else []
        return run(*self.buildah, "run", "--isolation", "chroot", *mount, self.container, "--", *argv)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Iterator[Built]:
    slow_artifact("the container image (buildah on a debootstrap'd Debian 12 base)")
    buildah = require_tool("buildah")
    require_tool("debootstrap")
    if os.geteuid() != 0:
        pytest.fail("the image test needs root (debootstrap, buildah's chroot isolation)")
    work = tmp_path_factory.mktemp("image")
    store = [buildah, "--root", str(work / "storage"), "--runroot", str(work / "run"), "--storage-driver", "vfs"]
    try:
        base = ok(run(TREE_SCRIPT, "base", timeout=1200)).strip().splitlines()[-1].removeprefix("BASE=")
        scratch = ok(run(*store, "from", "scratch")).strip()
        mounted = ok(run(*store, "mount", scratch)).strip()
        ok(run("cp", "-a", f"{base}/.", mounted))
        ok(run(*store, "umount", scratch))
        ok(run(*store, "commit", "--quiet", scratch, BASE_IMAGE))
        context = work / "context"
        ok(run(REPO / "deploy/debian/build.sh", context))
        ok(run(*store, "build", "--isolation", "chroot", "--build-arg", f"BASE={BASE_IMAGE}",
               "-f", CONTAINERFILE, "-t", IMAGE, context, timeout=1200))
        container = ok(run(*store, "from", IMAGE)).strip()
        hosts = work / "hosts"
        for name in DEBIAN_HOSTS:
            EXAMPLES[name](hosts / name)
        yield Built(store, container, hosts)
    finally:
        run(*store, "rm", "--all")
        run(*store, "rmi", "--all", "--force")
        shutil.rmtree(work, ignore_errors=True)


def test_the_image_runs_the_exporter_as_the_daemonset_expects(image):
    config = json.loads(ok(run(*image.buildah, "inspect", "--type", "image", IMAGE)))["OCIv1"]["config"]
    assert config["Entrypoint"] == ["/usr/bin/dkms-exporter"]
    assert config["Cmd"] == ["--path.rootfs=/host", "serve"]
    assert list(config["ExposedPorts"]) == [f"{DEFAULT_PORT}/tcp"]
    assert config["User"] == "0"
    assert "PYTHONDONTWRITEBYTECODE=1" in config["Env"]
    assert ok(image.run("/usr/bin/dkms-exporter", "--version")).strip() == f"dkms-exporter {__version__}"


def test_the_image_carries_debian_12s_interpreter_and_libraries(image):
    """The package's dependencies, resolved by apt: not PyPI's wheels (whose cryptography brings
    a second OpenSSL), and no pip or virtualenv in the image."""
    versions = dict(line.split("\t") for line in ok(image.run(
        "dpkg-query", "-W", "-f=${Package}\t${Version}\n", "python3", "python3-cryptography",
        "python3-prometheus-client", "python3-zstandard", "prometheus-dkms-exporter")).splitlines())
    assert versions["python3"].startswith("3.11.")
    assert versions["python3-cryptography"].startswith("38.")
    assert versions["python3-prometheus-client"].startswith("0.16.")
    assert versions["prometheus-dkms-exporter"] == __version__
    where = ok(image.run("python3", "-c", "import cryptography, zstandard; print(cryptography.__file__); "
                                          "print(zstandard.__file__)")).split()
    assert all(w.startswith("/usr/lib/python3/dist-packages/") for w in where), where
    assert image.run("python3", "-m", "pip", "--version").returncode != 0


def test_the_images_code_is_byte_compiled_for_a_read_only_root(image):
    listed = ok(image.run("find", CODE, "-name", "*.pyc")).split()
    sources = ok(image.run("find", CODE, "-name", "*.py")).split()
    assert sources and len(listed) >= len(sources), (len(listed), len(sources))


@pytest.mark.parametrize("name", DEBIAN_HOSTS)
def test_the_image_answers_as_the_golden_files(image, name):
    # --no-cache.dir: the golden files are made without the persistent cache (tests/conftest.py)
    check = image.run("/usr/bin/dkms-exporter", "--path.rootfs=/host", "--no-cache.dir", "check", host=name)
    assert check.stdout == (GOLDEN / f"{name}.check.txt").read_text(), check.stderr
    assert check.returncode == (0 if name == "healthy" else 1)
    metrics = ok(image.run("/usr/bin/dkms-exporter", "--path.rootfs=/host", "--no-cache.dir", "metrics", host=name))
    assert normalise(metrics) == (GOLDEN / f"{name}.prom").read_text()
