"""The real rpm, rpmbuild and dnf for tests: build packages, install them into a tree with
`rpm --root`, and ask rpm (its python bindings, run by Debian's /usr/bin/python3: the venv
has no rpm module) what it thinks.

Built packages are cached content-addressed under the shared test cache (rpmbuild takes about a
second per package), keyed by the spec text, the payload and rpmbuild's version.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from conftest import require_tool
from testkit import content_key

SYSTEM_PYTHON = "/usr/bin/python3"
DBPATH = "/var/lib/rpm"     # Debian's rpm defaults to ~/.rpmdb: every call names the dbpath
FIXED_TIME = 1_700_000_000  # builds (SOURCE_DATE_EPOCH) and, with faketime, installs


def cache_dir() -> Path:
    root = Path(os.environ.get("DKMS_EXPORTER_TEST_CACHE", Path.home() / ".cache/dkms-exporter-tests"))
    path = root / "rpms"
    path.mkdir(parents=True, exist_ok=True)
    return path


def dnf_plugins() -> tuple[str, str]:
    """(pluginpath, PYTHONPATH) of Debian's dnf-plugins-core, downloaded (apt-get download) and
    unpacked into the test cache, never installed: the package Breaks zypper, which the SUSE
    tests need on the same machine.  dnf runs it with --setopt=pluginpath= and PYTHONPATH."""
    import modbuild
    deb = modbuild.apt_download("dnf-plugins-core")
    dest = cache_dir().parent / "dnf-plugins-core" / deb.stem
    site = dest / "usr/lib/python3/dist-packages"
    if not (site / "dnf-plugins/versionlock.py").exists():
        tmp = dest.with_name(dest.name + f".{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([require_tool("dpkg-deb"), "-x", str(deb), str(tmp)], check=True)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    return str(site / "dnf-plugins"), str(site)


def rpm_python(script: str, payload: object) -> object:
    """Run ``script`` with the system python3 (python3-rpm, python3-hawkey) on a JSON payload
    given as stdin; its stdout is JSON.  A missing binding fails with the package to install."""
    if not Path(SYSTEM_PYTHON).exists():
        raise AssertionError("/usr/bin/python3 is missing")
    proc = subprocess.run([SYSTEM_PYTHON, "-c", textwrap.dedent(script)], input=json.dumps(payload),
                          capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        hint = " (apt-get install python3-rpm python3-hawkey dnf: .ci/apt-packages)" \
            if "No module named" in proc.stderr else ""
        raise AssertionError(f"system python3 failed{hint}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


@dataclass
class Spec:
    """One binary package: its header fields, files (path -> bytes or a symlink target after
    '->') and scriptlets."""

    name: str
    version: str = "1.0"
    release: str = "1"
    epoch: int | None = None
    arch: str = "x86_64"
    provides: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    files: dict[str, bytes | str] = field(default_factory=dict)
    post: str | None = None
    extra: str = ""            # more preamble lines (Obsoletes:, ...)

    def text(self) -> str:
        lines = [f"Name: {self.name}", f"Version: {self.version}", f"Release: {self.release}",
                 f"Summary: {self.name} (dkms-exporter test package)", "License: MIT",
                 f"BuildArch: {self.arch}" if self.arch == "noarch" else "",
                 f"Epoch: {self.epoch}" if self.epoch is not None else "", "AutoReqProv: no"]
        lines += [f"Provides: {p}" for p in self.provides] + [f"Requires: {r}" for r in self.requires]
        lines += [self.extra, "", "%description", f"{self.name} built by tests/rpmtools.py", "",
                  "%install", "mkdir -p %{buildroot}", "cp -a %{_sourcedir}/payload/. %{buildroot}/", ""]
        if self.post is not None:
            lines += ["%post", self.post, ""]
        lines += ["%files"] + [_files_line(p) for p in sorted(self.files)]
        return "\n".join(line for line in lines if line is not None) + "\n"

    def key(self) -> str:
        return content_key(self.text(), self.files)


def _files_line(path: str) -> str:
    return f'"{path}"'


def rpmbuild(spec: Spec, *, source: bool = False) -> Path:
    """The .rpm (``source``: the .src.rpm) for ``spec`` (cached by content), built by the real rpmbuild."""
    rpmbuild_bin = require_tool("rpmbuild")
    version = subprocess.run([rpmbuild_bin, "--version"], capture_output=True, text=True).stdout.strip()
    key = hashlib.sha256((spec.key() + version + ("src" if source else "") + "topdir2").encode()).hexdigest()[:24]
    out = cache_dir() / "built" / key
    found = sorted(out.glob("*.rpm")) if out.is_dir() else []
    if found:
        return found[0]
    # a fixed build directory per content key: rpmbuild records %_topdir in what it builds, so a
    # directory named after the cache or the pid would make the same spec build different bytes
    cache_dir().mkdir(parents=True, exist_ok=True)
    lock = open(cache_dir() / f".build-{key}.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    found = sorted(out.glob("*.rpm")) if out.is_dir() else []
    if found:   # built by another process while this one waited
        lock.close()
        return found[0]
    work = Path(f"/var/tmp/dkms-exporter-rpmbuild/{key}")
    shutil.rmtree(work, ignore_errors=True)
    payload = work / "SOURCES/payload"
    payload.mkdir(parents=True)
    for path, content in spec.files.items():
        dest = payload / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str) and content.startswith("->"):
            dest.symlink_to(content[2:].strip())
        else:
            dest.write_bytes(content if isinstance(content, bytes) else content.encode())
    (work / "SPECS").mkdir()
    (work / "SPECS/p.spec").write_text(spec.text())
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(FIXED_TIME)}
    argv = [rpmbuild_bin, "-bs" if source else "-bb", "--quiet", "--define", f"_topdir {work}", "--define", "_build_id_links none",
            "--define", "use_source_date_epoch_as_buildtime 1", "--define", "clamp_mtime_to_source_date_epoch 1",
            "--define", "_buildhost dkms-exporter-tests", "--define", "__os_install_post %{nil}",
            "--define", "debug_package %{nil}", "--define", "_binary_payload w9.gzdio",
            "--target", spec.arch if spec.arch != "noarch" else "x86_64", str(work / "SPECS/p.spec")]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
    built = sorted((work / ("SRPMS" if source else "RPMS")).rglob("*.rpm"))
    if proc.returncode != 0 or not built:
        raise AssertionError(f"rpmbuild failed for {spec.name}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (built[0].name + f".{os.getpid()}.tmp")
    shutil.copyfile(built[0], tmp)
    os.replace(tmp, out / built[0].name)
    shutil.rmtree(work, ignore_errors=True)
    lock.close()
    return out / built[0].name


def rpm(root: Path, *args: str, check: bool = True, faketime: bool | int = False,
        dbpath: str = DBPATH) -> subprocess.CompletedProcess:
    """The real rpm on the tree ``root`` (--root, --dbpath given; scriptlets run chrooted)."""
    argv = [require_tool("rpm"), "--root", str(Path(root).resolve()), "--dbpath", dbpath, *args]
    if faketime:
        when = FIXED_TIME if faketime is True else int(faketime)
        argv = [require_tool("faketime"), "-f", _iso(when), *argv]   # absolute: the clock stands still
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"$ {' '.join(argv)}\nexit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def _iso(epoch: int) -> str:
    import datetime
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def install(root: Path, *packages: Path, justdb: bool = False, faketime: bool | int = False,
            extra: tuple[str, ...] = ()) -> None:
    """`rpm -i` into the tree (creating its rpmdb); --nodeps: the test packages stand alone.
    ``faketime``: True for FIXED_TIME, or the epoch second rpm should believe it is."""
    root = Path(root).resolve()
    (root / DBPATH.lstrip("/")).mkdir(parents=True, exist_ok=True)
    args = ["-i", "--nodeps", "--ignorearch", "--ignoreos", *extra]
    if justdb:
        args += ["--justdb", "--noscripts", "--notriggers"]
    rpm(root, *args, *map(str, packages), faketime=faketime)


QUERY_FORMAT = "%{DBINSTANCE}\t%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\t%{INSTALLTIME}\n"


def query_all(root: Path, *, backend: str | None = None, dbpath: str = DBPATH) -> list[tuple[str, ...]]:
    """`rpm -qa --qf` with rpm's own words for absent tags ("(none)"), sorted by header number."""
    args = ["-qa", "--qf", QUERY_FORMAT]
    if backend:
        args = ["--define", f"_db_backend {backend}", *args]
    out = rpm(root, *args, dbpath=dbpath).stdout
    rows = [tuple(line.split("\t")) for line in out.splitlines() if line]
    return sorted(rows, key=lambda r: int(r[0]))
