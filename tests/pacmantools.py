"""The real makepkg and pacman for tests: build packages from PKGBUILDs (as an unprivileged user:
makepkg refuses root), install them into a tree with ``pacman -U --root R --dbpath R/var/lib/pacman``
and ask pacman (``-Q``, ``-Qi``, ``-Ql``, ``-Su`` dry runs), ``pacman-conf`` and ``vercmp`` what
they think.

Built packages are cached content-addressed under the shared test cache (makepkg takes ~2 s per
package), keyed by the PKGBUILD text, the payload and makepkg's version.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import modbuild
from testkit import content_key, require_tool

FIXED_TIME = 1_700_000_000          # builds (SOURCE_DATE_EPOCH) and, with faketime, installs
BUILD_USER = "nobody"


def cache_dir() -> Path:
    """pacman packages in the shared slow-artifact cache."""
    path = modbuild.cache_dir() / "pacman"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Pkg:
    """One package: PKGBUILD fields and files (path -> bytes or str)."""

    name: str
    version: str = "1.0"
    rel: str = "1"
    epoch: int | None = None
    arch: str = "x86_64"
    base: str = ""
    groups: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    files: dict[str, bytes | str] = field(default_factory=dict)

    @property
    def full_version(self) -> str:
        return (f"{self.epoch}:" if self.epoch else "") + f"{self.version}-{self.rel}"

    def pkgbuild(self) -> str:
        q = lambda xs: "(" + " ".join(f"'{x}'" for x in xs) + ")"      # noqa: E731
        lines = [f"pkgname={self.name}", f"pkgbase={self.base or self.name}", f"pkgver={self.version}",
                 f"pkgrel={self.rel}", f"epoch={self.epoch}" if self.epoch else "",
                 f"pkgdesc='{self.name} (dkms-exporter test package)'", f"arch=('{self.arch}')",
                 "license=('MIT')", f"groups={q(self.groups)}", f"provides={q(self.provides)}",
                 "options=(!strip !debug !zipman)",
                 'package() { cp -a "$startdir/payload/." "$pkgdir/"; }']
        return "\n".join(line for line in lines if line) + "\n"

    def key(self) -> str:
        return content_key(self.pkgbuild(), self.files)


def makepkg(pkg: Pkg) -> Path:
    """The .pkg.tar.* of ``pkg`` (cached by content), built by the real makepkg."""
    tool = require_tool("makepkg")
    version = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.split("\n", 1)[0]
    key = hashlib.sha256((pkg.key() + version).encode()).hexdigest()[:24]
    out = cache_dir() / "built" / key
    found = sorted(out.glob("*.pkg.tar.*")) if out.is_dir() else []
    if found:
        return found[0]
    lock = open(cache_dir() / f".build-{key}.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        found = sorted(out.glob("*.pkg.tar.*")) if out.is_dir() else []
        if found:
            return found[0]
        work = Path(f"/var/tmp/dkms-exporter-makepkg/{key}")
        shutil.rmtree(work, ignore_errors=True)
        payload = work / "payload"
        payload.mkdir(parents=True)
        for path, content in pkg.files.items():
            dest = payload / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(content if isinstance(content, bytes) else content.encode())
        (work / "PKGBUILD").write_text(pkg.pkgbuild())
        subprocess.run(["chown", "-R", BUILD_USER, str(work.parent)], check=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "PKGDEST": str(work / "out"),
               "SRCDEST": str(work), "BUILDDIR": str(work / "build"), "SOURCE_DATE_EPOCH": str(FIXED_TIME),
               "PKGEXT": ".pkg.tar.gz", "PACKAGER": "dkms-exporter tests <tests@example.invalid>"}
        (work / "out").mkdir()
        subprocess.run(["chown", "-R", BUILD_USER, str(work)], check=True)
        proc = subprocess.run(["setpriv", f"--reuid={BUILD_USER}", "--regid=nogroup", "--clear-groups", tool,
                               "--nodeps", "--nocheck", "--noconfirm", "--noprogressbar"],
                              cwd=work, env=env, capture_output=True, text=True, timeout=600)
        built = sorted((work / "out").glob("*.pkg.tar.*"))
        if proc.returncode != 0 or not built:
            raise AssertionError(f"makepkg {pkg.name} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                                 f"{proc.stderr[-2000:]}")
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / (built[0].name + f".{os.getpid()}.tmp")
        shutil.copyfile(built[0], tmp)
        os.replace(tmp, out / built[0].name)
        shutil.rmtree(work, ignore_errors=True)
        return out / built[0].name
    finally:
        lock.close()


def pacman(root: Path, *args: str, check: bool = True, faketime: int | None = None,
           config: Path | None = None) -> subprocess.CompletedProcess:
    """The real pacman on the tree ``root`` (--root, --dbpath and a config given)."""
    root = Path(root).resolve()
    conf = config or root / "etc/pacman.conf"
    argv = [require_tool("pacman"), "--root", str(root), "--dbpath", str(root / "var/lib/pacman"),
            "--config", str(conf), "--noconfirm", *args]
    if faketime is not None:
        import datetime
        when = datetime.datetime.fromtimestamp(faketime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        argv = [require_tool("faketime"), "-f", when, *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "LC_ALL": "C"})
    if check and proc.returncode != 0:
        raise AssertionError(f"$ {' '.join(argv)}\nexit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def install(root: Path, pkgs: list[Pkg], *, when: int = FIXED_TIME) -> None:
    """makepkg each and ``pacman -U`` them into ``root`` (no dependencies, no scriptlets, no hooks),
    with the clock standing at ``when`` (INSTALLDATE)."""
    root = Path(root)
    (root / "var/lib/pacman").mkdir(parents=True, exist_ok=True)
    conf = root / "etc/pacman.conf"
    if not conf.exists():
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("[options]\nArchitecture = auto\nSigLevel = Never\n")
    files = [str(makepkg(p)) for p in pkgs]
    if files:
        pacman(root, "-U", "--nodeps", "--nodeps", "--noscriptlet", "--overwrite", "*",
               "--hookdir", str(root / "nonexistent-hooks"), *files, faketime=when)


def vercmp(pairs: list[tuple[str, str]]) -> list[int]:
    """pacman's own vercmp on each pair (one process per pair, batched through one shell).
    The tool takes a first argument "-h" or "--help" for a request for its usage text, so such
    a pair is asked the other way round and the answer negated (alpm_pkg_vercmp is
    antisymmetric).  Two help words cannot be asked at all: the same one is 0 (alpm_pkg_vercmp's
    first test is strcmp), "-h" against "--help" is refused."""
    tool = require_tool("vercmp")
    if any(a in _HELP and b in _HELP and a != b for a, b in pairs):
        raise ValueError("vercmp cannot compare '-h' with '--help'")
    asked = [(a, b) for a, b in pairs if not (a in _HELP and a == b)]
    swapped = [a in _HELP for a, _ in asked]
    script = "".join(f"{tool} {_sh(b)} {_sh(a)}\n" if s else f"{tool} {_sh(a)} {_sh(b)}\n"
                     for (a, b), s in zip(asked, swapped))
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=600, check=True).stdout
    answers = iter([-int(x) if s else int(x) for x, s in zip(out.split(), swapped, strict=True)])
    return [0 if a in _HELP and a == b else next(answers) for a, b in pairs]


_HELP = ("-h", "--help")


def _sh(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
