"""The oracle's slow inputs, made once and cached: Debian's busybox-static, shim and grub (from
`apt-get download` into the shared debs/ cache), the static module loader, the OVMF firmware.

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
from dataclasses import dataclass
from pathlib import Path

from modbuild import _extract, _locked, apt_download, cache_dir

HERE = Path(__file__).resolve().parent
LOADER_SOURCE = HERE / "loadmod.c"
INIT_SCRIPT = HERE / "oracle-init.sh"
OVMF_DIR = Path("/usr/share/OVMF")
QEMU = "qemu-system-x86_64"


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


def _from_deb(package: str, members: list[str]) -> Path:
    """Extract ``members`` of the candidate .deb of ``package`` once; the directory is keyed by
    the .deb's file name (package and version)."""
    deb = apt_download(package)
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

    def describe(self) -> str:
        return (f"shim {self.shim.parents[3].name}, grub {self.grub.parents[4].name}, "
                f"OVMF {self.ovmf_code.name} + {self.ovmf_vars.name}")


def secure_boot_chain() -> SecureBootChain:
    shim = _from_deb("shim-signed", ["usr/lib/shim/shimx64.efi.signed"])
    grub = _from_deb("grub-efi-amd64-signed", ["usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"])
    code, vars_ = OVMF_DIR / "OVMF_CODE_4M.secboot.fd", OVMF_DIR / "OVMF_VARS_4M.ms.fd"
    for f in (code, vars_):
        if not f.exists():
            raise MissingTool(f"{f} is missing: apt-get install ovmf (listed in .ci/apt-packages)")
    return SecureBootChain(shim / "usr/lib/shim/shimx64.efi.signed",
                           grub / "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", code, vars_)


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
