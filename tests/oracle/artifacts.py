"""The oracle's slow inputs, made once and cached: Debian's busybox-static, shim and grub (from
`apt-get download` into the shared debs/ cache), the static module loader, the OVMF firmware.

Each Debian generation boots through its own signed shim and grub: bookworm's come from the
host's apt (the host runs bookworm), trixie's from trixie's own lists under ``<cache>/oracle/apt/``
(the sources the real-host builder wrote for its trixie tree, so the same mirror; the machine's
apt configuration is never touched).

Everything lives under ``<cache>/oracle/`` in a directory named after its inputs (the .deb file
name, or a hash of the source and the compiler), so a new package version or an edited source is
a new directory and a stale one is never reused.  A missing tool fails with the package to install.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from modbuild import _extract, _locked, apt_download, cache_dir

HERE = Path(__file__).resolve().parent
LOADER_SOURCE = HERE / "loadmod.c"
INIT_SCRIPT = HERE / "oracle-init.sh"
OVMF_DIR = Path("/usr/share/OVMF")
QEMU = "qemu-system-x86_64"
HOST_SUITE = "bookworm"          # served by the machine's own apt lists
SUITES = ("bookworm", "trixie")  # the generations whose boot chain the oracle can fetch
LISTS_MAX_AGE = 24 * 3600        # own lists older than this are refreshed (a superseded .deb 404s)


class MissingTool(RuntimeError):
    """A tool or package the oracle needs is not installed (the message says which)."""


def need(tool: str, package: str) -> str:
    """Path of a host tool; fails with the Debian package that provides it."""
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin")
    if path is None:
        raise MissingTool(f"{tool} is not installed: apt-get install {package} (listed in .ci/apt-packages)")
    return path


def oracle_cache() -> Path:
    path = cache_dir() / "oracle"
    path.mkdir(parents=True, exist_ok=True)
    return path


def suite_apt_options(suite: str) -> list[str]:
    """apt-get options that make apt see only ``suite``'s lists (none for the host's suite): a
    sources file, lists, cache and an empty dpkg status under <cache>/oracle/apt/SUITE, like
    tests/realhost/build.sh's for its trixie tree, whose sources file is copied (same mirror)."""
    if suite == HOST_SUITE:
        return []
    if suite not in SUITES:
        raise ValueError(f"no boot chain for Debian {suite!r} (known: {', '.join(SUITES)})")
    root = oracle_cache() / "apt" / suite
    opts = ["-o", f"Dir::Etc={root}/etc", "-o", "Dir::Etc::sourcelist=/dev/null",
            "-o", f"Dir::Etc::sourceparts={root}/etc/sources.list.d", "-o", f"Dir::State::Lists={root}/lists",
            "-o", f"Dir::Cache={root}/cache", "-o", f"Dir::State::status={root}/status",
            "-o", "APT::Architecture=amd64", "-o", "APT::Sandbox::User=root"]
    builder = cache_dir() / "realhost" / suite / "apt/etc/sources.list.d/debian.sources"
    with _locked(root / ".lock"):
        if not builder.is_file():
            raise MissingTool(f"{builder} is missing: DKMS_EXPORTER_REALHOST_SUITE={suite} tests/realhost/build.sh "
                              "writes it (the oracle fetches that generation's shim and grub from the same mirror)")
        sources = root / "etc/sources.list.d/debian.sources"
        for d in ("etc/sources.list.d", "etc/preferences.d", "etc/apt.conf.d", "lists/partial",
                  "cache/archives/partial"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "status").touch()
        changed = not sources.is_file() or sources.read_bytes() != builder.read_bytes()
        if changed:
            sources.write_bytes(builder.read_bytes())
        release = sorted((root / "lists").glob("*_InRelease"))
        if changed or not release or time.time() - min(p.stat().st_mtime for p in release) > LISTS_MAX_AGE:
            proc = subprocess.run([need("apt-get", "apt"), *opts, "update", "-q"], capture_output=True, text=True,
                                  check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"apt-get update of {suite}'s lists failed:\n{proc.stderr[-2000:]}")
    return opts


def suite_download(package: str, suite: str) -> Path:
    """``apt-get download`` of ``suite``'s candidate into the shared debs/ cache (once, locked):
    the host's apt for the host's suite, the suite's own lists otherwise."""
    if suite == HOST_SUITE:
        return apt_download(package)
    from testkit import slow_artifact   # the quick tier never downloads
    slow_artifact(f"a Debian {suite} package from the network ({package})")
    opts = suite_apt_options(suite)
    debs = cache_dir() / "debs"
    apt = need("apt-get", "apt")
    with _locked(debs / f".{package}.lock"):
        uris = subprocess.run([apt, *opts, "download", "--print-uris", package], capture_output=True, text=True,
                              check=False).stdout
        names = [f[1] for f in (line.split() for line in uris.splitlines()) if len(f) >= 2 and f[1].endswith(".deb")]
        if not names:
            raise RuntimeError(f"{suite}'s apt lists offer no {package}")
        if (debs / names[0]).is_file():
            return debs / names[0]
        with tempfile.TemporaryDirectory(dir=debs) as tmp:
            proc = subprocess.run([apt, *opts, "download", "-q", package], cwd=tmp, capture_output=True, text=True,
                                  check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"apt-get download {package} ({suite}) failed: {proc.stderr.strip()}")
            (deb,) = Path(tmp).glob("*.deb")
            os.replace(deb, debs / deb.name)
            return debs / deb.name


def _from_deb(package: str, members: list[str], suite: str = HOST_SUITE) -> Path:
    """Extract ``members`` of ``suite``'s candidate .deb of ``package`` once; the directory is
    keyed by the .deb's file name (package and version, which differ between suites)."""
    deb = suite_download(package, suite)
    dest = oracle_cache() / "debs" / deb.stem
    stamp = dest / ".extracted"
    with _locked(oracle_cache() / "debs" / f".{package}.lock"):
        if not stamp.exists():
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            _extract(deb, dest, members)
            stamp.write_text(deb.name)
    return dest


def busybox() -> Path:
    """Debian's statically linked busybox (package busybox-static, never installed on the host)."""
    return _from_deb("busybox-static", ["bin/busybox"]) / "bin/busybox"


def loader() -> Path:
    """tests/oracle/loadmod.c built with ``gcc -static``; keyed by the source and gcc's version."""
    gcc = need("gcc", "gcc libc6-dev")
    version = subprocess.run([gcc, "--version"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256(LOADER_SOURCE.read_bytes() + version.encode()).hexdigest()[:16]
    out = oracle_cache() / "loadmod" / key / "loadmod"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        built = Path(tmp) / "loadmod"
        proc = subprocess.run([gcc, "-static", "-Os", "-s", "-o", str(built), str(LOADER_SOURCE)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise MissingTool(f"gcc -static failed (needs libc6-dev):\n{proc.stderr}")
        os.replace(built, out)
    return out


@dataclass(frozen=True)
class SecureBootChain:
    """Debian's signed boot chain: shim (signed by Microsoft's UEFI CA 2011, with Debian's CA
    inside), and grub (signed by Debian).  OVMF's Secure Boot build and its Microsoft-enrolled
    variable store."""

    shim: Path
    grub: Path
    ovmf_code: Path
    ovmf_vars: Path
    suite: str = HOST_SUITE

    def describe(self) -> str:
        return (f"shim {self.shim.parents[3].name}, grub {self.grub.parents[4].name}, "
                f"OVMF {self.ovmf_code.name} + {self.ovmf_vars.name}")


def secure_boot_chain(suite: str = HOST_SUITE) -> SecureBootChain:
    """``suite``'s signed shim and grub (the packages a Debian host of that release installs),
    booted by the host's OVMF with Microsoft's keys enrolled."""
    shim = _from_deb("shim-signed", ["usr/lib/shim/shimx64.efi.signed"], suite)
    grub = _from_deb("grub-efi-amd64-signed", ["usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"], suite)
    code, vars_ = OVMF_DIR / "OVMF_CODE_4M.secboot.fd", OVMF_DIR / "OVMF_VARS_4M.ms.fd"
    for f in (code, vars_):
        if not f.exists():
            raise MissingTool(f"{f} is missing: apt-get install ovmf (listed in .ci/apt-packages)")
    return SecureBootChain(shim / "usr/lib/shim/shimx64.efi.signed",
                           grub / "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", code, vars_, suite)


def virt_fw_vars() -> list[str]:
    """The command line of virt-firmware's virt-fw-vars (PyPI virt-firmware, a test dependency)."""
    try:
        import virt.firmware.vars  # noqa: F401
    except ImportError:
        raise MissingTool("virt-firmware is not installed in the test venv: pip install virt-firmware "
                          "(a test dependency of the project)") from None
    return [sys.executable, "-m", "virt.firmware.vars"]


def qemu() -> str:
    return need(QEMU, "qemu-system-x86")


def mtools() -> tuple[str, str, str]:
    return need("mformat", "mtools"), need("mmd", "mtools"), need("mcopy", "mtools")
